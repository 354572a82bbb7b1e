"""Never hand out a dead connection: poll, ping after idle, lifetime, idle retirement."""

import json
import os
import subprocess
import sys
import time

import pytest
from django.db import OperationalError, connections, transaction
from django.test import override_settings

from django_mysqlpool.state import state_of
from tests.helpers import admin_connection, connection_id, database_name, server_connections

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 5}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _kill(connection_ids):
    with admin_connection() as admin:
        for victim in connection_ids:
            admin.cursor().execute(f"KILL {victim}")
        deadline = time.monotonic() + 5
        while set(connection_ids) & set(server_connections(admin)) and time.monotonic() < deadline:
            time.sleep(0.01)


@pytest.fixture
def short_wait_timeout():
    """Sessions the server closes after one idle second."""
    wrapper = connections["default"]
    wrapper.close()
    wrapper.settings_dict["OPTIONS"] = {"init_command": "SET SESSION wait_timeout = 1"}
    yield
    wrapper.close()
    wrapper.settings_dict["OPTIONS"] = {}


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "ping_after_idle": None})
def test_a_killed_idle_connection_is_replaced_by_the_socket_poll_alone():
    victim = connection_id()
    connections["default"].close()
    _kill([victim])
    replacement = connection_id()  # no error: found dead at checkout, replaced
    assert replacement != victim


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 4, "max_overflow": 0, "timeout": 5})
def test_every_killed_connection_is_replaced_without_an_error():
    ids = []
    holders = [connections.create_connection("default") for _ in range(4)]
    for holder in holders:
        holder.ensure_connection()
        ids.append(holder.connection.thread_id())
    for holder in holders:
        holder.close()
    _kill(ids)
    for _ in range(8):
        assert connection_id() not in ids
        connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_connection_closed_by_wait_timeout_is_replaced(short_wait_timeout):
    victim = connection_id()
    connections["default"].close()
    time.sleep(1.6)
    assert connection_id() != victim


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_kept_connection_closed_by_wait_timeout_is_replaced_before_the_next_query(short_wait_timeout):
    # A daemon thread that never closes: the 2006 "MySQL server has gone away" case.
    victim = connection_id()
    time.sleep(1.6)
    assert connection_id() != victim


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_kept_connection_lost_inside_a_transaction_is_not_hidden(short_wait_timeout):
    with pytest.raises(OperationalError):
        with transaction.atomic():
            connection_id()
            time.sleep(1.6)
            connection_id()  # the transaction is gone: this must fail, not reconnect


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "max_lifetime": 0.3})
def test_connections_expire_after_max_lifetime():
    first = connection_id()
    connections["default"].close()
    assert connection_id() == first
    connections["default"].close()
    time.sleep(0.4)
    assert connection_id() != first
    with admin_connection() as admin:
        assert first not in server_connections(admin)


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 10, "max_overflow": 0, "max_lifetime": 100})
def test_connections_opened_together_expire_apart():
    holders = [connections.create_connection("default") for _ in range(10)]
    for holder in holders:
        holder.ensure_connection()
    expiries = [state_of(holder.connection.driver_connection).expires_at for holder in holders]
    for holder in holders:
        holder.close()
    assert len({round(expiry, 3) for expiry in expiries}) == 10
    assert max(expiries) - min(expiries) > 0.5  # spread over up to 10 s of jitter


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 4, "max_overflow": 0, "min_idle": 1, "idle_timeout": 0.3})
def test_idle_connections_beyond_min_idle_retire_after_idle_timeout():
    holders = [connections.create_connection("default") for _ in range(4)]
    for holder in holders:
        holder.ensure_connection()
    for holder in holders:
        holder.close()
    with admin_connection() as admin:
        assert len(server_connections(admin)) == 4  # the burst is kept for a while
        time.sleep(0.4)
        connection_id()
        connections["default"].close()  # a give-back notices the idle ones
        deadline = time.monotonic() + 5
        while len(server_connections(admin)) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(server_connections(admin)) == 1


def test_pymysql_connections_are_kept_checked_and_cleaned():
    environment = {**os.environ, "PYTHONPATH": ROOT}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "sites", "pymysql_app.py"), database_name()],
        env=environment, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["driver"] == "pymysql"
    assert report["reused_ids"] == 1  # 20 cycles, one connection: none thrown away
    assert report["after_kill"] != report["first"]
    assert report["after_dirty"]["user_variable"] is None
    assert report["lock_left_by_atomic"] is None
    assert report["errors"] == []


@override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "ping_after_idle": 0})
def test_a_live_connection_passes_the_ping_and_is_kept():
    ids = set()
    for _ in range(10):
        ids.add(connection_id())
        connections["default"].close()
    assert len(ids) == 1
