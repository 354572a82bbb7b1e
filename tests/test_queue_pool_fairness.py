"""Waiting checkouts are served first come, first served, against the real server.

A connection given back, a parked one handed over, or a slot freed by a
closed connection goes to the checkout that has waited longest; a checkout
arriving meanwhile (even the thread that just gave the connection back)
queues behind it. The order is what the waiting threads observe; nothing
here depends on how fast the machine is.
"""

import threading
import time

from django.db import close_old_connections, connections
from django.test import override_settings

from tests.helpers import admin_connection, connection_id, in_another_thread, server_connections

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 120}


def _wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class _Checkout(threading.Thread):
    """A request in a thread of its own: it notes its name in order once it has a connection."""

    def __init__(self, name, order, hold=None):
        super().__init__(daemon=True)
        self.label, self.order, self.hold = name, order, hold
        self.ids, self.errors = [], []

    def run(self):
        try:
            self.ids.append(connection_id())
            self.order.append(self.label)
            if self.hold is not None:
                assert self.hold.wait(30), "never released"
        except Exception as error:  # reported by the test
            self.errors.append(error)
        finally:
            connections["default"].close()


def _queue_behind(pool, checkout, waiting):
    checkout.start()
    assert _wait_for(lambda: pool.waiting() == waiting), "the checkout never waited"


def _finish(*checkouts):
    for checkout in checkouts:
        checkout.join(30)
        assert not checkout.is_alive(), f"{checkout.label} never got a connection"
        assert checkout.errors == []


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_waiting_checkouts_are_served_in_the_order_they_came():
    connection_id()  # the only connection, held here
    pool = connections["default"].pool.pool
    order = []
    waiters = [_Checkout(f"waiter {number}", order) for number in range(5)]
    for number, waiter in enumerate(waiters, start=1):
        _queue_behind(pool, waiter, number)
    connections["default"].close()
    _finish(*waiters)
    assert order == [waiter.label for waiter in waiters]


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_connection_given_back_goes_to_the_waiter_not_to_the_next_checkout():
    held = connection_id()
    pool = connections["default"].pool.pool
    order = []
    waiter = _Checkout("waiter", order)
    _queue_behind(pool, waiter, 1)
    connections["default"].close()
    # This thread asks again at once: it must queue behind the waiter, who
    # was handed the connection as it was given back.
    again = connection_id()
    order.append("newcomer")
    connections["default"].close()
    _finish(waiter)
    assert order == ["waiter", "newcomer"]
    assert waiter.ids == [held] and again == held


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_parked_connection_goes_to_the_waiter_not_back_to_its_owner():
    wrapper = connections["default"]
    connection_id()
    close_old_connections()  # parked once: its spot is listed from now on
    held = connection_id()  # taken back
    pool = wrapper.pool.pool
    order = []
    waiter = _Checkout("waiter", order)
    _queue_behind(pool, waiter, 1)
    close_old_connections()  # the request's end parks it: it goes to the waiter
    again = connection_id()  # the owner's next request waits its turn
    order.append("owner")
    wrapper.close()
    _finish(waiter)
    assert order == ["waiter", "owner"]
    assert waiter.ids == [held] and again == held


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_slot_freed_by_a_closed_connection_goes_to_the_waiter():
    wrapper = connections["default"]
    held = connection_id()
    wrapper.connection.driver_connection  # handed out: it is closed, not pooled, at close()
    pool = wrapper.pool.pool
    order = []
    waiter = _Checkout("waiter", order)
    _queue_behind(pool, waiter, 1)
    wrapper.close()  # closes it: the slot goes to the waiter, who opens a connection in it
    again = connection_id()
    order.append("newcomer")
    wrapper.close()
    _finish(waiter)
    assert order == ["waiter", "newcomer"]
    assert waiter.ids != [held] and again == waiter.ids[0]
    assert pool.open_count() <= 1


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 1, "max_overflow": 0, "timeout": 0.5})
def test_a_waiter_that_times_out_leaves_the_line_and_the_next_is_served():
    from django_mysqlpool.errors import PoolTimeout

    connection_id()
    pool = connections["default"].pool.pool
    late = _Checkout("late", [])
    late.start()
    late.join(30)
    assert not late.is_alive()
    assert len(late.errors) == 1 and isinstance(late.errors[0], PoolTimeout)
    assert pool.waiting() == 0  # its place in line is gone
    connections["default"].close()
    order = []
    served = _Checkout("served", order)
    served.start()
    _finish(served)
    assert order == ["served"]


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 2, "max_overflow": 1, "timeout": 120})
def test_under_contention_no_connection_is_held_by_two_threads_and_the_bound_holds():
    # Twenty threads on three connections, giving back in every way the
    # pool knows (given back, parked at a request's end, closed): no
    # connection is ever held by two threads, and the server never sees
    # more than three.
    holders = {}
    overlaps, errors, peak = [], [], [0]
    guard = threading.Lock()
    stop = threading.Event()

    def work(number):
        wrapper = connections["default"]
        try:
            for cycle in range(15):
                with wrapper.cursor() as cursor:
                    cursor.execute("SELECT CONNECTION_ID()")
                    (held,) = cursor.fetchone()
                    with guard:
                        if held in holders:
                            overlaps.append((held, holders[held], number))
                        holders[held] = number
                    cursor.execute("SELECT 1")
                    with guard:
                        del holders[held]
                way = (number + cycle) % 3
                if way == 0:
                    wrapper.close()
                elif way == 1:
                    close_old_connections()  # parks, or hands over to a waiter
                else:
                    wrapper.connection.driver_connection  # closed at close(): its slot frees
                    wrapper.close()
        except Exception as error:  # reported by the test
            errors.append(error)
        finally:
            wrapper.close()

    def sample():
        with admin_connection() as admin:
            while not stop.is_set():
                peak[0] = max(peak[0], len(server_connections(admin)))
                time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=work, args=(number,), daemon=True) for number in range(20)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        stop.set()
        sampler.join(30)
    assert not sampler.is_alive()
    assert errors == [] and overlaps == []
    assert peak[0] <= 3
    pool = connections["default"].pool.pool
    assert pool.waiting() == 0 and pool.open_count() <= 3 and pool.checkedout() == 0


