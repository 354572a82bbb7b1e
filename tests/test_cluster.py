"""Several servers in HOST, against real servers: parsing, failover inside a checkout, node health, return."""

import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.utils import ConnectionHandler, OperationalError
from django.test import override_settings

from django_mysqlpool.cluster import parse_hosts
from django_mysqlpool.registry import dispose_pools
from tests.helpers import ON_PYMYSQL, address, database_name, hold_at_once
from tests.server import PrivateServer, free_port


def test_a_host_list_is_read_as_servers_with_ports():
    assert parse_hosts("db1:3307,db2, [::1]:3308", "3306") == [("db1", 3307), ("db2", 3306), ("::1", 3308)]
    assert parse_hosts("db1,db2", "") == [("db1", 3306), ("db2", 3306)]
    assert parse_hosts("db1", "3306") is None  # one server: exactly as the stock engine
    assert parse_hosts("", "") is None


@pytest.mark.parametrize("host, says", [
    ("db1,,db2", "empty server name"),
    ("db1:x,db2", "not a number"),
    ("/run/mysqld.sock,db2", "unix socket"),
    ("db1:3306,db1:3306", "twice"),
])
def test_a_host_list_that_cannot_be_read_says_why(host, says):
    with pytest.raises(ValueError, match=says):
        parse_hosts(host, "")


def _handler(host, port="", **pool):
    """A ConnectionHandler of its own, whose default alias is pooled on these servers."""
    server = address()
    return ConnectionHandler({"default": {
        "ENGINE": "django_mysqlpool.backends.mysqlpool", "HOST": host, "PORT": port,
        "USER": server.user, "PASSWORD": server.password, "NAME": database_name(),
        "OPTIONS": {"connect_timeout": 2, "pool": {"host_retry_after": 0.5, **pool}},
    }})


def _served_port(handler):
    connection = handler["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@port")
            return cursor.fetchone()[0]
    finally:
        connection.close()


@pytest.fixture
def handlers():
    made = []

    def make(*args, **kwargs):
        handler = _handler(*args, **kwargs)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close_all()
    dispose_pools()


def test_a_checkout_moves_past_a_node_that_refuses_and_remembers_it_is_down(handlers, caplog):
    dead = free_port()
    server = address()
    handler = handlers(f"127.0.0.1:{dead},{server.host}:{server.port}")
    started = time.monotonic()
    assert _served_port(handler) == server.port  # the caller never sees the dead node
    first = time.monotonic() - started
    assert f"127.0.0.1:{dead} down" in handler["default"].pool.status()
    assert any("is down" in record.getMessage() for record in caplog.records)
    # Remembered: the next connection does not try the dead node first.
    pool = handler["default"].pool
    before = pool.get_stats()["connections_errors"]
    for _ in range(5):
        _served_port(handler)
    assert pool.get_stats()["connections_errors"] == before
    assert first < 10  # a refused port costs no connect_timeout


def test_every_node_down_is_one_clear_error_naming_the_alias_and_each_node(handlers):
    first, second = free_port(), free_port()
    handler = handlers(f"127.0.0.1:{first},127.0.0.1:{second}")
    handler["default"].settings_dict["PASSWORD"] = "a-secret-password"
    with pytest.raises(OperationalError) as raised:
        _served_port(handler)
    message = str(raised.value)
    assert "database alias 'default'" in message
    assert f"127.0.0.1:{first} down (" in message and f"127.0.0.1:{second} down (" in message
    assert "\n" not in message and "a-secret-password" not in message
    assert raised.value.args[0] in (2002, 2003)  # the driver's number stays first


def test_a_node_that_comes_back_is_probed_and_failover_returns_to_it(handlers):
    preferred = PrivateServer()
    try:
        preferred.start()
        preferred.address.connect().cursor().execute(f"CREATE DATABASE `{database_name()}`")
        server = address()
        handler = handlers(f"127.0.0.1:{preferred.port},{server.host}:{server.port}")
        assert _served_port(handler) == preferred.port
        preferred.kill()
        # The next request sees the dead connection at checkout, the refused
        # connect, and goes on to the second node, all in one checkout.
        assert _served_port(handler) == server.port
        preferred.start()
        deadline = time.monotonic() + 20  # back-off 0.5 s; the sweeper probes every second
        served = None
        while time.monotonic() < deadline:
            served = _served_port(handler)
            if served == preferred.port:
                break
            time.sleep(0.05)
        assert served == preferred.port
        # And it stays there: connections to the second node were closed as given back.
        assert {_served_port(handler) for _ in range(10)} == {preferred.port}
    finally:
        preferred.destroy()


def test_round_robin_spreads_new_connections_over_the_nodes(handlers):
    other = PrivateServer()
    try:
        other.start()
        other.address.connect().cursor().execute(f"CREATE DATABASE `{database_name()}`")
        server = address()
        handler = handlers(f"{server.host}:{server.port},127.0.0.1:{other.port}", host_policy="round_robin")
        ports = hold_at_once(lambda: handler["default"], 4, "SELECT @@port", timeout=20)
        assert sorted(ports) == sorted([server.port] * 2 + [other.port] * 2)
    finally:
        other.destroy()


def test_one_host_behaves_as_before(handlers):
    server = address()
    handler = handlers(server.host, str(server.port))
    _served_port(handler)
    pool = handler["default"].pool
    assert pool.cluster is None and pool.parking
    assert "Nodes" not in pool.status()


@pytest.mark.parametrize("pool, says", [
    ({"host_policy": "nearest"}, "'host_policy' must be one of 'failover', 'round_robin'"),
    ({"host_retry_after": 0}, "'host_retry_after' must be a number of seconds above 0"),
    ({"wsrep_sync_wait": 16}, "'wsrep_sync_wait' must be a whole number from 0 to 15"),
    ({"wsrep_sync_wait": True}, "'wsrep_sync_wait' must be a whole number"),
])
def test_cluster_settings_that_make_no_sense_are_refused(handlers, pool, says):
    server = address()
    handler = handlers(f"{server.host}:{server.port},127.0.0.1:1", **pool)
    with pytest.raises(ImproperlyConfigured, match=says):
        _served_port(handler)


def test_a_host_list_that_cannot_be_read_is_refused_naming_the_alias(handlers):
    handler = handlers("db1:x,db2")
    with pytest.raises(ImproperlyConfigured, match=r"DATABASES\['default'\]\['HOST'\] names several servers"):
        _served_port(handler)


@override_settings(MYSQLPOOL_ARGUMENTS={"wsrep_sync_wait": 1, "pool_size": 1, "max_overflow": 0})
def test_wsrep_sync_wait_is_set_on_every_connection_and_survives_a_reset():
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@session.wsrep_sync_wait, CONNECTION_ID()")
        value, first = cursor.fetchone()
        cursor.execute("SET @left_behind = 1")  # dirty: the give-back resets the session
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@session.wsrep_sync_wait, CONNECTION_ID(), @left_behind")
        after_reset, second, left = cursor.fetchone()
    connection.close()
    assert value == 1
    assert left is None
    if not ON_PYMYSQL:  # PyMySQL closes a session that needs a reset: a new one comes
        assert second == first  # the same connection, reset
    assert after_reset == 1
