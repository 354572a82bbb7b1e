"""get_stats() and pop_stats(): what each counter and gauge says, against the real server."""

import time

import pytest
from django.db import close_old_connections, connections
from django.test import override_settings

from django_mysqlpool import get_stats, pop_stats
from django_mysqlpool.errors import PoolTimeout
from tests.helpers import (
    admin_connection,
    checkout_in_another_thread,
    connection_id,
    mysqlclient_only,
    resets_in_place,
)

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 0.3}


def _cycle(statement="SELECT 1"):
    with connections["default"].cursor() as cursor:
        cursor.execute(statement)
        cursor.fetchall()
    connections["default"].close()


@resets_in_place
@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_the_counters_follow_what_happened():
    for _ in range(3):
        _cycle()  # one connection opened; close() parks it and the next connect() takes it back
    _cycle("SET @dirty = 1")  # taken back once more, then a reset: given back, not parked
    _cycle("START TRANSACTION")  # a checkout, then a rollback
    stats = pop_stats("default")["default"]
    assert stats["connections_num"] == 1 and stats["connections_errors"] == 0
    assert stats["connections_ms"] >= 0
    assert stats["requests_num"] == 5 and stats["parked_reclaims"] == 3
    assert stats["resets"] == 1 and stats["rollbacks"] == 1
    assert stats["returns_bad"] == 0 and stats["connections_lost"] == 0
    assert (stats["pool_min"], stats["pool_max"], stats["pool_size"], stats["pool_available"]) == (1, 1, 1, 1)
    assert stats["requests_waiting"] == 0


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_requests_served_by_their_parked_connection_count_as_requests():
    connection_id()
    for _ in range(4):
        close_old_connections()  # the request's end: parked
        connection_id()  # the next request takes it back
    stats = get_stats("default")["default"]
    assert stats["parked_reclaims"] == 4 and stats["requests_num"] == 5
    connections["default"].close()


@mysqlclient_only("change_user()")
@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_dead_idle_connection_counts_as_lost_and_a_change_no_reset_undoes_as_bad():
    killed = connection_id()
    connections["default"].close()
    with admin_connection() as admin:
        admin.cursor().execute(f"KILL {killed}")
    time.sleep(0.1)
    connection_id()  # the dead one is replaced, unseen
    connections["default"].connection.change_user  # noqa: B018 - read: closes at give-back
    connections["default"].close()
    stats = get_stats("default")["default"]
    assert stats["connections_lost"] == 1 and stats["returns_bad"] == 1
    assert stats["connections_num"] == 2


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_checkout_that_waits_and_one_that_times_out_are_counted():
    connection_id()  # held by this thread
    (failure,) = checkout_in_another_thread()
    assert isinstance(failure, PoolTimeout)
    stats = pop_stats("default")["default"]
    assert stats["requests_queued"] == 1 and stats["requests_errors"] == 1
    assert 250 <= stats["requests_wait_ms"] < 2000  # timeout 0.3 s
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_pop_stats_zeroes_the_counters_not_the_gauges():
    _cycle()
    assert pop_stats()["default"]["requests_num"] == 1
    again = pop_stats()["default"]
    assert again["requests_num"] == 0 and again["connections_num"] == 0
    assert again["pool_size"] == 1  # still open: a gauge


def test_an_alias_with_several_pools_names_each_without_the_password():
    connection_id()
    connections["default"].close()
    with override_settings(MYSQLPOOL_ARGUMENTS=SINGLE):  # another pool for the same alias
        connection_id()
        connections["default"].close()
    names = list(get_stats("default"))
    assert len(names) == 2 and names[0] == "default" and names[1].startswith("default ")
    password = connections["default"].settings_dict["PASSWORD"]
    assert not password or not any(password in name for name in names)
    connection_id("other_user")
    assert "other-secret-pw" not in repr(get_stats())
    assert list(get_stats("other_user")) == ["other_user"]


@pytest.mark.parametrize("backend", ["NullPool"])
def test_pools_of_other_classes_report_counters_and_no_gauges(backend):
    with override_settings(MYSQLPOOL_BACKEND=backend):
        _cycle()
        stats = get_stats("default")["default"]
    assert stats["requests_num"] == 1 and stats["pool_max"] is None
