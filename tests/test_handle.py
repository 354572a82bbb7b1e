"""The lean path: at a request's end the connection goes back to the pool, the wrapper keeps a handle.

Between requests the wrapper looks like a persistent connection (no
connect(), no close() bookkeeping); the physical connection is in the pool
for anyone, and the next use checks one out again. Every guarantee of a
full give-back holds: nothing sent when nothing happened, transactions
rolled back, dirty sessions reset, Django's setup and connection_created
for a session this wrapper did not just have.
"""

import threading
import time

import pytest
from django.db import close_old_connections, connections, transaction
from django.db.backends.signals import connection_created
from django.test import override_settings

from tests.helpers import admin_connection, connection_id, resets_in_place, run_threads

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 5}


def _one(sql, alias="default"):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def _status(admin, *names):
    cursor = admin.cursor()
    cursor.execute("SHOW GLOBAL STATUS")
    values = dict(cursor.fetchall())
    return {name: int(values[name]) for name in names}


@pytest.fixture
def table():
    with connections["default"].cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS request_end")
        cursor.execute("CREATE TABLE request_end (id INT PRIMARY KEY) ENGINE=InnoDB")
    connections["default"].close()
    yield "request_end"
    with connections["stock"].cursor() as cursor:
        # A leaked transaction would hold a metadata lock: fail, never hang.
        cursor.execute("SET SESSION lock_wait_timeout = 10")
        cursor.execute("DROP TABLE IF EXISTS request_end")
    connections["stock"].close()


def _rows():
    with connections["stock"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM request_end")
        return cursor.fetchone()[0]


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_request_end_gives_the_connection_back_and_keeps_a_handle():
    wrapper = connections["default"]
    first = connection_id()
    handle = wrapper.connection
    close_old_connections()  # what request_finished does
    assert handle.given_back and handle.detached
    assert wrapper.connection is handle
    assert wrapper.pool.pool.checkedout() == 0
    # The physical connection is anyone's: another thread gets it now.
    seen = []
    run_threads(lambda: (seen.append(connection_id()), connections["default"].close()), 1)
    assert seen == [first]
    assert connection_id() == first  # and this wrapper checks it out again
    assert not handle.given_back
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_lean_cycle_sends_only_the_query_and_skips_connect():
    wrapper = connections["default"]
    connection_id()
    close_old_connections()
    created = []

    def count(sender, connection, **kwargs):
        created.append(connection.alias)

    connection_created.connect(count)
    try:
        names = ("Questions", "Com_rollback", "Com_set_option", "Com_select", "Connections")
        with admin_connection() as admin:
            before = _status(admin, *names)
            for _ in range(20):
                _one("SELECT 1")
                close_old_connections()
            after = _status(admin, *names)
    finally:
        connection_created.disconnect(count)
    delta = {name: after[name] - before[name] for name in names}
    assert delta["Com_select"] == 20
    assert delta["Questions"] == 21  # plus the admin's SHOW GLOBAL STATUS
    assert delta["Com_rollback"] == delta["Com_set_option"] == delta["Connections"] == 0
    # The same session, untouched since: nothing new to announce.
    assert created == []
    wrapper.close()


@resets_in_place
@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_session_another_user_reset_gets_djangos_setup_and_the_signal_again():
    wrapper = connections["default"]
    first = connection_id()
    close_old_connections()

    def dirty_the_session():
        other = connections["default"]
        with other.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            cursor.execute("SET @left_behind = 1")
        other.close()  # reset: COM_RESET_CONNECTION, Django's setup gone

    run_threads(dirty_the_session, 1)
    created = []
    connection_created.connect(lambda sender, connection, **kw: created.append(connection.alias),
                               weak=False, dispatch_uid="test_request_end")
    try:
        assert connection_id() == first
        assert _one("SELECT @@SESSION.tx_isolation") == "READ-COMMITTED"
        assert _one("SELECT @left_behind") is None
    finally:
        connection_created.disconnect(dispatch_uid="test_request_end")
    assert created == ["default"]
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_autocommit_left_off_by_another_user_is_restored_at_reattach():
    wrapper = connections["default"]
    connection_id()
    close_old_connections()

    def leave_autocommit_off():
        raw = connections["default"]
        raw.ensure_connection()
        raw.connection.autocommit(False)  # behind Django's back
        raw.connection.close()
        raw.connection = None

    run_threads(leave_autocommit_off, 1)
    assert _one("SELECT @@autocommit") == 1
    assert wrapper.get_autocommit() is True
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
@pytest.mark.parametrize("flags", ["read in place", "asked through Connector/C"])
@pytest.mark.parametrize("begin", ["START TRANSACTION", "BEGIN", "COMMIT AND CHAIN"])
def test_a_raw_transaction_is_rolled_back_at_request_end(table, begin, flags):
    # detach() reads the transaction flag in place, inlining
    # SessionControl.in_transaction(); both ways must lead to the rollback.
    wrapper = connections["default"]
    wrapper.ensure_connection()
    if flags != "read in place":
        wrapper.connection.state.control.live_status = None
    with wrapper.cursor() as cursor:
        if begin == "COMMIT AND CHAIN":
            cursor.execute("START TRANSACTION")
            cursor.execute("COMMIT AND CHAIN")  # commits, and opens the next one
        else:
            cursor.execute(begin)
        cursor.execute("INSERT INTO request_end VALUES (1)")
    close_old_connections()
    assert _rows() == 0
    assert _one("SELECT @@in_transaction") == 0
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_transaction_begun_through_the_drivers_own_query_is_rolled_back(table):
    wrapper = connections["default"]
    wrapper.ensure_connection()
    wrapper.connection.query("START TRANSACTION")
    with wrapper.cursor() as cursor:
        cursor.execute("INSERT INTO request_end VALUES (2)")
    close_old_connections()
    assert _rows() == 0
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_request_ending_inside_atomic_closes_in_full(table):
    wrapper = connections["default"]
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            with wrapper.cursor() as cursor:
                cursor.execute("INSERT INTO request_end VALUES (3)")
            handle = wrapper.connection
            close_old_connections()  # Django's own rule: autocommit is off, so close
            assert handle.given_back and not handle.detached
            raise RuntimeError("leave the block")
    assert _rows() == 0
    wrapper.close()


def test_a_thread_ending_between_requests_holds_nothing():
    handles = []

    def one_request():
        connection_id()
        close_old_connections()
        handles.append(connections["default"].connection)

    run_threads(one_request, 5)
    assert len(handles) == 5 and all(handle.given_back for handle in handles)
    assert connections["default"].pool.pool.checkedout() == 0


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 2, "max_overflow": 0, "timeout": 5})
def test_lean_requests_in_many_threads_stay_within_the_bound():
    errors = []
    ids = set()
    lock = threading.Lock()

    def requests():
        try:
            for _ in range(30):
                found = connection_id()
                with lock:
                    ids.add(found)
                close_old_connections()
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connections["default"].close()

    run_threads(requests, 8)
    assert errors == []
    assert len(ids) <= 2
    assert connections["default"].pool.pool.checkedout() == 0


