"""Differential session hygiene: the next user of a pooled connection sees a fresh session.

A catalog of "forms", each a small way of changing a session (SQL of every
kind, the driver's own methods, cursors of other classes, the bare driver
connection, statements disguised behind comments or odd casing). For each
form, on a pool of one connection:

1. a clean user runs ``SELECT 1`` and gives the connection back; the next
   user observes the session: that is the baseline;
2. the form runs on the same physical connection and gives it back; the
   next user observes the session the same way;
3. any difference between the two observations is a leak, and fails the
   test unless the form is in DOCUMENTED_LIMITS (so does a form that itself
   fails other than as it is meant to: it would prove nothing).

What is observed (``observe()``): a round trip, CURRENT_USER(),
CURRENT_ROLE(), DATABASE(), @@in_transaction, LAST_INSERT_ID(), the user
variables (named ones and information_schema.USER_VARIABLES), every
session variable but the volatile ones (SHOW SESSION VARIABLES' content, read
from information_schema with an explicit LIMIT, which a leaked
sql_select_limit cannot shorten), the probe objects a form
may have left (temporary table, prepared statement, HANDLER, named lock,
LOCK TABLES, a sequence's LASTVAL(), multi-statement mode), a non-ASCII
round trip, and, from an admin connection outside the pool, whether the
named lock, the first row and the table are free and which rows are
committed.

How the give-back cleaned the session is read from the server: a new
connection counted in ``Connections`` (or another CONNECTION_ID() from a
session whose replies are in step) means it was closed; MariaDB 10.11 has no ``Com_reset_connection`` nor
``Com_change_user``, but COM_RESET_CONNECTION (like COM_CHANGE_USER and
COM_PING) counts in ``Com_admin_commands``; a ROLLBACK counts in
``Com_rollback``. The counters are read just before the form's give-back and
just after the next user's first two statements: each pytest worker has a
private server, so only this test moves them (with MYSQL_HOST naming a
shared server, other workers' traffic can blur them). No ping is expected
in that window (the next checkout follows at once, well within
ping_after_idle); the window's length is recorded to tell.

``test_the_form_changes_its_own_session`` is the catalog's control: run on
the stock engine's alias, each form must change what its own session
observes (unless marked as leaving nothing), so that a form passing the
hygiene test proves something. Two more tests check the baseline itself:
it is the session of a newly opened pooled connection, and that of a new
connection of the stock engine.

With MYSQLPOOL_HYGIENE_REPORT set, a JSON table of every form (name,
cleaned by, leaked and what) is written there at the module's end (with a
``.gwN`` suffix under pytest-xdist); with ``-s`` it is printed too.

    python -m tests.server -- .venv/bin/python -m pytest -q -p no:randomly tests/test_lifecycle_hygiene.py
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import os
import time
from collections.abc import Callable
from typing import Any

import MySQLdb
import MySQLdb.cursors
import pytest
from django.db import connections, transaction
from django.test import override_settings

from django_mysqlpool.registry import dispose_pools
from tests.helpers import ON_PYMYSQL, admin_connection, database_name, resets_in_place

pytestmark = pytest.mark.timeout(60)

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 5}

# Forms whose leak is a known, documented limit: {form name: one-sentence reason}.
# A form listed here is still run, observed and reported, but does not fail.
DOCUMENTED_LIMITS: dict[str, str] = {
    # docs/internals.rst ("What "auto" cannot see") lists these.
    "last_insert_id_insert": (
        "LAST_INSERT_ID() of the previous user's last INSERT: resetting after every INSERT would "
        "cost a round trip per write request; reset_session='always' clears it"
    ),
    "sequence_nextval": (
        "LASTVAL() of the previous user's last NEXTVAL(), for the same reason as LAST_INSERT_ID()"
    ),
}

TABLE = "hyg_t"  # (id INT PRIMARY KEY, v INT): rows (1, 10), (2, 20), (3, 30)
AUTO_TABLE = "hyg_auto"  # AUTO_INCREMENT
UNLOCKED_TABLE = "hyg_probe"  # never locked by a form: readable unless LOCK TABLES holds others
TEMPORARY_TABLE = "hyg_tmp"
SEQUENCE = "hyg_seq"
PROCEDURE = "hyg_proc"
FUNCTION = "hyg_func"
# Names the server keeps across databases carry the xdist worker's name:
# with MYSQL_HOST set, workers share one server.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
ROLE = f"hyg_role_{WORKER}"
LOCK = f"hyg_lock_{WORKER}"
STATEMENT = "hyg_stmt"
HANDLER = "hyg_h"
XID = f"hyg_xa_{WORKER}"
OTHER_USER, OTHER_PASSWORD = "mysqlpool_other", "other-secret-pw"
MYSQL_OPTION_MULTI_STATEMENTS_OFF = 1  # enum enum_mysql_set_option in mysql.h (mysqlclient turns it on)
USER_VARIABLES = ("v", "a", "x", "leak", "hyg_proc", "hyg_func")
ECHO = ("José", "日本")
ROUND_TRIP_VALUE = 424242
ROUND_TRIP = f"round trip (SELECT {ROUND_TRIP_VALUE})"
ROWS = ((1, 10), (2, 20), (3, 30))
LOCK_WAIT = 5  # seconds the admin connection waits on a lock in setup and teardown

# Server-side counters read around each give-back (see the module's docstring).
COUNTERS = ("Com_rollback", "Com_admin_commands", "Com_change_db", "Com_set_option", "Connections")
# Counters that would name a reset or a change of user directly (MariaDB 10.11
# has neither); whether the server has them goes into the report.
WISHED_COUNTERS = ("Com_reset_connection", "Com_change_user")

# SHOW SESSION VARIABLES entries that change by themselves, or are observed apart:
# timestamp and pseudo_thread_id as facts of their own, last_insert_id and
# in_transaction too.
VOLATILE_VARIABLES = frozenset((
    "timestamp", "pseudo_thread_id", "rand_seed1", "rand_seed2", "last_insert_id", "identity",
    "in_transaction", "warning_count", "error_count",
    # The pool's own: every pooled session asks the server to flag the
    # replies that change it. The catalog compares pooled sessions with a
    # pooled baseline; only the check against a stock connection sees it.
    "session_track_state_change",
))


def other_database() -> str:
    return os.environ["MYSQLPOOL_TEST_DATABASE"] + "_b"


# ---------------------------------------------------------------------------
# The catalog


class FormContext:
    """What a form gets: the Django wrapper of its alias, and a place to keep objects alive."""

    def __init__(self, alias: str):
        self.alias = alias
        self.wrapper = connections[alias]
        # Objects a careless user would still hold when giving the connection
        # back (an SSCursor with unread rows): kept until the next user has looked.
        self.keep: list[Any] = []

    def execute(self, *statements: str) -> None:
        with self.wrapper.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                if cursor.description is not None:
                    cursor.fetchall()

    @property
    def handle(self) -> Any:
        """wrapper.connection, connected: the pool's handle (the driver's connection on the stock alias)."""
        self.wrapper.ensure_connection()
        return self.wrapper.connection


@dataclasses.dataclass(frozen=True)
class Form:
    name: str
    group: str
    run: Callable[[FormContext], None]
    description: str
    expect_error: int | None = None  # the driver error number the form is meant to raise
    potent: bool = True  # False: meant to leave nothing behind, even in its own session

    def __repr__(self) -> str:
        return self.name


CATALOG: list[Form] = []


def sql_form(name: str, group: str, *statements: str, **options: Any) -> None:
    """A form that runs SQL statements through a Django cursor."""
    CATALOG.append(Form(
        name, group, lambda context: context.execute(*statements), " ; ".join(statements), **options,
    ))


def code_form(name: str, group: str, description: str, **options: Any) -> Callable:
    """A form written as a function of a FormContext."""
    def register(function: Callable[[FormContext], None]) -> Callable[[FormContext], None]:
        CATALOG.append(Form(name, group, function, description, **options))
        return function
    return register


# User variables, set every way.
sql_form("uservar_set", "user variables", "SET @v = 1")
sql_form("uservar_select_into", "user variables", "SELECT 1 INTO @v")
sql_form("uservar_select_assign", "user variables", "SELECT @v := 1")
sql_form("uservar_odd_case", "user variables", "sEt @A = 1")
sql_form("uservar_block_comment", "user variables", "/* c */ SET @v = 1")
sql_form("uservar_line_comment", "user variables", "-- c\nSET @v = 1")
sql_form("uservar_hash_comment", "user variables", "# c\nSET @v = 1")
sql_form("uservar_executable_comment", "user variables", "/*!50000 SET @a=1 */")
sql_form("uservar_execute_immediate", "user variables", "EXECUTE IMMEDIATE 'SET @v = 1'")
sql_form("uservar_compound_statement", "user variables", "BEGIN NOT ATOMIC SET @v = 1; END")


@code_form("uservar_executemany", "user variables", "cursor.executemany('SET @x = %s', [(1,), (2,)])")
def _uservar_executemany(context):
    with context.wrapper.cursor() as cursor:
        cursor.executemany("SET @x = %s", [(1,), (2,)])


@code_form("procedure_callproc", "procedures",
           f"cursor.callproc('{PROCEDURE}'): sets @hyg_proc and SESSION wait_timeout")
def _procedure_callproc(context):
    with context.wrapper.cursor() as cursor:
        cursor.callproc(PROCEDURE)


sql_form("procedure_call_statement", "procedures", f"CALL {PROCEDURE}()")
sql_form("stored_function_behind_select", "procedures", f"SELECT {FUNCTION}()")

# Session system variables.
sql_form("sysvar_set_session", "session variables", "SET SESSION wait_timeout = 77")
sql_form("sysvar_sql_mode", "session variables", "SET SESSION sql_mode = 'ANSI_QUOTES'")
sql_form("sysvar_time_zone", "session variables", "SET time_zone = '+05:00'")
sql_form("sysvar_at_at_session", "session variables", "SET @@session.sql_select_limit = 2")
sql_form("sysvar_set_local", "session variables", "SET LOCAL wait_timeout = 77")
sql_form("sysvar_bare_set", "session variables", "SET sql_select_limit = 2")
sql_form("sysvar_timestamp", "session variables", "SET timestamp = 1000000000")
sql_form("sysvar_insert_id", "session variables", "SET insert_id = 1000")
sql_form("sysvar_session_isolation", "session variables",
         "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
sql_form("sysvar_set_statement_for", "session variables",
         "SET STATEMENT max_statement_time=1 FOR SELECT 1", potent=False)
sql_form("sysvar_block_comment", "session variables", "/* c */ SET SESSION wait_timeout = 77")
sql_form("sysvar_line_comment", "session variables", "-- c\nSET SESSION wait_timeout = 77")
sql_form("sysvar_odd_case", "session variables", "sEt sEsSiOn wait_timeout = 77")
sql_form("sysvar_after_select_in_multi_statement", "session variables",
         "SELECT 1; SET SESSION wait_timeout = 77")
sql_form("sysvar_mariadb_executable_comment", "session variables",
         "/*M! SET SESSION wait_timeout = ( */ SELECT 77 /*M! ) */")
sql_form("sysvar_mariadb_versioned_comment", "session variables",
         "/*M!100000 SET SESSION sql_select_limit = ( */ SELECT 2 /*M! ) */")
sql_form("sysvar_set_role", "session variables", f"SET ROLE {ROLE}")


@code_form("driver_set_sql_mode", "session variables", "wrapper.connection.set_sql_mode('ANSI_QUOTES')")
def _driver_set_sql_mode(context):
    context.handle.set_sql_mode("ANSI_QUOTES")


@code_form("driver_multi_statements_off", "session variables",
           "wrapper.connection.set_server_option(MYSQL_OPTION_MULTI_STATEMENTS_OFF)")
def _driver_multi_statements_off(context):
    context.handle.set_server_option(MYSQL_OPTION_MULTI_STATEMENTS_OFF)


# Character set and collation.
sql_form("charset_set_names_latin1", "character set", "SET NAMES latin1")
sql_form("charset_set_names_collate", "character set", "SET NAMES utf8mb4 COLLATE utf8mb4_bin")
sql_form("charset_set_character_set", "character set", "SET CHARACTER SET latin1")
sql_form("charset_set_names_line_comment", "character set", "-- c\nSET NAMES latin1")
sql_form("charset_results_null", "character set", "SET character_set_results = NULL")


@code_form("charset_driver_set_character_set", "character set",
           "wrapper.connection.set_character_set('latin1')")
def _charset_driver_set_character_set(context):
    context.handle.set_character_set("latin1")


# Default database.
@code_form("database_use", "database", "USE <test database>_b")
def _database_use(context):
    context.execute(f"USE `{other_database()}`")


@code_form("database_use_block_comment", "database", "/* c */ USE <test database>_b")
def _database_use_block_comment(context):
    context.execute(f"/* c */ USE `{other_database()}`")


@code_form("database_driver_select_db", "database", "wrapper.connection.select_db(<test database>_b)")
def _database_driver_select_db(context):
    context.handle.select_db(other_database())


# Temporary tables.
sql_form("temporary_table", "temporary tables", f"CREATE TEMPORARY TABLE {TEMPORARY_TABLE} (id INT)")
sql_form("temporary_table_shadowing", "temporary tables",
         f"CREATE TEMPORARY TABLE {TABLE} (id INT PRIMARY KEY, v INT)")
sql_form("temporary_table_create_select", "temporary tables",
         f"CREATE TEMPORARY TABLE {TEMPORARY_TABLE} AS SELECT 1 AS id")

# Prepared statements.
sql_form("prepare", "prepared statements", f"PREPARE {STATEMENT} FROM 'SELECT 1'")
sql_form("prepare_block_comment", "prepared statements", f"/* c */ PREPARE {STATEMENT} FROM 'SELECT 1'")

# Named locks.
sql_form("named_lock_select", "named locks", f"SELECT GET_LOCK('{LOCK}', 0)")
sql_form("named_lock_in_where", "named locks", f"SELECT id FROM {TABLE} WHERE GET_LOCK('{LOCK}', 0)")
sql_form("named_lock_do", "named locks", f"DO GET_LOCK('{LOCK}', 0)")
sql_form("named_lock_odd_case", "named locks", f"sElEcT gEt_LoCk('{LOCK}', 0)")
sql_form("named_lock_line_comment", "named locks", f"-- c\nSELECT GET_LOCK('{LOCK}', 0)")

# Table locks.
sql_form("lock_tables_write", "table locks", f"LOCK TABLES {TABLE} WRITE")
sql_form("lock_tables_read", "table locks", f"LOCK TABLES {TABLE} READ")
sql_form("lock_tables_line_comment", "table locks", f"-- c\nLOCK TABLES {TABLE} WRITE")
sql_form("flush_tables_with_read_lock", "table locks", "FLUSH TABLES WITH READ LOCK")

# HANDLER.
sql_form("handler_open", "handlers", f"HANDLER {TABLE} OPEN AS {HANDLER}")
sql_form("handler_open_block_comment", "handlers", f"/* c */ HANDLER {TABLE} OPEN AS {HANDLER}")

# LAST_INSERT_ID() and sequences.
sql_form("last_insert_id_select", "last insert id", "SELECT LAST_INSERT_ID(5)")
sql_form("last_insert_id_insert", "last insert id", f"INSERT INTO {AUTO_TABLE} (note) VALUES ('x')")
sql_form("sequence_nextval", "last insert id", f"SELECT NEXTVAL({SEQUENCE})")

# Transactions, begun every way (each leaves an uncommitted change, most a row lock too).
UNCOMMITTED = f"INSERT INTO {TABLE} VALUES (100, 1)"
ROW_LOCK = f"SELECT v FROM {TABLE} WHERE id = 1 FOR UPDATE"
sql_form("transaction_start", "transactions", "START TRANSACTION", UNCOMMITTED, ROW_LOCK)
sql_form("transaction_begin", "transactions", "BEGIN", UNCOMMITTED, ROW_LOCK)
sql_form("transaction_start_block_comment", "transactions", "/* c */ START TRANSACTION", UNCOMMITTED, ROW_LOCK)
sql_form("transaction_consistent_snapshot", "transactions",
         "START TRANSACTION WITH CONSISTENT SNAPSHOT", UNCOMMITTED)
sql_form("transaction_autocommit_0_update", "transactions",
         "SET autocommit = 0", f"UPDATE {TABLE} SET v = 99 WHERE id = 1")
sql_form("transaction_savepoint", "transactions", "START TRANSACTION", "SAVEPOINT s1", UNCOMMITTED)
sql_form("transaction_commit_and_chain", "transactions",
         "START TRANSACTION", "COMMIT AND CHAIN", UNCOMMITTED)
sql_form("transaction_xa_start", "transactions", f"XA START '{XID}'", UNCOMMITTED)


@code_form("transaction_django_autocommit_off_failing_update", "transactions",
           "transaction.set_autocommit(False); INSERT (uncommitted); "
           f"UPDATE {TABLE} SET v = v / 0 WHERE id = 1 (error 1365, row lock taken)",
           expect_error=1365)
def _transaction_django_autocommit_off_failing_update(context):
    transaction.set_autocommit(False, using=context.alias)
    context.execute(UNCOMMITTED, f"UPDATE {TABLE} SET v = v / 0 WHERE id = 1")


@code_form("transaction_driver_autocommit_off", "transactions",
           "wrapper.connection.autocommit(False); INSERT (uncommitted)")
def _transaction_driver_autocommit_off(context):
    context.handle.autocommit(False)
    context.execute(UNCOMMITTED, ROW_LOCK)


# The connection itself: another login, a closed session, a cursor left half read.
@code_form("change_user", "login", f"wrapper.connection.change_user('{OTHER_USER}', ..., <test database>)")
def _change_user(context):
    context.handle.change_user(OTHER_USER, OTHER_PASSWORD, database_name())


sql_form("commit_release", "login", "START TRANSACTION", "COMMIT RELEASE")


@code_form("sscursor_unread_rows", "cursors",
           "wrapper.connection.cursor(SSCursor): SELECT 1000 rows, fetchone(), cursor kept, close")
def _sscursor_unread_rows(context):
    cursor = context.handle.cursor(MySQLdb.cursors.SSCursor)
    cursor.execute("SELECT seq FROM seq_1_to_1000")
    cursor.fetchone()
    context.keep.append(cursor)


@code_form("driver_query_unread_result", "cursors",
           "wrapper.connection.query('SELECT <1000 rows>'), result never read")
def _driver_query_unread_result(context):
    context.handle.query("SELECT seq FROM seq_1_to_1000")


@code_form("driver_send_query_unread", "cursors",
           "wrapper.connection.send_query('SELECT <1000 rows>'), reply never read")
def _driver_send_query_unread(context):
    context.handle.send_query("SELECT seq FROM seq_1_to_1000")


# The bare driver connection, reached through cursors or the handle.
@code_form("bare_via_django_cursor_query", "bare driver",
           "cursor.cursor.connection.query(\"SET @leak='leak'\") under Django's CursorWrapper")
def _bare_via_django_cursor_query(context):
    with context.wrapper.cursor() as cursor:
        cursor.cursor.connection.query("SET @leak='leak'")


@code_form("bare_via_django_cursor_select_db", "bare driver",
           "cursor.cursor.connection.select_db(<test database>_b) under Django's CursorWrapper")
def _bare_via_django_cursor_select_db(context):
    with context.wrapper.cursor() as cursor:
        cursor.cursor.connection.select_db(other_database())


@code_form("bare_via_handle_cursor_query", "bare driver",
           "wrapper.connection.cursor().connection.query(\"SET @leak='leak'\")")
def _bare_via_handle_cursor_query(context):
    context.handle.cursor().connection.query("SET @leak='leak'")


@code_form("bare_via_handle_cursor_select_db", "bare driver",
           "wrapper.connection.cursor().connection.select_db(<test database>_b)")
def _bare_via_handle_cursor_select_db(context):
    context.handle.cursor().connection.select_db(other_database())


@code_form("bare_handle_query", "bare driver", "wrapper.connection.query(\"SET @leak='leak'\")")
def _bare_handle_query(context):
    context.handle.query("SET @leak='leak'")


@code_form("bare_driver_connection_query", "bare driver",
           "wrapper.connection.driver_connection.query(\"SET @leak='leak'\")")
def _bare_driver_connection_query(context):
    handle = context.handle
    getattr(handle, "driver_connection", handle).query("SET @leak='leak'")


CLEAN_FORM = Form("clean", "baseline", lambda context: context.execute("SELECT 1"), "SELECT 1", potent=False)


# ---------------------------------------------------------------------------
# Observing a session


def plain(value: Any) -> Any:
    """value as JSON has it: tuples as lists, bytes and decimals as text."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta)):
        return str(value)
    return value


