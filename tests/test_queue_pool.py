"""Parking: at a request's end a clean connection stays with its Django connection.

The owner's next request takes it back with no pool lock and no settings
lookup; until then it counts as idle, and any other checkout, a waiting one
included, takes it before opening a connection or waiting. The sweeper,
dispose(), a settings change and the owner thread's end all find it.
"""

import threading
import time

from django.db import close_old_connections, connections
from django.test import override_settings

from django_mysqlpool.queue_pool import BurstKeepingQueuePool
from django_mysqlpool.registry import dispose_pools
from tests.helpers import address, admin_connection, connection_id, run_threads, server_connections

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 5}


def _wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class _RequestElsewhere:
    """A request for another thread: the connection id it got, or the error it met."""

    def __init__(self):
        self.ids = []
        self.errors = []  # a PoolTimeout, if a connection was kept from it

    def __call__(self):
        try:
            self.ids.append(connection_id())
        except Exception as error:  # reported by the test
            self.errors.append(error)
        finally:
            connections["default"].close()


class _OtherThreadRequests:
    """A thread that makes one request whenever asked, and ends when told."""

    def __init__(self):
        self.ids = []
        self.errors = []
        self._asked = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while True:
                self._asked.acquire()
                if self._stop:
                    return
                try:
                    self.ids.append(connection_id())
                    close_old_connections()  # the request's end: parks it
                except Exception as error:  # reported by the test
                    self.errors.append(error)
                self._done.release()
        finally:
            connections["default"].close()

    def request(self):
        self._asked.release()
        assert self._done.acquire(timeout=30), "the other thread's request did not finish"
        return self.ids[-1]

    def end(self):
        self._stop = True
        self._asked.release()
        self._thread.join(30)
        assert not self._thread.is_alive()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_the_owner_takes_back_its_parked_connection_without_the_pool():
    wrapper = connections["default"]
    first = connection_id()
    close_old_connections()
    pool = wrapper.pool.pool
    assert pool.parked() == 1 and pool.checkedout() == 0
    assert "parked" in repr(wrapper.connection)
    assert connection_id() == first
    assert pool.parked() == 0 and pool.checkedout() == 1
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 1, "max_overflow": 0, "timeout": 120})
def test_a_waiting_checkout_gets_a_connection_parked_while_it_waits():
    wrapper = connections["default"]
    connection_id()
    close_old_connections()  # parked once: its spot is listed from now on
    held = connection_id()  # taken back: this thread holds the only connection
    pool = wrapper.pool.pool
    request = _RequestElsewhere()

    waiter = threading.Thread(target=request, daemon=True)
    waiter.start()
    assert _wait_for(lambda: pool.waiting() == 1), "the other thread never waited"
    close_old_connections()  # this request ends: its connection must go to the waiter
    waiter.join(15)  # at once, not when its 120 s run out
    handed_over = not waiter.is_alive()
    if not handed_over:
        wrapper.close()  # let it go before failing
        waiter.join(30)
    assert handed_over, "the waiting checkout was not handed the parked connection"
    assert request.errors == [] and request.ids == [held]
    assert connection_id() == held  # and this wrapper gets it back afterwards
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_connection_parked_by_a_live_thread_is_closed_by_dispose():
    other = _OtherThreadRequests()
    try:
        parked = other.request()
        with admin_connection() as admin:
            assert parked in server_connections(admin)
            dispose_pools()
            assert _wait_for(lambda: parked not in server_connections(admin))
        # The owner's next request checks out a new connection from a new pool.
        assert other.request() != parked
        assert other.errors == []
    finally:
        other.end()


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "idle_timeout": 0.3, "min_idle": 0})
def test_a_connection_parked_longer_than_idle_timeout_retires():
    other = _OtherThreadRequests()
    try:
        parked = other.request()
        with admin_connection() as admin:
            # The sweeper runs every second: it must find the parked one too.
            assert _wait_for(lambda: parked not in server_connections(admin))
        assert other.request() != parked
        assert other.errors == []
    finally:
        other.end()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_settings_change_makes_the_owner_check_out_from_the_new_pool():
    wrapper = connections["default"]
    connection_id()
    close_old_connections()
    old_pool = wrapper.pool
    with override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 2, "max_overflow": 0, "timeout": 5}):
        connection_id()
        new_pool = wrapper.pool
        assert new_pool is not old_pool
        assert new_pool.pool.checkedout() == 1
        assert old_pool.pool.checkedout() == 0 and old_pool.pool.parked() == 0
        wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_parked_connection_the_server_killed_is_replaced_without_an_error():
    wrapper = connections["default"]
    first = connection_id()
    close_old_connections()
    with admin_connection() as admin:
        admin.cursor().execute(f"KILL {first}")
        assert _wait_for(lambda: first not in server_connections(admin))
    second = connection_id()  # the socket poll at take-back finds it dead
    assert second != first
    wrapper.close()


