"""The Django app, for its system checks and the mysqlpool management command (optional)."""

from django.apps import AppConfig


class MySQLPoolConfig(AppConfig):
    name = "django_mysqlpool"
    verbose_name = "MySQL connection pool"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