def error_code(error: BaseException) -> int | None:
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def describe(error: BaseException) -> str:
    code = error_code(error)
    if code is not None and len(error.args) > 1:
        return f"error {code}: {error.args[1]}"
    return f"{type(error).__name__}: {error}"


def counters(admin) -> dict[str, int]:
    cursor = admin.cursor()
    cursor.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ({})".format(
        ", ".join(["%s"] * len(COUNTERS))), COUNTERS)
    found = {name: int(value) for name, value in cursor.fetchall()}
    return {name: found.get(name, 0) for name in COUNTERS}


@dataclasses.dataclass
class Observation:
    connection_id: Any
    facts: dict[str, Any]
    counters_after_first_use: dict[str, int] | None = None
    first_use_at: float | None = None


class Observer:
    """Runs probes through one alias's cursors, each on its own, so one error spoils only itself."""

    def __init__(self, alias: str):
        self.wrapper = connections[alias]
        self.facts: dict[str, Any] = {}

    def rows(self, query: str, params: Any = None) -> Any:
        with self.wrapper.cursor() as cursor:
            cursor.execute(query, params)
            return plain(cursor.fetchall()) if cursor.description is not None else None

    def probe(self, name: str, query: str, params: Any = None, *, absent: tuple[int, ...] = (),
              shape: Callable[[Any], Any] = lambda rows: rows, absent_means: str = "absent") -> Any:
        try:
            value = shape(self.rows(query, params))
        except Exception as error:
            value = absent_means if error_code(error) in absent else describe(error)
        self.facts[name] = value
        return value