def test_the_wrapper_state_between_requests_matches_a_persistent_connection():
    """Side by side with the stock engine at CONN_MAX_AGE=None, the state Django sees is the same."""
    stock = connections["stock"]
    stock.settings_dict["CONN_MAX_AGE"] = None
    names = ("autocommit", "in_atomic_block", "savepoint_ids", "atomic_blocks", "needs_rollback",
             "errors_occurred", "closed_in_transaction", "run_on_commit", "commit_on_exit",
             "savepoint_state", "health_check_done")
    try:
        states = {}
        for alias in ("default", "stock"):
            wrapper = connections[alias]
            with transaction.atomic(using=alias):
                _one("SELECT 1", alias)
                transaction.on_commit(lambda: None, using=alias)
            close_old_connections()
            states[alias] = {name: getattr(wrapper, name) for name in names}
            assert wrapper.connection is not None
        assert states["default"] == states["stock"]
    finally:
        stock.settings_dict["CONN_MAX_AGE"] = 0
        stock.close()
        connections["default"].close()


@resets_in_place
@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_session_this_wrapper_dirtied_is_set_up_again_after_its_reset():
    wrapper = connections["default"]
    first = connection_id()
    with wrapper.cursor() as cursor:
        cursor.execute("SET @left_behind = 1")
    close_old_connections()  # reset at give-back: Django's setup is gone too
    assert connection_id() == first  # the same session, which nobody else used
    assert _one("SELECT @left_behind") is None
    assert _one("SELECT @@SESSION.tx_isolation") == "READ-COMMITTED"
    wrapper.close()


@resets_in_place
@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_transaction_begun_on_a_cursor_class_of_ones_own_is_rolled_back(table):
    import MySQLdb.cursors

    first = connection_id()
    cursor = connections["default"].connection.cursor(MySQLdb.cursors.Cursor)
    cursor.execute("START TRANSACTION")
    cursor.execute("INSERT INTO request_end VALUES (4)")
    cursor.execute("SET @left_behind = 1")
    cursor.close()
    close_old_connections()
    seen = []

    def next_user():
        seen.append((connection_id(), _one("SELECT @@in_transaction"), _one("SELECT @left_behind")))
        connections["default"].close()

    run_threads(next_user, 1)
    assert seen == [(first, 0, None)]
    assert _rows() == 0
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_autocommit_turned_off_through_the_driver_is_restored_for_the_next_request(table):
    wrapper = connections["default"]
    connection_id()
    wrapper.connection.autocommit(False)  # behind Django's back
    close_old_connections()  # rolled back; the session is otherwise intact
    with wrapper.cursor() as cursor:  # the next request, same thread, same session
        cursor.execute("INSERT INTO request_end VALUES (5)")
    close_old_connections()
    assert _rows() == 1  # autocommit was on again: the row is committed
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 4, "max_overflow": 0, "timeout": 5})
def test_two_threads_sharing_a_wrapper_check_out_one_connection_into_its_handle(monkeypatch):
    from django_mysqlpool.managed_pool import ManagedPool

    wrapper = connections["default"]
    connection_id()
    wrapper.inc_thread_sharing()
    checkout = ManagedPool.checkout

    def slow_checkout(*args):
        time.sleep(0.05)  # room for the other threads to race this one
        return checkout(*args)

    monkeypatch.setattr(ManagedPool, "checkout", slow_checkout)
    try:
        close_old_connections()
        handle = wrapper.connection
        assert handle.detached
        start = threading.Barrier(4, timeout=10)

        def use():
            start.wait()
            # Any attribute checks out; this one sends nothing, so the four
            # threads never use the driver connection at once (mysqlclient
            # refuses that).
            handle.get_server_info  # noqa: B018

        run_threads(use, 4)
        assert len(handle._record) == 1
        handle.detach()
        assert wrapper.pool.pool.checkedout() == 0
    finally:
        wrapper.dec_thread_sharing()
        wrapper.close()


