"""A pool disposed while a connection is on its way back to it.

dispose_pools() (close_pool(), a settings change) may run between a
give-back or a park deciding the pool is live and the connection reaching
it. The connection must close then, not sit open in a pool that nobody
checks out from again. Each test forces that interleaving from inside the
give-back, on the real server, and watches the connection on the server.
"""

import time

import pytest
from django.db import close_old_connections, connections
from django.test import override_settings

from django_mysqlpool.registry import dispose_pools
from tests.helpers import admin_connection, connection_id, run_threads, server_connections

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 5}


def _closed_on_the_server(connection_id_, timeout=10.0):
    with admin_connection() as admin:
        deadline = time.monotonic() + timeout
        while connection_id_ in server_connections(admin) and time.monotonic() < deadline:
            time.sleep(0.05)
        return connection_id_ not in server_connections(admin)


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_connection_given_back_as_its_pool_is_disposed_closes(monkeypatch):
    wrapper = connections["default"]
    given = connection_id()
    managed = wrapper.pool
    return_record = managed.return_record

    def disposed_on_the_way(record):
        # give_back() has found the pool live; now it is disposed.
        dispose_pools()
        return_record(record)

    monkeypatch.setattr(managed, "return_record", disposed_on_the_way)
    with wrapper.cursor() as cursor:
        cursor.execute("SET @left = 1")  # a session to reset: given back in full, not parked
    wrapper.close()
    assert _closed_on_the_server(given)
    assert managed.pool.checkedin() == 0 and managed.pool.checkedout() == 0
    assert connection_id() != given  # a new pool, a new connection


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_connection_parked_as_its_pool_is_disposed_closes():
    wrapper = connections["default"]
    first = connection_id()
    close_old_connections()  # parked: its spot is now listed in the pool
    assert connection_id() == first  # taken back
    managed = wrapper.pool
    driver = wrapper.connection._driver_connection  # not driver_connection: that marks it dirty
    get_autocommit = driver.get_autocommit

    def disposed_mid_park():
        # The request end has read managed.parking (still True); now the
        # pool is disposed, before the connection reaches its spot.
        dispose_pools()
        return get_autocommit()

    driver.get_autocommit = disposed_mid_park
    try:
        close_old_connections()  # the request's end: parks, or closes once it sees the dispose
    finally:
        driver.get_autocommit = get_autocommit  # (the driver refuses a del)
    # Closed now, not at the owner's next request, which may never come.
    assert _closed_on_the_server(first)
    assert managed.pool.parked() == 0 and managed.pool.checkedin() == 0
    assert connection_id() != first
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "min_idle": 1})
def test_a_disposed_pool_keeps_nothing_idle_even_under_min_idle():
    wrapper = connections["default"]
    given = connection_id()
    managed = wrapper.pool
    dispose_pools()  # the connection is out: it closes when given back
    wrapper.close()
    assert _closed_on_the_server(given)
    managed.retire_idle()  # the sweep a later give-back runs keeps nothing either
    assert managed.pool.checkedin() == 0


class _Interrupted(BaseException):
    """What a gevent.Timeout or a KeyboardInterrupt is: not an Exception."""


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 2, "max_overflow": 0, "timeout": 5})
def test_a_close_that_raises_during_dispose_stops_neither_the_others_nor_the_count():
    wrapper = connections["default"]
    connection_id()
    run_threads(lambda: (connection_id(), connections["default"].close()), 1)
    wrapper.close()  # parked here (the other thread's end gave its own back)
    wrapper.pool.unpark_all()  # both connections idle in the pool
    pool = wrapper.pool.pool
    first, second = list(pool._idle)  # dispose() closes the oldest first
    stuck_id, other_id = first.dbapi_connection.thread_id(), second.dbapi_connection.thread_id()

    def interrupted():
        raise _Interrupted

    first.close = interrupted
    try:
        with pytest.raises(_Interrupted):
            dispose_pools()
        assert _closed_on_the_server(other_id)
        assert pool._overflow == -2  # both slots counted down: nothing open in it
        assert len(pool._idle) == 0
    finally:
        del first.close
        first.close()
    assert _closed_on_the_server(stuck_id)
