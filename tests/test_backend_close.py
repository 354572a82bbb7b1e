"""connection.close(): what it guarantees, now that a clean connection parks for the next connect().

close() leaves Django's wrapper as Django's own close() does, the
connection available to every other thread at once and its session clean;
the wrapper's next connect() takes it back without the pool when nobody
took it meanwhile. The lean close() and connect() are checked against
Django's own, and the next user (another thread) is checked for anything
the last one left.
"""

import threading
import time

import pytest
from django.db import InterfaceError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import override_settings

from django_mysqlpool.errors import ConnectionGivenBack
from tests.helpers import ON_PYMYSQL, connection_id, in_a_forked_child, in_another_thread

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 30}

# What Django's close() and connect() set on the wrapper.
_WRAPPER_STATE = (
    "autocommit", "in_atomic_block", "savepoint_ids", "atomic_blocks", "needs_rollback",
    "health_check_enabled", "closed_in_transaction", "errors_occurred", "health_check_done",
    "run_on_commit", "savepoint_state", "commit_on_exit",
)


def _state(wrapper):
    return {name: getattr(wrapper, name, None) for name in _WRAPPER_STATE} | {
        "connection is None": wrapper.connection is None,
        "close_at is None": wrapper.close_at is None,
    }


def _one_row(sql):
    with connections["default"].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_close_and_the_next_connect_leave_the_wrapper_as_djangos_own_do():
    wrapper = connections["default"]
    connection_id()
    wrapper.run_on_commit = [("x", lambda: None, False)]
    wrapper.close()  # the lean close(): parks
    lean_closed = _state(wrapper)
    assert wrapper._closed_parking is not None
    wrapper.ensure_connection()  # the lean connect(): takes it back
    lean_connected = _state(wrapper)
    assert wrapper.connection.given_back is False

    wrapper.run_on_commit = [("x", lambda: None, False)]
    BaseDatabaseWrapper.close(wrapper)  # Django's own close()
    assert _state(wrapper) == lean_closed
    wrapper._closed_parking.close()  # no parked connection: Django's own connect() checks one out
    wrapper._closed_parking = None
    BaseDatabaseWrapper.connect(wrapper)
    assert _state(wrapper) == lean_connected
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_closed_connection_goes_to_another_thread_at_once():
    mine = connection_id()
    connections["default"].close()
    # The pool's only connection: another thread gets it without waiting
    # for this thread to connect again or end.
    assert in_another_thread(connection_id) == mine
    assert connection_id() == mine  # and this thread gets it back after


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_connection_closed_while_another_thread_waits_goes_to_it():
    mine = connection_id()
    pool = connections["default"].pool.pool
    got = []
    waiter = threading.Thread(
        target=lambda: (got.append(connection_id()), connections["default"].close()), daemon=True
    )
    waiter.start()
    deadline = time.monotonic() + 15
    while pool.waiting() != 1:
        assert time.monotonic() < deadline, "the other thread never waited"
        time.sleep(0.01)
    connections["default"].close()
    again = connection_id()  # queues behind the waiter: it was handed the connection
    waiter.join(30)
    assert not waiter.is_alive()
    assert got == [mine] and again == mine
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_the_next_user_after_close_finds_no_variable_transaction_or_lock():
    # The attack: leave what a session can keep, close(), and look from
    # the next user, another thread on the pool's only connection.
    wrapper = connections["default"]
    mine = connection_id()
    with wrapper.cursor() as cursor:
        cursor.execute("SET @left_behind = 'secret'")
        cursor.execute("SELECT GET_LOCK('mysqlpool_close_lock', 0)")
        cursor.execute("START TRANSACTION")
        cursor.execute("SELECT 1")
    wrapper.close()

    def look():
        return (connection_id(), _one_row("SELECT @left_behind, IS_USED_LOCK('mysqlpool_close_lock'), "
                                           "@@in_transaction"))

    seen_id, seen = in_another_thread(look)
    if not ON_PYMYSQL:  # PyMySQL closes a session that needs a reset: a new one comes
        assert seen_id == mine  # the same connection, cleaned
    assert seen == (None, None, 0)


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_raw_transaction_is_rolled_back_at_close_not_parked():
    wrapper = connections["default"]
    connection_id()
    with wrapper.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS close_rows (n INT) ENGINE=InnoDB")
    wrapper.close()  # a temporary table: the session is reset at give-back
    with wrapper.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS close_kept")
        cursor.execute("CREATE TABLE close_kept (n INT) ENGINE=InnoDB")
        cursor.execute("START TRANSACTION")
        cursor.execute("INSERT INTO close_kept VALUES (1)")
    wrapper.close()
    try:
        assert in_another_thread(lambda: _one_row("SELECT COUNT(*) FROM close_kept")) == (0,)
        assert _one_row("SELECT COUNT(*) FROM close_kept") == (0,)
    finally:
        with wrapper.cursor() as cursor:
            cursor.execute("DROP TABLE close_kept")
        wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_cursor_and_a_handle_kept_past_close_refuse_even_after_the_wrapper_reconnects():
    wrapper = connections["default"]
    connection_id()
    kept_handle = wrapper.connection
    kept_cursor = wrapper.cursor()
    wrapper.close()
    assert connection_id() is not None  # the wrapper took the same connection back
    assert wrapper.connection is not kept_handle
    with pytest.raises(InterfaceError):  # Django's, wrapping the pool's ConnectionGivenBack
        kept_cursor.execute("SELECT 1")
    with pytest.raises(ConnectionGivenBack):
        kept_cursor.cursor.execute("SELECT 1")
    with pytest.raises(ConnectionGivenBack):
        kept_handle.cursor()
    with pytest.raises(ConnectionGivenBack):
        kept_handle.query("SET @x = 1")
    assert _one_row("SELECT @x") == (None,)
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_thread_that_ends_after_close_gives_its_parked_connection_back():
    used = in_another_thread(connection_id)  # that thread close()d, then ended
    pool = connections["default"].pool.pool
    assert pool.parked() == 0 and list(pool._idle)[-1].dbapi_connection.thread_id() == used
    assert pool.checkedout() == 0
    assert connection_id() == used
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 2, "max_overflow": 0, "timeout": 30})
def test_close_in_an_atomic_block_still_closes_as_django_does():
    from django.db import transaction

    wrapper = connections["default"]
    with transaction.atomic():
        connection_id()
        wrapper.close()
        assert wrapper.closed_in_transaction and wrapper.connection.given_back
        with pytest.raises(InterfaceError):  # the closed handle refuses, as after Django's close()
            connection_id()
    assert wrapper._closed_parking is None
    assert wrapper.pool.pool.checkedout() == 0
    wrapper.close()
    assert connection_id() is not None
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_forked_child_never_takes_the_connection_its_parent_parked_at_close():
    parent = connection_id()
    connections["default"].close()  # parked for this wrapper's next connect()

    def report():
        try:
            return {"id": connection_id()}
        except Exception as error:  # reported to the parent
            return {"error": repr(error)}

    report = in_a_forked_child(report)
    assert "id" in report and report["id"] != parent
    assert connection_id() == parent  # the parent's own connection still answers it
    connections["default"].close()
