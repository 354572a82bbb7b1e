"""Giving a connection back: rollback, autocommit, discard on error, the given-back state."""

import pytest
from django.db import Error, connections, transaction
from django.db.utils import InterfaceError, OperationalError
from django.test import override_settings

from tests.helpers import admin_connection, connection_id, server_connections

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 5}


@pytest.fixture
def table():
    with connections["default"].cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS giveback")
        cursor.execute("CREATE TABLE giveback (id INT PRIMARY KEY, note VARCHAR(20)) ENGINE=InnoDB")
        cursor.execute("INSERT INTO giveback VALUES (1, 'committed')")
    connections["default"].close()
    yield "giveback"
    with connections["stock"].cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS giveback")
    connections["stock"].close()


def _rows(alias="default"):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT id FROM giveback ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_uncommitted_rows_and_row_locks_do_not_survive_give_back(table):
    wrapper = connections["default"]
    wrapper.set_autocommit(False)
    with wrapper.cursor() as cursor:
        cursor.execute("INSERT INTO giveback VALUES (2, 'uncommitted')")
        cursor.execute("SELECT * FROM giveback WHERE id = 1 FOR UPDATE")
    holder = connection_id()
    wrapper.close()  # abandoned mid-transaction

    assert connection_id() == holder  # the single pooled connection again
    assert wrapper.get_autocommit() is True
    assert _rows() == [1]
    wrapper.close()
    # The row lock is gone: another login can take it at once.
    with connections["stock"].cursor() as cursor:
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
        cursor.execute("UPDATE giveback SET note = 'locked?' WHERE id = 1")


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_raw_start_transaction_under_autocommit_is_rolled_back(table):
    with connections["default"].cursor() as cursor:
        cursor.execute("START TRANSACTION")
        cursor.execute("INSERT INTO giveback VALUES (3, 'raw begin')")
    connections["default"].close()
    assert _rows() == [1]


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_close_inside_atomic_does_not_commit_later(table):
    wrapper = connections["default"]
    with pytest.raises(Error):
        with transaction.atomic():
            with wrapper.cursor() as cursor:
                cursor.execute("INSERT INTO giveback VALUES (4, 'in atomic')")
            wrapper.close()
            with wrapper.cursor() as cursor:  # Django refuses: closed in transaction
                cursor.execute("SELECT 1")
    assert _rows() == [1]


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_connection_with_connection_level_error_is_discarded():
    wrapper = connections["default"]
    victim = connection_id()
    with admin_connection() as admin:
        admin.cursor().execute(f"KILL {victim}")
    with pytest.raises(OperationalError):
        connection_id()
    assert wrapper.errors_occurred
    wrapper.close()
    replacement = connection_id()
    assert replacement != victim
    with admin_connection() as admin:
        assert victim not in server_connections(admin)


def test_given_back_connection_is_unusable_not_someone_elses():
    wrapper = connections["default"]
    connection_id()
    pooled = wrapper.connection
    wrapper._close()
    assert wrapper.is_usable() is False
    with pytest.raises(InterfaceError):
        with wrapper.wrap_database_errors:
            pooled.cursor()
    pooled.close()  # twice is harmless
    wrapper.connection = None
