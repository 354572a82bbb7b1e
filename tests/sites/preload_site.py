"""A WSGI site served by gunicorn --preload (run by test_forks.py).

Imported once in gunicorn's master before it forks its workers. The master
keeps pooled connections of its own the whole time: one checked out by a
thread that queries every 20 ms (its errors are counted), and idle ones in
its pool. Workers answer each request with their CONNECTION_ID().
MYSQLPOOL_REPORT names the file the master writes its findings to.
"""

import json
import os
import threading
import time

import django
from django.conf import settings

from tests.helpers import connection_id
from tests.server import ServerAddress

settings.configure(
    DATABASES={"default": ServerAddress.from_environment().django_database(
        os.environ["MYSQLPOOL_PRELOAD_DATABASE"]
    )},
    MYSQLPOOL_ARGUMENTS={"pool_size": 4, "max_overflow": 2, "timeout": 10},
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    USE_TZ=True,
)
django.setup()

from django.db import connections  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def view(request):
    return JsonResponse({"pid": os.getpid(), "connection_id": connection_id()})


urlpatterns = [path("", view)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()


class MasterTraffic(threading.Thread):
    """The master's own use of the database while workers come and go."""

    def __init__(self):
        super().__init__(daemon=True)
        self.queries = 0
        self.errors = []
        self.ids = set()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.ids.add(connection_id())  # kept checked out: never closed
                self.queries += 1
            except Exception as error:
                self.errors.append(repr(error))
            time.sleep(0.02)


def _idle_connections(count):
    ids = []
    extras = [connections.create_connection("default") for _ in range(count)]
    for extra in extras:
        extra.ensure_connection()
        ids.append(extra.connection.thread_id())
    for extra in extras:
        extra.close()
    return ids


master_idle_ids = _idle_connections(2)
master_traffic = MasterTraffic()
master_traffic.start()


def write_report():
    """Called by gunicorn's on_exit hook, in the master, at shutdown."""
    master_traffic.stop.set()
    master_traffic.join(5)
    idle_errors = []
    try:
        # The idle ones must still work too: check out all of them.
        _idle_connections(2)
    except Exception as error:
        idle_errors.append(repr(error))
    with open(os.environ["MYSQLPOOL_REPORT"], "w") as report:
        json.dump({
            "master_pid": os.getpid(),
            "master_queries": master_traffic.queries,
            "master_errors": master_traffic.errors + idle_errors,
            "master_ids": sorted(master_traffic.ids | set(master_idle_ids)),
        }, report)
