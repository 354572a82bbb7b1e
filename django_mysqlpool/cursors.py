"""Cursors that watch their statements: they mark a session dirty, and refuse to run once given back.

Two classes per driver cursor class, made once and cached:

- watching(cls), the class of cursors made on the bare driver connection
  (the driver's connection.cursor()): each notes its connection's lease as
  it is made;
- lean_watching(cls), the same without that __init__, for
  PooledConnection.cursor(), which sets the lease itself (one Python call
  less on every query).

A statement that may leave state in the session (statements.py) marks the
connection's state dirty, so the give-back resets the session; a cursor
that reads results unbuffered marks it to be closed, since a result left
half read cannot be cleaned up. A cursor whose lease is no longer its
connection's (it was kept past close()) raises ConnectionGivenBack.

The driver's cursor code reaches its connection through _get_db(), which
these classes answer from _mysqlpool_db; the cursor's public connection
attribute is the pool's handle (set by PooledConnection.cursor()), so
code that reaches "the cursor's connection" is watched as the handle is.
"""

from __future__ import annotations

import sys
from typing import Any

from . import statements
from .drivers import SERVER_SESSION_STATE_CHANGED
from .errors import given_back
from .state import must_close, state_of

_watching_classes: dict[type, type] = {}
_lean_classes: dict[type, type] = {}


def watching(cursor_class: Any) -> type:
    """A subclass of the driver's cursor class that notes session-changing SQL."""
    watching_class = _watching_classes.get(cursor_class)
    if watching_class is not None:
        return watching_class
    lean = lean_watching(cursor_class)

    def __init__(self, connection, *args, **kwargs):
        cursor_class.__init__(self, connection, *args, **kwargs)
        self._mysqlpool_db = connection
        self._mysqlpool_lease = state_of(connection).lease

    watching_class = type(lean.__name__, (lean,), {"__init__": __init__, "__module__": __name__})
    return _watching_classes.setdefault(cursor_class, watching_class)


def _reads_unbuffered(cursor_class: Any) -> bool:
    # MySQLdb's SSCursor family (CursorUseResultMixIn) and PyMySQL's SSCursor;
    # neither module is imported here if the process has not imported it.
    # After pymysql.install_as_MySQLdb(), "import MySQLdb.cursors" loads
    # PyMySQL's cursors a second time, under that name: its SSCursor is
    # another class than pymysql.cursors.SSCursor, so both are asked.
    for module_name in ("MySQLdb.cursors", "pymysql.cursors"):
        module = sys.modules.get(module_name)
        unbuffered = getattr(module, "CursorUseResultMixIn", None) or getattr(module, "SSCursor", None)
        if unbuffered is not None and issubclass(cursor_class, unbuffered):
            return True
    return False


def run(cursor: Any, state: Any, method: Any, query: Any, args: Any) -> Any:
    """Run the driver's execute or executemany, then note what its reply says of the session."""
    try:
        result = method(cursor, query, args)
    except Exception as error:
        # An error reply carries no flags: a trigger or a function may have
        # changed the session before the statement failed.
        state.dirty = True
        if state.node is not None:  # several servers: was it the node's fault?
            state.cluster.failed(state.node, error)
        raise
    except BaseException:
        interrupted(cursor)
        raise
    # The server's word, where it gives it: what the text does not show (a
    # stored function or a trigger that sets a variable). And warnings,
    # which outlive later statements that touch no table: the next user's
    # SHOW WARNINGS would list them, with the values that caused them
    # (MySQLdb's cursor keeps the count of the reply).
    if state.reply_status.value & SERVER_SESSION_STATE_CHANGED or cursor.warning_count:
        state.dirty = True
    return result


def interrupted(cursor: Any) -> None:
    """A statement was interrupted (KeyboardInterrupt, a timeout raised by a signal handler).

    The reply may be half read: no reset can bring such a session back in
    step, so the give-back closes it.
    """
    db = cursor._mysqlpool_db
    if db is not None:
        must_close(db, "a statement was interrupted before its reply was read")