class _Interrupted(BaseException):
    """What a gevent.Timeout or a KeyboardInterrupt is: not an Exception."""


def _waiters_interrupted(monkeypatch, after_served):
    # Each waiter's sleep ends in an interrupt: once it was served (the
    # connection or slot handed to it just as the interrupt came), or at once.
    from django_mysqlpool import queue_pool

    class Wakeup:
        def __init__(self, lock):
            self.lock = lock

        def acquire(self, blocking=True, timeout=-1):
            if after_served:
                assert self.lock.acquire(blocking, timeout), "never served"
            raise _Interrupted

        def release(self):
            self.lock.release()

    class InterruptedWaiter(queue_pool._Waiter):
        __slots__ = ()

        def __init__(self):
            super().__init__()
            self.wakeup = Wakeup(self.wakeup)

    monkeypatch.setattr(queue_pool, "_Waiter", InterruptedWaiter)


def _interrupted_checkout(pool, served_by):
    raised = []

    def checkout():
        try:
            connection_id()
        except _Interrupted as interrupt:
            raised.append(interrupt)
        finally:
            connections["default"].close()

    thread = threading.Thread(target=checkout, daemon=True)
    thread.start()
    if served_by is not None:
        assert _wait_for(lambda: pool.waiting() == 1), "the checkout never waited"
        served_by()
    thread.join(30)
    assert not thread.is_alive()
    assert len(raised) == 1
    assert pool.waiting() == 0


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "timeout": 3})
def test_a_waiter_interrupted_as_it_is_handed_a_connection_gives_it_back(monkeypatch):
    held = connection_id()
    pool = connections["default"].pool.pool
    _waiters_interrupted(monkeypatch, after_served=True)
    _interrupted_checkout(pool, served_by=connections["default"].close)
    # The connection it was handed is back in the pool, not lost with it.
    assert pool.checkedout() == 0 and pool.open_count() == 1
    monkeypatch.undo()
    assert connection_id() == held
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "timeout": 3})
def test_a_waiter_interrupted_as_it_is_handed_a_free_slot_gives_it_back(monkeypatch):
    from django_mysqlpool.registry import dispose_pools

    wrapper = connections["default"]
    connection_id()
    pool = wrapper.pool.pool
    _waiters_interrupted(monkeypatch, after_served=True)

    def closed_in_a_disposed_pool():
        dispose_pools()
        wrapper.close()  # closed, not pooled: its slot goes to the waiter

    _interrupted_checkout(pool, served_by=closed_in_a_disposed_pool)
    assert pool.open_count() == 0  # the slot came back: nothing counts as open
    monkeypatch.undo()
    assert connection_id() is not None  # from the new pool
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "timeout": 3})
def test_a_waiter_interrupted_before_it_is_served_leaves_the_line(monkeypatch):
    held = connection_id()
    pool = connections["default"].pool.pool
    _waiters_interrupted(monkeypatch, after_served=False)
    _interrupted_checkout(pool, served_by=None)
    connections["default"].close()  # nobody is in line: it goes to the idle ones
    monkeypatch.undo()
    assert in_another_thread(connection_id) == held
