"""Server-side facts for tests: connection ids and counts seen by an admin connection."""

import contextlib
import json
import os
import threading
import time

import MySQLdb
import pytest
from django.db import connections

from tests.server import ServerAddress


# The driver the suite runs on: mysqlclient, or PyMySQL installed as MySQLdb
# (noxfile.py's PyMySQL sessions). Tests of what PyMySQL cannot do are
# skipped with one of the reasons below, never left to pass or fail.
ON_PYMYSQL = MySQLdb.__name__ == "pymysql"

# Connector/C gives mysqlclient COM_RESET_CONNECTION; PyMySQL has no such
# call, so a session that needs a reset is closed and a new one opened.
resets_in_place = pytest.mark.skipif(
    ON_PYMYSQL,
    reason="PyMySQL cannot reset a session in place (COM_RESET_CONNECTION): such a session is closed "
           "instead, and test_lifecycle_hygiene.py checks what the next user sees on both drivers",
)
# The server's status flags, read through Connector/C after every reply.
reads_server_flags = pytest.mark.skipif(
    ON_PYMYSQL,
    reason="PyMySQL keeps the server's status flags from OK packets only, not from a result set's end, "
           "and exposes no Connector/C: session changes only the server can report go unseen",
)


# PyMySQL's connect_timeout bounds the TCP connect only: a server that
# accepts and never sends its greeting holds the connect until read_timeout.
greeting_bounded_by_connect_timeout = pytest.mark.skipif(
    ON_PYMYSQL,
    reason="PyMySQL's connect_timeout does not bound the server's greeting (only read_timeout does): "
           "a node that accepts and never answers holds a PyMySQL connect; docs/clustering.rst says so",
)


def mysqlclient_only(what: str):
    """Skip on PyMySQL a test of something only mysqlclient has, saying what."""
    return pytest.mark.skipif(ON_PYMYSQL, reason=f"PyMySQL has no {what}")


def address() -> ServerAddress:
    return ServerAddress.from_environment()


@contextlib.contextmanager
def admin_connection():
    """A plain MySQLdb connection outside every pool, for looking at the server."""
    connection = address().connect()
    try:
        yield connection
    finally:
        connection.close()


def server_connections(admin, database=None, user=None) -> list[int]:
    """Ids of the server's client connections to this test's database (admin excluded)."""
    cursor = admin.cursor()
    cursor.execute(
        "SELECT ID FROM information_schema.PROCESSLIST "
        "WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Daemon' "
        "AND DB = %s AND (%s IS NULL OR USER = %s)",
        [database or database_name(), user, user],
    )
    return sorted(row[0] for row in cursor.fetchall())


def database_name() -> str:
    return os.environ["MYSQLPOOL_TEST_DATABASE"]


def connection_id(alias="default") -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return cursor.fetchone()[0]


def run_threads(target, count, timeout=60.0):
    """Start count threads on target, join each with a timeout, and prove they ended."""
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "threads still running"


def hold_at_once(connection_of, count, sql="SELECT 1", timeout=60.0) -> list:
    """count threads each run sql on connection_of() and hold it until all have, then close it.

    Returns the first column each read: count connections were open at once.
    """
    barrier = threading.Barrier(count, timeout=timeout)
    values = []

    def hold_one():
        connection = connection_of()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                values.append(cursor.fetchone()[0])
                barrier.wait()
        finally:
            connection.close()

    run_threads(hold_one, count, timeout)
    assert len(values) == count, values
    return values


def checkout_in_another_thread(timeout=10.0) -> list:
    """One checkout on 'default' in a thread of its own (joined within timeout): what it raised, if anything."""
    return _run_in_another_thread(connection_id, timeout)[1]


def in_another_thread(work, timeout=30.0):
    """work() in a thread of its own, its 'default' connection closed after (joined within timeout): what it returned."""
    result, raised = _run_in_another_thread(work, timeout)
    assert raised == []
    return result[0]


def _run_in_another_thread(work, timeout):
    result, raised = [], []

    def run():
        try:
            result.append(work())
        except Exception as error:  # reported to the caller
            raised.append(error)
        finally:
            connections["default"].close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the other thread did not end"
    return result, raised


def in_a_forked_child(report, timeout=30.0):
    """report() in a forked child, which leaves without any cleanup: what it returned (JSON), within timeout."""
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(writing, json.dumps(report()).encode())
        finally:
            os._exit(0)
    os.close(writing)
    deadline = time.monotonic() + timeout
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        assert time.monotonic() < deadline, "the forked child did not end"
        time.sleep(0.01)
    with os.fdopen(reading) as answer:
        return json.loads(answer.read())