def observe(alias: str, admin, after_first_use: Callable[[], Any] | None = None) -> Observation:
    """What the user of alias sees of its session, and what another session sees of it."""
    observer = Observer(alias)
    first = lambda rows: rows[0][0] if rows else rows  # noqa: E731
    row = lambda rows: rows[0] if rows else rows  # noqa: E731

    # First, before anything else is sent: does a round trip work at all, and
    # answer this statement (a distinctive value: a reply left unread from the
    # last user would start with 1 too)?
    observer.probe(ROUND_TRIP, f"SELECT {ROUND_TRIP_VALUE}", shape=first)
    try:
        connection_id = first(observer.rows("SELECT CONNECTION_ID()"))
    except Exception as error:
        connection_id = describe(error)
    observation = Observation(connection_id, observer.facts)
    if after_first_use is not None:
        observation.first_use_at = time.monotonic()
        observation.counters_after_first_use = after_first_use()

    observer.probe("CURRENT_USER(), CURRENT_ROLE(), DATABASE()",
                   "SELECT CURRENT_USER(), CURRENT_ROLE(), DATABASE()", shape=row)
    observer.probe("@@in_transaction", "SELECT @@in_transaction", shape=first)
    observer.probe("LAST_INSERT_ID()", "SELECT LAST_INSERT_ID()", shape=first)
    observer.probe("@@pseudo_thread_id = CONNECTION_ID()",
                   "SELECT @@pseudo_thread_id = CONNECTION_ID()", shape=first)
    observer.probe("@@timestamp follows the clock",
                   "SELECT ABS(@@timestamp - UNIX_TIMESTAMP(SYSDATE(6))) < 300", shape=first)
    observer.probe("named user variables",
                   "SELECT " + ", ".join(f"@{name}" for name in USER_VARIABLES),
                   shape=lambda rows: dict(zip(("@" + name for name in USER_VARIABLES), rows[0])))
    observer.probe("information_schema.USER_VARIABLES",
                   "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.USER_VARIABLES "
                   "ORDER BY VARIABLE_NAME LIMIT 100000", shape=lambda rows: {name: value for name, value in rows})
    # SHOW SESSION VARIABLES' content, read with an explicit LIMIT: SHOW obeys a
    # leaked sql_select_limit and would hide the very variable that caused it.
    observer.probe("session variables",
                   "SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM information_schema.SESSION_VARIABLES "
                   "ORDER BY 1 LIMIT 100000",
                   shape=lambda rows: {name: value for name, value in rows if name not in VOLATILE_VARIABLES})
    observer.probe(f"temporary table {TEMPORARY_TABLE}", f"SELECT COUNT(*) FROM {TEMPORARY_TABLE}",
                   absent=(1146,), shape=lambda rows: f"present, {rows[0][0]} rows")
    observer.probe(f"rows of {TABLE} seen by this session", f"SELECT id, v FROM {TABLE} ORDER BY id")
    observer.probe(f"{UNLOCKED_TABLE} readable (no LOCK TABLES held)",
                   f"SELECT COUNT(*) FROM {UNLOCKED_TABLE}", shape=first)
    observer.probe(f"prepared statement {STATEMENT}", f"EXECUTE {STATEMENT}",
                   absent=(1243,), shape=lambda rows: f"present, returns {rows}")
    observer.probe(f"handler {HANDLER}", f"HANDLER {HANDLER} READ FIRST",
                   absent=(1109,), shape=lambda rows: f"open, reads {rows}")
    observer.probe(f"named lock {LOCK} held by this session",
                   f"SELECT IS_USED_LOCK('{LOCK}') = CONNECTION_ID()", shape=first)
    observer.probe(f"LASTVAL({SEQUENCE})", f"SELECT LASTVAL({SEQUENCE})", shape=first)
    observer.probe("multi-statement text", "SELECT 1; SELECT 2",
                   absent=(1064,), absent_means="rejected", shape=lambda rows: f"accepted, first result {rows}")
    observer.probe("non-ASCII round trip", "SELECT %s, %s, HEX(%s), HEX(%s)", ECHO + ECHO, shape=row)

    # From another session, while this one still holds the connection.
    facts = observer.facts
    cursor = admin.cursor()

    def admin_probe(name, *statements, shape=lambda rows: rows):
        try:
            for statement in statements:
                cursor.execute(statement)
            facts[name] = shape(plain(cursor.fetchall()))
        except Exception as error:
            facts[name] = describe(error)

    admin_probe(f"IS_FREE_LOCK('{LOCK}') (admin)", f"SELECT IS_FREE_LOCK('{LOCK}')", shape=lambda r: r[0][0])
    admin_probe(f"row {TABLE}.id=1 lockable (admin)",
                f"SELECT v FROM {TABLE} WHERE id = 1 FOR UPDATE NOWAIT", shape=lambda r: "yes")
    try:
        cursor.execute("SET SESSION lock_wait_timeout = 0")
        admin_probe(f"table {TABLE} write-lockable (admin)", f"LOCK TABLES {TABLE} WRITE", "UNLOCK TABLES",
                    shape=lambda r: "yes")
        admin_probe(f"committed rows of {TABLE} (admin)", f"SELECT id, v FROM {TABLE} ORDER BY id")
    finally:
        cursor.execute("UNLOCK TABLES")
        cursor.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT}")
    return observation


