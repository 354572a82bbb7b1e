"""Django settings for the test suite: a pooled alias, a stock alias, a second user."""

import os

from tests.server import ServerAddress

_address = ServerAddress.from_environment() or ServerAddress("127.0.0.1", 3306, "root", "")
_database = os.environ.get("MYSQLPOOL_TEST_DATABASE", "mysqlpool_test")


def _alias(engine="django_mysqlpool.backends.mysqlpool", **overrides):
    settings = {
        "ENGINE": engine,
        "HOST": _address.host,
        "PORT": str(_address.port),
        "USER": _address.user,
        "PASSWORD": _address.password,
        "NAME": _database,
        # The suite manages its own database; keep the runner's hands off.
        "TEST": {"NAME": _database},
    }
    settings.update(overrides)
    return settings


DATABASES = {
    "default": _alias(),
    "stock": _alias("django.db.backends.mysql"),
    # Same server and database, another login: must never share a socket.
    "other_user": _alias(USER="mysqlpool_other", PASSWORD="other-secret-pw"),
    # Same login, another database.
    "other_db": _alias(NAME=_database + "_b"),
}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_mysqlpool"]
SECRET_KEY = "django-mysqlpool-tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
