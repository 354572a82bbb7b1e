"""A one-module Django project served over ASGI, for test_asgi.py.

    MYSQLPOOL_ASGI_DATABASE=db python -m uvicorn tests.sites.asgi_site:application --port PORT

The database must exist; the table ``asgi_item`` (one row) is created at
startup. Settings are those the README recommends for ASGI: the pooled
engine, ``CONN_MAX_AGE`` 0, a pool of 5 + 5.

Views (all async, all JSON):

- ``/``: a real async ORM query (``aget``) whose row carries the server's
  ``CONNECTION_ID()``; Django gives the connection back at request_finished.
- ``/decorated``: the same query inside an ``@auto_close_db`` coroutine,
  then reports whether the request's thread still holds a connection (it
  must not: the decorator gave it back before the response).
  ``/undecorated`` is the same without the decorator (it still holds one).
- ``/stats``: the pool's ``checkedout()`` count, and its other counters.
- ``/leak``: a query through ``sync_to_async(thread_sensitive=False)``,
  i.e. on a worker thread of the event loop's executor, which no request
  ever closes: the connection stays checked out. The canary that proves
  the checks of test_asgi.py see a connection left checked out.
- ``/leak-closed``: the same, with the function wrapped in
  ``@auto_close_db``: the connection goes back.
"""

import os
import sys
import threading

import django
from django.conf import settings

from tests.server import ServerAddress

POOL_ARGUMENTS = {"pool_size": 5, "max_overflow": 5, "timeout": 10}

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    SECRET_KEY="django-mysqlpool-asgi-test",
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    DATABASES={
        "default": ServerAddress.from_environment().django_database(
            os.environ["MYSQLPOOL_ASGI_DATABASE"], CONN_MAX_AGE=0
        )
    },
    MYSQLPOOL_ARGUMENTS=POOL_ARGUMENTS,
    # Server errors and the pool's own notices go to stderr, where the test
    # looks for them (Django prints nothing with DEBUG off otherwise).
    LOGGING={
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": sys.stderr}},
        "loggers": {
            "django.request": {"handlers": ["stderr"], "level": "ERROR"},
            "django_mysqlpool": {"handlers": ["stderr"], "level": "INFO"},
        },
    },
)
django.setup()

from asgiref.sync import sync_to_async  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.db import connection, connections, models  # noqa: E402
from django.db.models.expressions import RawSQL  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

from django_mysqlpool import auto_close_db  # noqa: E402


class Item(models.Model):
    name = models.CharField(max_length=20)

    class Meta:
        app_label = "asgi_site"
        db_table = "asgi_item"


@auto_close_db
def _create_table():
    if Item._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(Item)
    Item.objects.get_or_create(pk=1, defaults={"name": "one"})


def _start_up():
    # uvicorn imports this module inside its running event loop, where
    # Django refuses synchronous database access: do it on a thread.
    failure = []

    def run():
        try:
            _create_table()
        except BaseException as error:  # reported below, in the importing thread
            failure.append(error)

    thread = threading.Thread(target=run, name="asgi-site-startup")
    thread.start()
    thread.join(60)
    if thread.is_alive():
        raise RuntimeError("creating the asgi_item table took over 60 s")
    if failure:
        raise failure[0]


_start_up()


def _with_connection_id():
    return Item.objects.annotate(connection_id=RawSQL("CONNECTION_ID()", ()))


async def query(request):
    item = await _with_connection_id().aget(pk=1)
    return JsonResponse({"connection_id": item.connection_id, "name": item.name})


@auto_close_db
async def _decorated_work():
    item = await _with_connection_id().aget(pk=1)
    return item.connection_id


def _thread_holds_a_connection():
    return connections["default"].connection is not None


async def decorated(request):
    connection_id = await _decorated_work()
    # The thread that ran the ORM query for this request (thread-sensitive
    # sync_to_async runs it on the request's own thread).
    held = await sync_to_async(_thread_holds_a_connection)()
    return JsonResponse({"connection_id": connection_id, "held_after": held})


async def undecorated(request):
    item = await _with_connection_id().aget(pk=1)
    held = await sync_to_async(_thread_holds_a_connection)()
    return JsonResponse({"connection_id": item.connection_id, "held_after": held})


def _connection_id_here():
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return cursor.fetchone()[0]


async def leak(request):
    connection_id = await sync_to_async(_connection_id_here, thread_sensitive=False)()
    return JsonResponse({"connection_id": connection_id})


async def leak_closed(request):
    connection_id = await sync_to_async(auto_close_db(_connection_id_here), thread_sensitive=False)()
    return JsonResponse({"connection_id": connection_id})


async def stats(request):
    managed = connections["default"].pool
    if managed is None:
        return JsonResponse({"pool": False, "checkedout": None})
    pool = managed.pool
    return JsonResponse({
        "pool": True,
        "checkedout": pool.checkedout(),
        "checkedin": pool.checkedin(),
        "overflow": pool.overflow(),
        "size": pool.size(),
    })


urlpatterns = [
    path("", query),
    path("decorated", decorated),
    path("undecorated", undecorated),
    path("leak", leak),
    path("leak-closed", leak_closed),
    path("stats", stats),
]

application = get_asgi_application()