MAX_LINES_PER_FACT = 10


def short(value: Any, limit: int = 200) -> str:
    if isinstance(value, dict) and len(repr(value)) > limit:
        return f"<{len(value)} entries>"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def differences(baseline: dict[str, Any], observed: dict[str, Any]) -> list[str]:
    """What the next user saw that the baseline did not, one line each.

    Probes that all failed with one and the same error (a session out of step)
    are told in one line.
    """
    lines = []
    failed_alike: dict[str, list[str]] = {}
    for name in sorted(baseline.keys() | observed.keys()):
        seen, expected = observed.get(name, "(not observed)"), baseline.get(name, "(not observed)")
        if isinstance(seen, dict) and isinstance(expected, dict):
            keys = [key for key in sorted(seen.keys() | expected.keys())
                    if seen.get(key, "(unset)") != expected.get(key, "(unset)")]
            for key in keys[:MAX_LINES_PER_FACT]:
                lines.append(f"{name} {key}: next user saw {short(seen.get(key, '(unset)'))}, "
                             f"baseline {short(expected.get(key, '(unset)'))}")
            if len(keys) > MAX_LINES_PER_FACT:
                lines.append(f"{name}: ... and {len(keys) - MAX_LINES_PER_FACT} more differences")
        elif seen != expected:
            lines.append(f"{name}: next user saw {short(seen)}, baseline {short(expected)}")
            if isinstance(seen, str):
                failed_alike.setdefault(seen, []).append(name)
    for error, names in failed_alike.items():
        if len(names) >= 3:
            lines = [f"{len(names)} probes ({', '.join(names)}): next user saw {short(error)} each, "
                     f"where the baseline had other answers"] + [
                line for line in lines if not any(line.startswith(f"{name}: ") for name in names)]
    return lines