def test_a_cursor_kept_past_the_request_end_refuses_to_run():
    from django.db import InterfaceError

    cursor = connections["default"].cursor()
    close_old_connections()
    with pytest.raises(InterfaceError):
        cursor.execute("SELECT 1")
    connections["default"].close()


def test_a_kept_handle_of_a_closed_wrapper_cannot_check_out():
    from django.db import InterfaceError

    wrapper = connections["default"]
    connection_id()
    close_old_connections()
    handle = wrapper.connection
    parked = list(handle._spot.parked)
    # What the fork hook does in a child (where the parent's pools are
    # also marked disposed, so this is the second line of defence).
    handle.orphan()
    wrapper.connection = None
    try:
        with pytest.raises(InterfaceError):
            with wrapper.wrap_database_errors:
                handle.cursor()
    finally:
        wrapper.connection = handle
        wrapper.close()
        for record in parked:  # here, unlike in a child, it is ours to close
            record.invalidate()
            record.checkin(_fairy_was_created=False)


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 1, "max_overflow": 0, "timeout": 5})
def test_a_connection_given_back_while_its_thread_holds_the_pool_lock_does_not_deadlock():
    """Garbage collection may run a handle's __del__ (a give-back) inside the pool's own lock."""
    wrapper = connections["default"]
    connection_id()
    managed = wrapper.pool
    wrapper.close()
    record = managed.pool._do_get()
    done = []

    def give_back_under_the_lock():
        with managed.pool._lock:
            managed.pool._do_return_conn(record)
        done.append(True)

    thread = threading.Thread(target=give_back_under_the_lock, daemon=True)
    thread.start()
    thread.join(5)
    assert done == [True]
    assert managed.pool.checkedout() == 0


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_session_state_a_connection_created_receiver_sets_is_there_at_every_request():
    def set_variable(sender, connection, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SET @from_signal = 7")

    wrapper = connections["default"]
    wrapper.close()
    connection_created.connect(set_variable, dispatch_uid="test_from_signal")
    try:
        seen = []
        for _ in range(3):
            seen.append(_one("SELECT @from_signal"))
            close_old_connections()
    finally:
        connection_created.disconnect(dispatch_uid="test_from_signal")
        wrapper.close()
    assert seen == [7, 7, 7]


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_detached_says_whether_a_connection_is_checked_out_through_every_transition():
    from django_mysqlpool.registry import dispose_pools

    wrapper = connections["default"]
    wrapper.ensure_connection()
    handle = wrapper.connection
    pool = wrapper.pool.pool

    def agree(detached):
        assert handle.detached is detached
        assert pool.checkedout() == (0 if detached else 1)

    agree(False)  # checked out by connect()
    close_old_connections()
    agree(True)  # parked at the request's end
    connection_id()
    agree(False)  # taken back by the next query
    close_old_connections()
    dispose_pools()  # the parked connection closes; the next use checks out afresh
    connection_id()
    assert handle.detached is False and wrapper.pool.pool.checkedout() == 1
    wrapper.close()
    assert handle.detached is False  # closed: every use now refuses, nothing checks out
    with pytest.raises(Exception, match="given back to the pool"):
        handle.get_autocommit()



@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_requests_in_atomic_blocks_park_and_send_no_reset(table):
    # Django's atomic() turns autocommit off and on through the driver; the
    # server flags those replies as changing the session, which must not
    # cost each such request a reset.
    for value in range(10):
        with transaction.atomic():
            with connections["default"].cursor() as cursor:
                cursor.execute("INSERT INTO request_end VALUES (%s)", [value])
        close_old_connections()
    stats = connections["default"].pool.get_stats()  # this test's pool (the fixture used another)
    connections["default"].close()
    assert stats["resets"] == 0 and stats["rollbacks"] == 0
    assert stats["parked_reclaims"] == 9
    assert _rows() == 10
