"""The engine is the stock backend plus a pool, and the pool stays inside the engine."""

import MySQLdb
import pytest
from django.db import close_old_connections, connections
from django.db.backends.mysql.base import DatabaseWrapper as StockWrapper

from django_mysqlpool.backends.mysqlpool.base import DatabaseWrapper
from django_mysqlpool.handle import PooledConnection
from tests.helpers import address, admin_connection, connection_id, server_connections


def _session_value(variable, alias="default"):
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT @@SESSION.{variable}")
        return cursor.fetchone()[0]


@pytest.fixture
def options():
    """Set OPTIONS on the pooled alias for one test, then put them back."""
    wrapper = connections["default"]

    def set_options(**values):
        wrapper.close()
        wrapper.settings_dict["OPTIONS"] = values

    yield set_options
    wrapper.close()
    wrapper.settings_dict["OPTIONS"] = {}


def test_engine_is_the_stock_backend_layered_not_copied():
    assert issubclass(DatabaseWrapper, StockWrapper)
    assert isinstance(connections["default"], DatabaseWrapper)
    assert DatabaseWrapper.Database is MySQLdb
    assert DatabaseWrapper.features_class is StockWrapper.features_class


def test_stock_alias_and_plain_mysqldb_are_untouched():
    pooled = connection_id("default")
    stock = connection_id("stock")
    assert type(connections["stock"].connection) is MySQLdb.connections.Connection
    assert isinstance(connections["default"].connection, PooledConnection)
    connections["stock"].close()
    connections["default"].close()
    with admin_connection() as admin:
        alive = server_connections(admin)
    assert stock not in alive  # stock close() really closed it
    assert pooled in alive  # pooled close() gave it back
    assert connection_id("stock") != stock

    plain = address().connect(database=connections["stock"].settings_dict["NAME"])
    assert type(plain) is MySQLdb.connections.Connection
    plain_id = plain.thread_id()
    plain.close()
    with admin_connection() as admin:
        assert plain_id not in server_connections(admin)


def test_init_command_charset_and_isolation_level_apply_as_on_stock(options):
    options(
        init_command="SET @@SESSION.sql_select_limit = 1234",
        charset="latin1",
        isolation_level="serializable",
    )
    assert _session_value("sql_select_limit") == 1234
    assert _session_value("character_set_client") == "latin1"
    assert _session_value("tx_isolation") == "SERIALIZABLE"


def test_default_isolation_level_is_read_committed_as_on_stock():
    assert _session_value("tx_isolation") == _session_value("tx_isolation", "stock") == "READ-COMMITTED"


def test_conn_max_age_none_keeps_the_connection_across_requests():
    wrapper = connections["default"]
    wrapper.settings_dict["CONN_MAX_AGE"] = None
    try:
        first = connection_id()
        close_old_connections()  # what request_started/finished do
        assert connection_id() == first
        assert not wrapper.connection.given_back
    finally:
        wrapper.settings_dict["CONN_MAX_AGE"] = 0
        wrapper.close()


def test_conn_max_age_zero_gives_the_connection_back_at_request_end():
    first = connection_id()
    pooled = connections["default"].connection
    close_old_connections()
    assert pooled.given_back
    assert connections["default"].pool.pool.checkedout() == 0
    assert connection_id() == first  # and the next request reuses it
