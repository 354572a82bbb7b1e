"""Starts (or finds) the server, creates this worker's databases, isolates tests."""

import os

import pytest

from tests.server import PrivateServer, ServerAddress

_private_server = None


def _is_xdist_controller(config) -> bool:
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def pytest_report_header(config):
    import MySQLdb

    version = ".".join(str(part) for part in MySQLdb.version_info[:3])
    return f"driver: {MySQLdb.__name__} {version} as MySQLdb"


def _check_the_driver():
    """The driver a nox session asked for (MYSQLPOOL_TEST_DRIVER) is the one MySQLdb names."""
    import MySQLdb

    wanted = os.environ.get("MYSQLPOOL_TEST_DRIVER")
    actual = "pymysql" if MySQLdb.__name__ == "pymysql" else "mysqlclient"
    if wanted and wanted != actual:
        raise pytest.UsageError(f"MYSQLPOOL_TEST_DRIVER={wanted} but MySQLdb is {MySQLdb.__name__}: "
                                "with PyMySQL, pymysql.install_as_MySQLdb() must run first (noxfile.py)")


def pytest_configure(config):
    global _private_server
    _check_the_driver()
    if _is_xdist_controller(config):
        return  # the workers start what they need
    address = ServerAddress.from_environment()
    if address is None:
        # Each xdist worker gets a server of its own: connection counts seen
        # by one worker's tests are never disturbed by the other's.
        _private_server = PrivateServer().start()
        address = _private_server.address
        os.environ.update(address.environment())
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    os.environ["MYSQLPOOL_TEST_DATABASE"] = f"mysqlpool_test_{worker}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    _create_databases(address, os.environ["MYSQLPOOL_TEST_DATABASE"])

    import django

    django.setup()


def _create_databases(address, name):
    admin = address.connect()
    try:
        cursor = admin.cursor()
        for database in (name, name + "_b"):
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cursor.execute(f"CREATE DATABASE `{database}`")
        cursor.execute("DROP USER IF EXISTS 'mysqlpool_other'@'%'")
        cursor.execute("CREATE USER 'mysqlpool_other'@'%' IDENTIFIED BY 'other-secret-pw'")
        cursor.execute(f"GRANT ALL ON `{name}`.* TO 'mysqlpool_other'@'%'")
    finally:
        admin.close()


def pytest_unconfigure(config):
    if _private_server is not None:
        _private_server.destroy()


@pytest.fixture(autouse=True)
def _fresh_pools():
    """Every test starts with no pool and leaves none behind."""
    from django.db import connections

    from django_mysqlpool.registry import dispose_pools

    yield
    for connection in connections.all(initialized_only=True):
        connection.close()
    dispose_pools()