def test_a_thread_ending_with_a_parked_connection_gives_it_back_to_the_pool():
    def one_request():
        connection_id()
        close_old_connections()

    run_threads(one_request, 3)
    pool = connections["default"].pool.pool
    assert pool.parked() == 0
    assert pool.checkedout() == 0 and pool.checkedin() >= 1


def _database(alias="default"):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID(), DATABASE()")
        return cursor.fetchone()


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "timeout": 3})
def test_after_dispose_a_connection_parked_in_the_new_pool_is_anyones():
    wrapper = connections["default"]
    connection_id()
    close_old_connections()  # parked, its spot listed in the first pool
    dispose_pools()
    second = connection_id()  # a new pool
    close_old_connections()  # parked there: its spot must be listed there now
    pool = wrapper.pool.pool
    assert pool.parked() == 1 and pool.checkedout() == 0
    request = _RequestElsewhere()

    run_threads(request, 1)
    assert request.errors == [] and request.ids == [second]
    dispose_pools()
    with admin_connection() as admin:
        assert _wait_for(lambda: second not in server_connections(admin))


def test_a_spot_moved_between_pools_never_gives_one_pools_connection_to_another():
    wrapper = connections["default"]
    small = {"pool_size": 1, "max_overflow": 0, "timeout": 3}
    with override_settings(MYSQLPOOL_ARGUMENTS=small):
        connection_id()
        close_old_connections()  # parked in pool A
        pool_a = wrapper.pool
        with override_settings(MYSQLPOOL_ARGUMENTS={**small, "pool_size": 2}):
            connection_id()
            close_old_connections()  # parked in pool B
            pool_b = wrapper.pool
            assert pool_b is not pool_a
        # Leaving override_settings unparks everything: each record to its own pool.
        assert pool_a.pool.checkedout() == 0 and pool_a.pool.checkedin() <= 1
        assert pool_b.pool.checkedout() == 0 and pool_b.pool.checkedin() == 1
        wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 2, "max_overflow": 0, "timeout": 3})
def test_a_database_renamed_in_place_is_used_at_the_next_request():
    wrapper = connections["default"]
    name = wrapper.settings_dict["NAME"]
    assert _database()[1] == name
    close_old_connections()
    wrapper.settings_dict["NAME"] = name + "_b"  # as multi-tenant code or the test runner does
    try:
        assert _database()[1] == name + "_b"
        close_old_connections()
        wrapper.settings_dict["NAME"] = name
        assert _database()[1] == name
        close_old_connections()

        # Nor may the other database's parked connection reach another thread.
        seen = []
        run_threads(lambda: (seen.append(_database()[1]), connections["default"].close()), 1)
        assert seen == [name]
    finally:
        wrapper.settings_dict["NAME"] = name
        wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "recycle": 1, "max_lifetime": None})
def test_recycle_applies_to_a_parked_connection_its_owner_takes_back():
    first = connection_id()
    close_old_connections()
    time.sleep(1.3)
    assert connection_id() != first
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "timeout": 3})
def test_a_request_end_on_a_connection_closed_behind_the_pool_keeps_the_slot():
    wrapper = connections["default"]
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.cursor.connection.close()  # the bare driver connection, closed behind our back
    try:
        close_old_connections()
    except Exception:
        pass  # Django may report it; the slot must come back either way
    request = _RequestElsewhere()

    run_threads(request, 1)
    assert request.errors == [] and len(request.ids) == 1
    wrapper.close()


_FORK_WITH_THE_POOL_LOCK_HELD = """
import os, sys, threading, time
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
django.setup()
from django.db import close_old_connections, connections
from django.test import override_settings

with override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 3, "max_overflow": 0, "timeout": 3}):
    parked, locked, stop = threading.Event(), threading.Event(), threading.Event()

    def owner():  # parks a connection, so its handle's spot is listed
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        close_old_connections()
        parked.set()
        stop.wait(30)

    threading.Thread(target=owner, daemon=True).start()
    assert parked.wait(10)
    pool = connections["default"].pool.pool

    def locker():  # any thread inside the pool's lock at the instant of the fork
        with pool._lock:
            locked.set()
            stop.wait(30)

    threading.Thread(target=locker, daemon=True).start()
    assert locked.wait(10)
    child = os.fork()
    if child == 0:
        os._exit(0)  # reached only if the fork hooks did not block
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            print("child exited", os.waitstatus_to_exitcode(status), flush=True)
            break
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        os.waitpid(child, 0)
        print("child stuck", flush=True)
    stop.set()
"""


