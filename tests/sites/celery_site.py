"""Django settings for a real Celery prefork worker (tests/sites/celery_tasks.py, run by test_celery.py).

The pool settings are the engine's own, nothing Celery-specific:
MYSQLPOOL_ARGUMENTS by default, or the same arguments in
DATABASES["default"]["OPTIONS"]["pool"] when MYSQLPOOL_CELERY_POOL_IN_OPTIONS
is set (that is the spelling on which Celery's Django fix-up also calls
connection.close_pool()). MYSQLPOOL_CELERY_DATABASE names the database.
"""

import os

from tests.server import ServerAddress

POOL_ARGUMENTS = {"pool_size": 2, "max_overflow": 1, "timeout": 10}
POOL_IN_OPTIONS = bool(os.environ.get("MYSQLPOOL_CELERY_POOL_IN_OPTIONS"))

SECRET_KEY = "django-mysqlpool-celery-test"
USE_TZ = True
INSTALLED_APPS = []
DATABASES = {
    "default": ServerAddress.from_environment().django_database(
        os.environ["MYSQLPOOL_CELERY_DATABASE"],
        CONN_MAX_AGE=0,
        OPTIONS={"pool": dict(POOL_ARGUMENTS)} if POOL_IN_OPTIONS else {},
    )
}
if not POOL_IN_OPTIONS:
    MYSQLPOOL_ARGUMENTS = dict(POOL_ARGUMENTS)