# ---------------------------------------------------------------------------
# Fixtures: the server objects the forms use, and a clean slate around each test


def _admin_execute(admin, *statements):
    cursor = admin.cursor()
    for statement in statements:
        cursor.execute(statement)


@pytest.fixture(scope="module")
def hygiene_schema():
    with admin_connection() as admin:
        admin.select_db(database_name())
        cursor = admin.cursor()
        cursor.execute("SELECT VERSION()")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Com\\_%'")
        com_counters = {name for name, _ in cursor.fetchall()}
        _admin_execute(
            admin,
            f"SET SESSION lock_wait_timeout = {LOCK_WAIT}",
            f"DROP TABLE IF EXISTS {TABLE}, {AUTO_TABLE}, {UNLOCKED_TABLE}",
            f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
            f"CREATE TABLE {AUTO_TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20)) ENGINE=InnoDB",
            f"CREATE TABLE {UNLOCKED_TABLE} (id INT) ENGINE=InnoDB",
            f"DROP SEQUENCE IF EXISTS {SEQUENCE}",
            f"CREATE SEQUENCE {SEQUENCE}",
            f"DROP PROCEDURE IF EXISTS {PROCEDURE}",
            f"CREATE PROCEDURE {PROCEDURE}() BEGIN SET @hyg_proc = 1; SET SESSION wait_timeout = 77; END",
            f"DROP FUNCTION IF EXISTS {FUNCTION}",
            f"CREATE FUNCTION {FUNCTION}() RETURNS INT DETERMINISTIC BEGIN SET @hyg_func = 1; RETURN 1; END",
            f"DROP ROLE IF EXISTS {ROLE}",
            f"CREATE ROLE {ROLE}",
            f"GRANT {ROLE} TO CURRENT_USER()",
        )
    server = {
        "version": version,
        "counters": {name: name in com_counters for name in WISHED_COUNTERS + COUNTERS if name.startswith("Com_")},
        "reset observed through": "Com_admin_commands (COM_RESET_CONNECTION, COM_CHANGE_USER and COM_PING)",
    }
    try:
        yield server
    finally:
        connections["default"].close()
        dispose_pools()
        with admin_connection() as admin:
            admin.select_db(database_name())
            _admin_execute(
                admin,
                f"SET SESSION lock_wait_timeout = {LOCK_WAIT}",
                f"DROP TABLE IF EXISTS {TABLE}, {AUTO_TABLE}, {UNLOCKED_TABLE}",
                f"DROP SEQUENCE IF EXISTS {SEQUENCE}",
                f"DROP PROCEDURE IF EXISTS {PROCEDURE}",
                f"DROP FUNCTION IF EXISTS {FUNCTION}",
                f"DROP ROLE IF EXISTS {ROLE}",
            )


