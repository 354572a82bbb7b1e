"""The DB-API module the backend runs on (MySQLdb), or an error that says how to get one."""

import importlib
import importlib.util
from types import ModuleType

from django.core.exceptions import ImproperlyConfigured


def load_driver() -> ModuleType:
    """MySQLdb: mysqlclient, or PyMySQL once pymysql.install_as_MySQLdb() has run.

    Django's own guard asks only "Did you install mysqlclient?", which sends
    a PyMySQL user, who needs no compiler, the wrong way.
    """
    try:
        return importlib.import_module("MySQLdb")
    except ImportError as error:
        if _installed("pymysql"):
            raise ImproperlyConfigured(
                "Error loading MySQLdb module: PyMySQL is installed but not as MySQLdb; call "
                "pymysql.install_as_MySQLdb() before Django loads its database backends "
                "(at the top of settings.py), or install mysqlclient."
            ) from error
        raise ImproperlyConfigured(
            "Error loading MySQLdb module: django_mysqlpool needs a MySQL driver; install mysqlclient "
            "(the 'mysqlclient' extra; it compiles against libmariadb-dev), or PyMySQL (the 'pymysql' "
            "extra) and call pymysql.install_as_MySQLdb() at the top of settings.py."
        ) from error


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules
        return False
