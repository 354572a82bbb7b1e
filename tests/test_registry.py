"""The registry against the real server: reuse, bounds, exhaustion, keys, close_pool, fork."""

import os
import threading
import time

import pytest
from django.db import connections
from django.db.utils import OperationalError
from django.test import override_settings

from django_mysqlpool import auto_close_db, close_pool
from django_mysqlpool.errors import PoolTimeout
from django_mysqlpool.registry import pools
from tests.helpers import admin_connection, connection_id, run_threads, server_connections


def test_fifty_cycles_in_one_thread_use_one_physical_connection():
    ids = set()
    for _ in range(50):
        ids.add(connection_id())
        connections["default"].close()
    assert len(ids) == 1


@override_settings(
    # idle_timeout longer than any pause inside the burst: a connection retired
    # mid-burst lingers a moment in the server's process list while its
    # replacement is already there, and would count twice.
    MYSQLPOOL_ARGUMENTS={"pool_size": 5, "max_overflow": 5, "timeout": 30, "idle_timeout": 1.0}
)
def test_three_hundred_threads_stay_within_pool_size_plus_overflow():
    errors = []
    peak = 0
    stop_sampling = threading.Event()

    def sample():
        nonlocal peak
        with admin_connection() as admin:
            while not stop_sampling.is_set():
                peak = max(peak, len(server_connections(admin)))
                time.sleep(0.002)

    @auto_close_db
    def request():
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT CONNECTION_ID(), SLEEP(0.01)")
                cursor.fetchall()
        except Exception as error:  # every error is a failure of the test
            errors.append(error)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run_threads(request, 300, timeout=120)
    finally:
        stop_sampling.set()
        sampler.join(10)
    assert not sampler.is_alive()
    assert errors == []
    assert 1 <= peak <= 10
    with admin_connection() as admin:
        # The burst's extra connections retire once idle for idle_timeout,
        # with no further request needed.
        deadline = time.monotonic() + 10
        while len(server_connections(admin)) > 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server_connections(admin)) <= 5


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 1, "max_overflow": 0, "timeout": 0.5})
def test_exhausted_pool_raises_a_django_error_naming_alias_numbers_and_way_out():
    first = connection_id()
    holder_ready = threading.Event()
    give_back = threading.Event()
    outcome = {}

    def other_thread():
        started = time.monotonic()
        try:
            connection_id()
        except Exception as error:
            outcome["error"] = error
        outcome["elapsed"] = time.monotonic() - started
        holder_ready.set()
        give_back.wait(10)
        connections.close_all()

    thread = threading.Thread(target=other_thread, daemon=True)
    thread.start()
    assert holder_ready.wait(10)
    error = outcome["error"]
    assert isinstance(error, PoolTimeout)
    assert isinstance(error, OperationalError)
    message = str(error)
    assert "\n" not in message
    for expected in ("'default'", "0.50 s", "pool_size=1", "max_overflow=0", "auto_close_db"):
        assert expected in message
    assert 0.4 < outcome["elapsed"] < 3.0
    give_back.set()
    thread.join(10)
    assert not thread.is_alive()

    connections["default"].close()
    assert connection_id() == first  # the given-back connection is reused


def test_different_user_or_database_never_share_a_connection():
    ids = {alias: connection_id(alias) for alias in ("default", "other_user", "other_db")}
    assert len(set(ids.values())) == 3
    for alias in ids:
        connections[alias].close()
    assert {alias: connection_id(alias) for alias in ids} == ids
    assert len(pools()) == 3


def test_different_options_mean_different_pools():
    wrapper = connections["default"]
    before = connection_id()
    wrapper.close()
    wrapper.settings_dict["OPTIONS"] = {"init_command": "SET @marker = 1"}
    try:
        after = connection_id()
        wrapper.close()
    finally:
        wrapper.settings_dict["OPTIONS"] = {}
    assert before != after
    assert len(pools()) == 2


def test_no_key_or_password_in_reprs_or_errors():
    connection_id("other_user")
    pool_reprs = " ".join(repr(managed) for managed in pools())
    raw_connection = connections["other_user"].connection
    texts = [pool_reprs, repr(raw_connection), repr(pools())]
    assert all("other-secret-pw" not in text for text in texts)
    assert "mysqlpool_other" in pool_reprs


