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

from django_mysqlpool.pools import dispose_pools
from tests.helpers import admin_connection, connection_id, run_threads, server_connections

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 5}


def _wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


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
    got, errors = [], []

    def request():
        try:
            got.append(connection_id())
        except Exception as error:  # a PoolTimeout if parking kept it from us
            errors.append(error)
        finally:
            connections["default"].close()

    waiter = threading.Thread(target=request, daemon=True)
    waiter.start()
    assert _wait_for(lambda: pool._waiting == 1), "the other thread never waited"
    close_old_connections()  # this request ends: its connection must go to the waiter
    waiter.join(15)  # at once, not when its 120 s run out
    handed_over = not waiter.is_alive()
    if not handed_over:
        wrapper.close()  # let it go before failing
        waiter.join(30)
    assert handed_over, "the waiting checkout was not handed the parked connection"
    assert errors == [] and got == [held]
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
