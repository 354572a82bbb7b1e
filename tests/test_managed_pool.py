"""A managed pool's own duties: leak detection (the checkout itself is tested through the engine)."""

import logging
import threading
import time

from django.db import close_old_connections, connections
from django.test import override_settings

from tests.helpers import connection_id

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 5}


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()


def _checked_out_here():
    return connection_id()  # this line is in the reported stack


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "leak_detection": 0.2})
def test_a_connection_held_too_long_is_reported_once_with_where_it_was_checked_out(caplog):
    caplog.set_level(logging.INFO, logger="django_mysqlpool")
    _checked_out_here()
    warnings = lambda: [r for r in caplog.records if r.levelno == logging.WARNING and "leak" in r.getMessage()]  # noqa: E731
    # The idle sweeper looks every second.
    assert _wait_for(lambda: warnings()), "no leak warning within 10 s"
    time.sleep(1.5)  # another sweep or two: still one warning
    (warning,) = warnings()
    message = warning.getMessage()
    assert "'default'" in message and threading.current_thread().name in message
    assert "_checked_out_here" in message and "leak_detection is 0.2 s" in message
    caplog.clear()
    connections["default"].close()
    given_back = [r for r in caplog.records if r.levelno == logging.INFO and "given back" in r.getMessage()]
    assert len(given_back) == 1


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "leak_detection": 0.5})
def test_connections_given_back_in_time_are_never_reported(caplog):
    caplog.set_level(logging.INFO, logger="django_mysqlpool")
    deadline = time.monotonic() + 2.5  # at least two sweeps
    while time.monotonic() < deadline:
        connection_id()
        close_old_connections()  # the request's end: parked, which ends the checkout
        connection_id()
        connections["default"].close()
        time.sleep(0.05)
    assert not [r for r in caplog.records if "leak" in r.getMessage()]


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_without_leak_detection_nothing_is_recorded():
    connection_id()
    managed = connections["default"].pool
    assert managed.leak_threshold is None and managed._checkouts == {}
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "max_waiting": 1})
def test_a_checkout_beyond_max_waiting_fails_at_once_and_the_waiting_one_is_served():
    from django_mysqlpool import get_stats
    from django_mysqlpool.errors import PoolTimeout, TooManyRequests

    connection_id()  # the only connection, held here
    waited, refused = [], []

    def checkout(into):
        started = time.monotonic()
        try:
            connection_id()
            into.append(time.monotonic() - started)
        except PoolTimeout as error:
            into.append(error)
            into.append(time.monotonic() - started)
        finally:
            connections["default"].close()

    first = threading.Thread(target=checkout, args=(waited,), daemon=True)
    first.start()
    assert _wait_for(lambda: get_stats("default")["default"]["requests_waiting"] == 1)
    second = threading.Thread(target=checkout, args=(refused,), daemon=True)
    second.start()
    second.join(10)
    assert not second.is_alive()
    error, elapsed = refused
    assert isinstance(error, TooManyRequests) and elapsed < 1.0  # not the 5 s timeout
    message = str(error)
    assert "'default'" in message and "max_waiting=1" in message and "1 checkouts already wait" in message
    connections["default"].close()  # the waiting one gets it
    first.join(10)
    assert not first.is_alive() and isinstance(waited[0], float)
    assert get_stats("default")["default"]["requests_errors"] == 1