@pytest.fixture
def admin(hygiene_schema):
    """An admin connection outside every pool; the rows reset before, every holder gone after."""
    with admin_connection() as admin:
        admin.select_db(database_name())
        _admin_execute(
            admin,
            f"SET SESSION lock_wait_timeout = {LOCK_WAIT}, innodb_lock_wait_timeout = {LOCK_WAIT}",
            f"DELETE FROM {TABLE}",
            f"INSERT INTO {TABLE} VALUES " + ", ".join(f"({id}, {v})" for id, v in ROWS),
        )
        try:
            yield admin
        finally:
            for alias in ("default", "stock"):
                try:
                    connections[alias].close()
                except Exception:
                    pass
            dispose_pools()
            _release_everything(admin)


def _release_everything(admin):
    """Kill any session a form left holding something (the pools were disposed already)."""
    cursor = admin.cursor()
    cursor.execute(f"SELECT IS_USED_LOCK('{LOCK}')")
    holders = {row[0] for row in cursor.fetchall() if row[0] is not None}
    cursor.execute(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Daemon' "
        "AND DB IN (%s, %s)", [database_name(), other_database()])
    holders.update(row[0] for row in cursor.fetchall())
    for victim in holders:
        try:
            cursor.execute(f"KILL {int(victim)}")
        except MySQLdb.OperationalError:
            pass  # ended meanwhile