def test_close_pool_disposes_idle_now_and_checked_out_on_give_back():
    idle = connection_id("other_db")
    connections["other_db"].close()
    busy = connection_id()  # stays checked out across close_pool() in another thread
    closer = threading.Thread(target=close_pool, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive()
    with admin_connection() as admin:
        assert idle not in server_connections(admin, database=connections["other_db"].settings_dict["NAME"])
        assert busy in server_connections(admin)
        connections["default"].close()
        deadline = time.monotonic() + 5
        while busy in server_connections(admin) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert busy not in server_connections(admin)
    close_pool()  # safe twice
    assert connection_id() != busy


def test_close_pool_gives_back_the_calling_threads_connections():
    first = connection_id()
    close_pool()
    assert connections["default"].connection is None
    assert connection_id() != first


def test_close_pool_then_fork_parent_and_children_never_share():
    parent_id = connection_id()
    close_pool()
    read_end, write_end = os.pipe()
    children = []
    for _ in range(5):
        pid = os.fork()
        if pid == 0:  # child: report its connection id, never return into pytest
            status = 1
            try:
                os.close(read_end)
                child_id = connection_id()
                connections["default"].close()
                os.write(write_end, f"{child_id}\n".encode())
                status = 0
            finally:
                os._exit(status)
        children.append(pid)
    os.close(write_end)
    statuses = [_wait_child(pid, timeout=30) for pid in children]
    with os.fdopen(read_end) as reports:
        child_ids = [int(line) for line in reports.read().split()]
    assert statuses == [0] * 5
    assert len(set(child_ids)) == 5
    parent_after = connection_id()
    assert parent_after not in child_ids
    assert parent_id not in child_ids


def _wait_child(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"child {pid} did not finish in {timeout} s")


@override_settings(MYSQLPOOL_BACKEND="NullPool", MYSQLPOOL_ARGUMENTS={})
def test_null_pool_opens_a_new_connection_per_cycle_and_leaves_none_open():
    ids = []
    for _ in range(5):
        ids.append(connection_id())
        connections["default"].close()
    assert len(set(ids)) == 5
    with admin_connection() as admin:
        deadline = time.monotonic() + 5
        while server_connections(admin) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server_connections(admin) == []


BAD_LOGINS = [
    ({"PASSWORD": "wrong-secret-pw"}, (1045,), ["'default'", "Access denied"]),
    ({"NAME": "no_such_database_here"}, (1049,), ["'default'", "no_such_database_here"]),
    ({"PORT": "__free_port__", "OPTIONS": {"connect_timeout": 2}}, (2002, 2003), ["'default'", "127.0.0.1"]),
]


@pytest.mark.parametrize("overrides, errnos, fragments", BAD_LOGINS, ids=["password", "database", "port"])
def test_bad_connection_settings_give_one_line_naming_alias_and_cause(caplog, overrides, errnos, fragments):
    from tests.server import free_port

    wrapper = connections["default"]
    saved = dict(wrapper.settings_dict)
    overrides = {k: str(free_port()) if v == "__free_port__" else v for k, v in overrides.items()}
    wrapper.settings_dict.update(overrides)
    caplog.set_level("DEBUG")
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError) as caught:
            connection_id()
    finally:
        wrapper.settings_dict.clear()
        wrapper.settings_dict.update(saved)
    assert time.monotonic() - started < 10
    assert caught.value.args[0] in errnos  # the driver's number, kept first
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    everything = message + caplog.text + repr(pools())
    assert "wrong-secret-pw" not in everything
    assert "other-secret-pw" not in everything


def test_debug_logs_never_show_the_password(caplog):
    caplog.set_level("DEBUG")
    connection_id("other_user")
    connections["other_user"].close()
    connection_id("other_user")
    close_pool()
    assert "django_mysqlpool" in caplog.text
    assert "other-secret-pw" not in caplog.text


def test_the_alias_pool_has_sqlalchemys_status_line():
    connection_id()
    status = connections["default"].pool.status()
    assert "Pool size: 5" in status and "Current Checked out connections: 1" in status
    connections["default"].close()
