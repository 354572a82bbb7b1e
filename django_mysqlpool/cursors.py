"""Cursors that watch their statements: they mark a session dirty, and refuse to run once given back.

Two classes per driver cursor class, made once and cached:

- watching(cls), the class of cursors made on the bare driver connection
  (connection.cursor(), and so Django's own cursors): each notes its
  connection's lease as it is made;
- lean_watching(cls), the same without that __init__, for
  PooledConnection.cursor(), which sets the lease itself (one Python call
  less on every query).

A statement that may leave state in the session (statements.py) marks the
connection's state dirty, so the give-back resets the session. A cursor
whose lease is no longer its connection's (it was kept past close())
raises ConnectionGivenBack.
"""

from __future__ import annotations

from typing import Any

from . import statements
from .errors import given_back
from .state import state_of

_watching_classes: dict[type, type] = {}
_lean_classes: dict[type, type] = {}


def watching(cursor_class: type) -> type:
    """A subclass of the driver's cursor class that notes session-changing SQL."""
    watching_class = _watching_classes.get(cursor_class)
    if watching_class is not None:
        return watching_class
    lean = lean_watching(cursor_class)

    def __init__(self, connection, *args, **kwargs):
        cursor_class.__init__(self, connection, *args, **kwargs)
        self._mysqlpool_lease = state_of(connection).lease

    watching_class = type(lean.__name__, (lean,), {"__init__": __init__, "__module__": __name__})
    return _watching_classes.setdefault(cursor_class, watching_class)


def lean_watching(cursor_class: type) -> type:
    """watching(cursor_class) without its __init__: its cursors refuse to run until given a lease."""
    lean = _lean_classes.get(cursor_class)
    if lean is not None:
        return lean

    def watch(self, query):
        connection = self.connection
        if connection is None:
            return  # a closed cursor: the driver raises its own error
        state = state_of(connection)
        if self._mysqlpool_lease != state.lease:
            # Kept past close(): the session now belongs to someone else.
            raise given_back(connection.InterfaceError, "this cursor's connection was given back to the pool")
        if query is None or statements.changes_session(query):
            state.dirty = True

    verdicts = statements.verdicts

    def execute(self, query, args=None):
        # watch(self, query) for its common case, inlined because it runs
        # for every statement: the lease is current and the text is known
        # to be plain. Anything else goes to watch(); test_cursors.py
        # checks that the two agree.
        connection = self.connection
        if connection is not None:
            try:
                plain = (
                    self._mysqlpool_lease == connection._django_mysqlpool_state.lease
                    and verdicts[query] is False
                )
            except (KeyError, TypeError):  # a new text, or an unhashable bytearray
                plain = False
            if not plain:
                watch(self, query)
        return cursor_class.execute(self, query, args)

    def executemany(self, query, args):
        watch(self, query)
        return cursor_class.executemany(self, query, args)

    def callproc(self, procname, args=()):
        watch(self, None)
        return cursor_class.callproc(self, procname, args)

    lean = type(
        "SessionWatching" + cursor_class.__name__,
        (cursor_class,),
        {"execute": execute, "executemany": executemany, "callproc": callproc,
         "_mysqlpool_lease": -1, "__module__": __name__},
    )
    return _lean_classes.setdefault(cursor_class, lean)