REPORT: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def hygiene_report():
    """Writes the table of every form (MYSQLPOOL_HYGIENE_REPORT) and prints it (seen with -s)."""
    server: dict[str, Any] = {}
    yield server
    if not REPORT:
        return
    rows = sorted(REPORT, key=lambda row: CATALOG_ORDER.get(row["form"], len(CATALOG_ORDER)))
    width = max(len(row["form"]) for row in rows)
    print(f"\nSession hygiene on {server.get('version', '?')}: {len(rows)} forms, "
          f"{sum(row['leaked'] for row in rows)} leaked; counters present: {server.get('counters')}")
    print(f"{'form':<{width}}  {'cleaned by':<16} leaked")
    for row in rows:
        what = "; ".join(row["what"]) if row["leaked"] else ""
        if row["documented_limit"]:
            what += f" [documented: {row['documented_limit']}]"
        print(f"{row['form']:<{width}}  {row['cleaned_by']:<16} {'yes' if row['leaked'] else 'no'}  {what}")
    path = os.environ.get("MYSQLPOOL_HYGIENE_REPORT")
    if path:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker:
            stem, suffix = os.path.splitext(path)
            path = f"{stem}.{worker}{suffix}"
        with open(path, "w", encoding="utf-8") as output:
            json.dump({"server": server, "forms": rows}, output, indent=2, ensure_ascii=False)
            output.write("\n")


CATALOG_ORDER = {form.name: index for index, form in enumerate(CATALOG)}

# Forms PyMySQL cannot run, or whose change only Connector/C can see, and why.
PYMYSQL_CANNOT = {
    "change_user": "PyMySQL has no change_user()",
    "driver_set_sql_mode": "PyMySQL has no set_sql_mode()",
    "driver_multi_statements_off": "PyMySQL has no set_server_option()",
    "driver_send_query_unread": "PyMySQL has no send_query()",
    "driver_query_unread_result": "PyMySQL's query() reads the whole reply, so nothing is left unread",
    "sysvar_after_select_in_multi_statement":
        "PyMySQL refuses multi-statement text unless asked (CLIENT.MULTI_STATEMENTS), and Django does not ask",
    "stored_function_behind_select":
        "PyMySQL keeps the server's status flags from OK packets only: a change a stored function makes "
        "behind a SELECT goes unseen (reset_session='always' closes the gap)",
}


def _on_each_driver(forms: list[Form]) -> list:
    assert set(PYMYSQL_CANNOT) <= {form.name for form in forms}, "PYMYSQL_CANNOT names an unknown form"
    return [pytest.param(form, id=form.name, marks=[pytest.mark.skipif(ON_PYMYSQL, reason=PYMYSQL_CANNOT[form.name])]
                         if form.name in PYMYSQL_CANNOT else [])
            for form in forms]


# ---------------------------------------------------------------------------
# The tests


def _run_form(form: Form, alias: str) -> tuple[FormContext, str | None]:
    context = FormContext(alias)
    try:
        form.run(context)
    except Exception as error:
        return context, describe(error)
    return context, None


def _form_error_is_unexpected(form: Form, error: str | None) -> bool:
    if error is None:
        return False
    return form.expect_error is None or not error.startswith(f"error {form.expect_error}:")