def test_a_fork_while_another_thread_holds_the_pool_lock_does_not_hang_the_child():
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", _FORK_WITH_THE_POOL_LOCK_HELD], cwd=root,
        capture_output=True, text=True, timeout=120,
    )
    assert "child exited 0" in result.stdout, result.stdout + result.stderr


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 2, "max_overflow": 0, "timeout": 3})
def test_a_thread_sharing_the_wrapper_cannot_attach_while_another_parks():
    wrapper = connections["default"]
    connection_id()
    close_old_connections()
    connection_id()  # taken back: attached, its spot listed
    wrapper.inc_thread_sharing()
    try:
        driver = wrapper.connection._driver_connection  # not driver_connection: that marks it dirty
        get_autocommit = driver.get_autocommit
        in_detach = threading.Event()

        def slow_get_autocommit():
            in_detach.set()
            time.sleep(0.5)  # the request end is half done: its connection is out of the handle
            return get_autocommit()

        driver.get_autocommit = slow_get_autocommit
        # Another thread ends a request on this shared wrapper...
        ended = threading.Thread(target=wrapper.close_if_unusable_or_obsolete, daemon=True)
        ended.start()
        assert in_detach.wait(10)

        def use_the_shared_wrapper():  # ...while a third one uses it
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT 1")

        run_threads(use_the_shared_wrapper, 1)
        ended.join(10)
        assert not ended.is_alive()
        driver.get_autocommit = get_autocommit  # (the driver refuses a del)
        handle = wrapper.connection
        assert len(handle._spot.parked) + (0 if handle.given_back else 1) == 1, (
            "the handle holds two connections"
        )
        close_old_connections()
        wrapper.close()
        pool = wrapper.pool.pool
        assert pool.checkedout() == 0
    finally:
        wrapper.dec_thread_sharing()


def _pings_on_this_session(alias="default"):
    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Com_admin_commands'")  # COM_PING counts here
        return int(cursor.fetchone()[1])


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "pre_ping": True})
def test_with_pre_ping_the_owner_pings_its_parked_connection_before_taking_it_back():
    wrapper = connections["default"]
    first, pings = connection_id(), _pings_on_this_session()
    close_old_connections()
    assert wrapper.pool.pool.parked() == 1
    assert connection_id() == first
    assert _pings_on_this_session() == pings + 1
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "ping_after_idle": 0.2})
def test_a_parked_connection_idle_past_ping_after_idle_is_pinged_when_taken_back():
    wrapper = connections["default"]
    first, pings = connection_id(), _pings_on_this_session()
    close_old_connections()
    assert connection_id() == first and _pings_on_this_session() == pings  # not idle long
    close_old_connections()
    time.sleep(0.3)
    assert connection_id() == first
    assert _pings_on_this_session() == pings + 1
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "reset_session": "always"})
def test_a_pool_that_resets_every_session_parks_nothing():
    wrapper = connections["default"]
    connection_id()
    close_old_connections()
    pool = wrapper.pool.pool
    assert pool.parked() == 0 and pool.checkedin() == 1
    wrapper.close()


def _given_back_once(give_back, listen=False):
    """What a pool of one looks like after one checkout given back by give_back(pool, record)."""
    from sqlalchemy import event

    pool = BurstKeepingQueuePool(lambda: address().connect(), pool_size=1, max_overflow=0, timeout=1)
    seen = []
    if listen:
        event.listen(pool, "checkin", lambda connection, record: seen.append(record))
    try:
        record = pool._do_get()
        connection = record.get_connection()
        give_back(pool, record)
        observed = {
            "idle": pool.checkedin(),
            "out": pool.checkedout(),
            "fairy": record.fairy_ref,
            "listener saw it": seen == [record],
            "kept open": record.dbapi_connection is connection,
        }
        again = pool._do_get()
        observed["handed out next"] = again is record
        pool.return_record(again)
        return observed
    finally:
        pool.dispose()


def test_return_record_leaves_the_pool_as_record_checkin_does():
    # return_record() is checkin()'s end, made lean: the two must not drift apart.
    def checkin(pool, record):
        record.checkin(_fairy_was_created=False)

    def lean(pool, record):
        pool.return_record(record)

    for listen in (False, True):
        assert _given_back_once(lean, listen) == _given_back_once(checkin, listen)
    assert _given_back_once(lean, listen=True)["listener saw it"]

