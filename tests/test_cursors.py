"""The watching cursors: execute()'s inlined fast path agrees with the full watch, on a real connection."""

import pytest

from django_mysqlpool import lifecycle, statements
from django_mysqlpool.conf import PoolOptions
from django_mysqlpool.errors import ConnectionGivenBack
from django_mysqlpool.state import state_of
from tests.helpers import address, database_name, mysqlclient_only

QUERIES = [
    "SELECT 1",
    "SELECT 1 /* a text seen for the first time */",
    b"SELECT 2",
    bytearray(b"SELECT 3"),  # unhashable: never cached
    "SET @watched = 1",
    "SELECT GET_LOCK('watched', 0)",
    "DO RELEASE_LOCK('watched')",
    "/*!50000 SELECT 4 */",
]


@pytest.fixture
def prepared():
    connection = address().connect(database=database_name())
    lifecycle.prepare(connection, PoolOptions(), {"database": database_name()})
    connection.query("DO 0")  # a plain reply: the flags of prepare()'s own SET are gone
    yield connection
    connection.close()


def _marks_dirty(cursor, run):
    state = state_of(cursor.connection)
    state.dirty = False
    run()
    return state.dirty


@pytest.mark.parametrize("query", QUERIES, ids=repr)
def test_execute_marks_a_session_dirty_exactly_when_the_full_watch_does(prepared, query):
    cursor = prepared.cursor()
    key = bytes(query) if isinstance(query, bytearray) else query
    statements.verdicts.pop(key, None)
    # executemany() with no rows runs the full watch and sends nothing.
    by_watch = _marks_dirty(cursor, lambda: cursor.executemany(query, []))
    assert by_watch == statements.classify(query)
    statements.verdicts.pop(key, None)
    for _ in range(2):  # the first misses the verdict cache, the second hits it
        by_execute = _marks_dirty(cursor, lambda: (cursor.execute(query), cursor.fetchall()))
        assert by_execute == by_watch


@pytest.mark.parametrize("query", ["SELECT 1", "SET @watched = 1"])
def test_a_cursor_of_an_earlier_lease_is_refused_by_both_paths(prepared, query):
    cursor = prepared.cursor()
    cursor.execute(query)  # a known, current lease: the fast path
    cursor.fetchall()
    state_of(prepared).lease += 1  # given back, as give_back() does
    with pytest.raises(ConnectionGivenBack, match="given back to the pool"):
        cursor.execute(query)
    with pytest.raises(ConnectionGivenBack, match="given back to the pool"):
        cursor.executemany(query, [])
    with pytest.raises(prepared.InterfaceError):  # still the driver's own error class
        cursor.execute(query)


@mysqlclient_only("Connection.default_cursor (its cursor class is per connection)")
def test_cursors_of_the_handle_and_of_the_driver_are_both_watched(prepared):
    from django.db import connections

    connections["default"].ensure_connection()
    handle = connections["default"].connection
    driver_class = type(prepared).default_cursor
    for cursor in (handle.cursor(), prepared.cursor()):
        assert isinstance(cursor, driver_class)
        assert _marks_dirty(cursor, lambda: cursor.execute("SET @watched = 2"))