def lean_watching(cursor_class: Any) -> type:
    """watching(cursor_class) without its __init__: its cursors refuse to run until given a lease."""
    lean = _lean_classes.get(cursor_class)
    if lean is not None:
        return lean

    def watch(self, query):
        connection = self._mysqlpool_db
        if connection is None or self.connection is None:
            return  # a closed cursor: the driver raises its own error
        state = state_of(connection)
        if self._mysqlpool_lease != state.lease:
            # Kept past close(): the session now belongs to someone else.
            raise given_back(connection.InterfaceError, "this cursor's connection was given back to the pool")
        if query is None or statements.changes_session(query):
            state.dirty = True
            if query is not None and statements.defeats_reset(query):
                must_close(connection, "a statement changed what no reset undoes (profiling)")
        if unbuffered:
            must_close(connection, "an unbuffered cursor may have left a result unread")

    unbuffered = _reads_unbuffered(cursor_class)
    verdicts = statements.verdicts

    def execute(self, query, args=None):
        # watch(self, query) for its common case, inlined because it runs
        # for every statement: the lease is current and the text is known
        # to be plain. Anything else goes to watch(); test_cursors.py
        # checks that the two agree.
        state = self._mysqlpool_db._django_mysqlpool_state
        try:
            plain = self._mysqlpool_lease == state.lease and verdicts[query] is False and not unbuffered
        except (KeyError, TypeError):  # a new text, or an unhashable bytearray
            plain = False
        if not plain:
            watch(self, query)
        return run(self, state, cursor_class.execute, query, args)

    def executemany(self, query, args):
        watch(self, query)
        return run(self, self._mysqlpool_db._django_mysqlpool_state, cursor_class.executemany, query, args)

    def callproc(self, procname, args=()):
        watch(self, None)
        return cursor_class.callproc(self, procname, args)

    def _get_db(self):
        # The driver's _get_db() (MySQLdb's and PyMySQL's alike), answering
        # with the driver connection kept in _mysqlpool_db: connection is
        # the pool's handle. test_cursors.py checks the closed-cursor error.
        # Every use of the connection by the driver's cursor code (reading
        # further result sets included) comes here: a cursor kept past its
        # lease must not reach the next user's session.
        db = self._mysqlpool_db
        if self.connection is None:
            raise db.ProgrammingError("cursor closed")
        if self._mysqlpool_lease != db._django_mysqlpool_state.lease:
            raise given_back(db.InterfaceError, "this cursor's connection was given back to the pool")
        return db

    def close(self):
        db = self._mysqlpool_db
        if db is not None and self._mysqlpool_lease != db._django_mysqlpool_state.lease:
            # Kept past its lease: the session (and any result it has
            # pending) is someone else's now. Closed without a word to it.
            # PyMySQL's unbuffered result would otherwise try to read its
            # rest when collected, from a connection closed at give-back.
            result: Any = getattr(self, "_result", None)
            if getattr(result, "unbuffered_active", False):
                result.unbuffered_active = False
            self.connection = None
            return None
        return cursor_class.close(self)

    namespace = {
        "execute": execute, "executemany": executemany, "callproc": callproc, "_get_db": _get_db,
        "close": close,
        "_mysqlpool_lease": -1, "_mysqlpool_db": None, "__module__": __name__,
        # MySQLdb's cursors set it from each reply; PyMySQL's do not (its
        # sessions are closed, not reset, when they need cleaning).
        "warning_count": 0,
    }
    if hasattr(cursor_class, "__del__"):
        # PyMySQL's SSCursor closes when collected through its own close
        # (__del__ = close), which would reach a handle given back since.
        namespace["__del__"] = close
    lean = type("SessionWatching" + cursor_class.__name__, (cursor_class,), namespace)
    return _lean_classes.setdefault(cursor_class, lean)
