"""A WSGI site on PyMySQL for gunicorn's gevent worker (run by test_gevent.py).

    gunicorn -k gevent tests.sites.gevent_site:application

gunicorn's gevent worker monkey-patches before it imports this module, so
Django's per-thread connections are per-greenlet: every request gets a
connection wrapper of its own, and Django's request_finished closes it,
which gives the physical connection back to the pool. Each request does a
few queries and answers with the connection ids it saw.
MYSQLPOOL_GEVENT_DATABASE names the database.
"""

import os
import threading

import pymysql

pymysql.install_as_MySQLdb()

import django  # noqa: E402
from django.conf import settings  # noqa: E402

from tests.server import ServerAddress  # noqa: E402

settings.configure(
    DATABASES={"default": ServerAddress.from_environment().django_database(
        os.environ["MYSQLPOOL_GEVENT_DATABASE"]
    )},
    MYSQLPOOL_ARGUMENTS={"pool_size": 5, "max_overflow": 5, "timeout": 10},
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    USE_TZ=True,
)
django.setup()

from django.db import connection  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def view(request):
    ids = []
    for _ in range(3):
        with connection.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID(), SLEEP(0.01)")
            ids.append(cursor.fetchone()[0])
    return JsonResponse({
        "pid": os.getpid(),
        "connection_ids": ids,
        "driver": connection.Database.__name__,
        "threading_local": f"{threading.local.__module__}.{threading.local.__name__}",
    })


urlpatterns = [path("", view)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
