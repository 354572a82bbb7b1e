"""With no MySQLdb to import, the engine says how to get one, PyMySQL users included."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_mysqlpool.backends.mysqlpool.driver import load_driver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A program that loads the engine as Django does, with MySQLdb not importable.
_LOAD_THE_ENGINE = """
import sys
sys.modules["MySQLdb"] = None
import django
from django.conf import settings
settings.configure(DATABASES={"default": {"ENGINE": "django_mysqlpool.backends.mysqlpool"}})
django.setup()
from django.db import connection
connection.cursor()
"""


def test_mysqldb_is_the_driver_when_importable():
    import MySQLdb

    assert load_driver() is MySQLdb


def test_pymysql_not_installed_as_mysqldb_is_told_how(monkeypatch):
    pytest.importorskip("pymysql", reason="PyMySQL is not installed in this environment")
    monkeypatch.setitem(sys.modules, "MySQLdb", None)
    with pytest.raises(ImproperlyConfigured, match=r"call pymysql\.install_as_MySQLdb\(\) before Django"):
        load_driver()


def test_no_driver_at_all_names_both(monkeypatch):
    monkeypatch.setitem(sys.modules, "MySQLdb", None)
    monkeypatch.setitem(sys.modules, "pymysql", None)
    with pytest.raises(ImproperlyConfigured) as raised:
        load_driver()
    message = str(raised.value)
    assert "install mysqlclient" in message
    assert "pymysql.install_as_MySQLdb()" in message
    assert "\n" not in message


def test_the_engine_loads_the_guard_before_djangos_own():
    pytest.importorskip("pymysql", reason="PyMySQL is not installed in this environment")
    result = subprocess.run([sys.executable, "-c", _LOAD_THE_ENGINE], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: Error loading MySQLdb module: "
                                "PyMySQL is installed but not as MySQLdb"), result.stderr