def _cycle(form: Form, admin) -> dict[str, Any]:
    """form on the pooled connection, given back; the next user's observation and how it was cleaned."""
    wrapper = connections["default"]
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        form_connection_id = cursor.fetchone()[0]
    context, form_error = _run_form(form, "default")
    try:
        before = counters(admin)
        given_back_at = time.monotonic()
        close_error = None
        try:
            wrapper.close()
        except Exception as error:
            close_error = describe(error)
        observation = observe("default", admin, after_first_use=lambda: counters(admin))
    finally:
        context.keep.clear()
        try:
            wrapper.close()
        except Exception:
            pass
    after = observation.counters_after_first_use
    delta = {name: after[name] - before[name] for name in COUNTERS}
    # A new server connection in the window, or another CONNECTION_ID() from a
    # session whose replies are in step (one out of step answers it wrongly).
    next_id = observation.connection_id
    reopened = delta["Connections"] > 0 or (
        isinstance(next_id, int) and next_id != form_connection_id
        and observation.facts.get(ROUND_TRIP) == ROUND_TRIP_VALUE)
    cleaned = []
    if delta["Com_rollback"]:
        cleaned.append("rollback")
    if delta["Com_admin_commands"]:
        cleaned.append("reset")
    if reopened:
        cleaned.append("close")
    return {
        "form_connection_id": form_connection_id,
        "next_connection_id": observation.connection_id,
        "facts": observation.facts,
        "form_error": form_error,
        "close_error": close_error,
        "cleaned_by": "+".join(cleaned) or "nothing",
        "counter_deltas": delta,
        "window_s": round(observation.first_use_at - given_back_at, 4),
    }


@pytest.mark.parametrize("form", _on_each_driver(CATALOG))
def test_the_next_user_sees_a_fresh_session(form, admin, hygiene_schema, hygiene_report):
    hygiene_report.update(hygiene_schema)
    with override_settings(MYSQLPOOL_ARGUMENTS=SINGLE):
        baseline = _cycle(CLEAN_FORM, admin)
        result = _cycle(form, admin)
    leaks = differences(baseline["facts"], result["facts"])
    unexpected_error = _form_error_is_unexpected(form, result["form_error"])
    documented = DOCUMENTED_LIMITS.get(form.name)
    REPORT.append({
        "form": form.name,
        "group": form.group,
        "description": form.description,
        "cleaned_by": result["cleaned_by"],
        "leaked": bool(leaks),
        "what": leaks,
        "documented_limit": documented,
        "form_error": result["form_error"],
        "close_error": result["close_error"],
        "connection_reopened": "close" in result["cleaned_by"],
        "connection_ids": [result["form_connection_id"], result["next_connection_id"]],
        "counter_deltas": result["counter_deltas"],
        "baseline_cleaned_by": baseline["cleaned_by"],
        "window_s": result["window_s"],
    })
    assert baseline["facts"][ROUND_TRIP] == ROUND_TRIP_VALUE, f"the clean baseline is broken: {baseline['facts']}"
    assert baseline["facts"]["non-ASCII round trip"] == list(ECHO) + [
        text.encode("utf-8").hex().upper() for text in ECHO], baseline["facts"]["non-ASCII round trip"]
    if documented:
        return
    problems = []
    if unexpected_error:
        problems.append(f"the form itself failed, so it proves nothing: {result['form_error']}")
    if leaks:
        problems.append(
            f"the next user of the connection observed {len(leaks)} difference(s) from a fresh session "
            f"(cleaned by: {result['cleaned_by']}; connection id {result['form_connection_id']} then "
            f"{result['next_connection_id']!r}; server counters {result['counter_deltas']}):\n  "
            + "\n  ".join(leaks))
    if problems:
        pytest.fail(f"form {form.name!r} ({form.description}):\n" + "\n".join(problems), pytrace=False)


@pytest.mark.parametrize("form", _on_each_driver(CATALOG))
def test_the_form_changes_its_own_session(form, admin):
    """The control: on the stock engine, each form changes what its own session observes."""
    baseline = observe("stock", admin)
    connections["stock"].close()
    context, form_error = _run_form(form, "stock")
    try:
        changed = differences(baseline.facts, observe("stock", admin).facts)
    finally:
        context.keep.clear()
        connections["stock"].close()
    assert not _form_error_is_unexpected(form, form_error), f"the form itself failed: {form_error}"
    if form.potent:
        assert changed, f"{form.name} ({form.description}) changed nothing its own session can observe"
    else:
        assert not changed, f"{form.name} is meant to leave nothing, yet its session shows: {changed}"


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
@resets_in_place
def test_the_baseline_is_a_new_pooled_connections_session(admin):
    """The baseline (a clean SELECT 1, given back) is the session a newly opened pooled connection has."""
    dispose_pools()
    fresh = observe("default", admin)  # the first checkout of a new pool opens the connection
    connections["default"].close()
    pooled = _cycle(CLEAN_FORM, admin)
    assert pooled["cleaned_by"] == "nothing", pooled
    assert pooled["next_connection_id"] == fresh.connection_id  # the same physical connection
    changed = differences(fresh.facts, pooled["facts"])
    assert not changed, ("after a clean give-back (next user) the session differs from the newly opened "
                         "one (baseline):\n  " + "\n  ".join(changed))


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_pooled_session_is_the_stock_engines_session(admin):
    """What the baseline sees is what a new connection of the stock engine sees."""
    pooled = _cycle(CLEAN_FORM, admin)
    stock = observe("stock", admin)
    connections["stock"].close()
    changed = differences(stock.facts, pooled["facts"])
    assert not changed, ("a pooled session (next user) differs from a new connection of the stock engine "
                         "(baseline):\n  " + "\n  ".join(changed))
