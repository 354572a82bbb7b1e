"""What the pool knows of one physical connection, kept on the connection itself."""

from __future__ import annotations

import ctypes
import math
import random
import time
from typing import Any

from . import drivers
from .conf import PoolOptions
from .socket_watch import SocketWatch

# The attribute of a driver connection that holds its ConnectionState. Hot
# paths (cursors.py, handle.py) spell it out as connection._django_mysqlpool_state:
# an attribute read beats getattr().
STATE_ATTRIBUTE = "_django_mysqlpool_state"

# What reply_status reads for a connection whose server does not flag
# session changes: no flag ever set.
_NO_FLAGS = ctypes.c_uint(0)


class ConnectionState:
    """What the pool knows of one physical connection (see lifecycle.py for the words)."""

    __slots__ = ("options", "expires_at", "returned_at", "poller", "control", "dirty",
                 "close_reason", "reply_status", "init_command", "database", "charset", "collation",
                 "sql_mode", "role", "resettable", "session_token", "lease", "cursor_class", "node", "cluster",
                 "sync_wait")

    def __init__(
        self, connection: Any, options: PoolOptions, params: dict[str, Any], recycle: float = -1,
    ) -> None:
        now = time.monotonic()
        self.options = options
        lifetime = options.max_lifetime
        # Up to 10% less, so connections opened in one burst expire apart.
        # Infinity, not None, for no limit: one comparison on the hot path.
        self.expires_at = math.inf if lifetime is None else now + lifetime * (1 - 0.1 * random.random())
        if recycle is not None and recycle > -1:
            # SQLAlchemy's recycle, applied as an expiry like max_lifetime:
            # a parked connection taken back never passes through
            # record.get_connection(), which would apply it.
            self.expires_at = min(self.expires_at, now + recycle)
        self.returned_at: float | None = None  # None: never given back, fresh
        self.poller = None
        fd = drivers.descriptor(connection)
        if fd is not None and fd >= 0:
            self.poller = SocketWatch(fd)
        self.control = drivers.SessionControl(connection)
        # True once a statement or a driver call may have left state in the
        # session that a rollback does not clear: the give-back resets it.
        self.dirty = False
        # Why this session cannot be made clean surely (another login, the
        # bare driver connection handed out, a result maybe left unread):
        # the give-back closes it. Set together with dirty, so that the
        # request end's one test of dirty keeps it from parking.
        self.close_reason: str | None = None
        # The last reply's status flags, read in place, when the server flags
        # replies that changed the session (track_session_changes());
        # otherwise a constant 0. The cursors read it after every statement.
        self.reply_status: Any = _NO_FLAGS
        # What the driver set up at connect, from the connection parameters:
        # a session reset must set it up again.
        self.init_command = params.get("init_command")
        self.database = params.get("database") or params.get("db")
        character_set_name = getattr(connection, "character_set_name", None)
        self.charset = params.get("charset") or (character_set_name() if character_set_name else None)
        self.collation = params.get("collation")
        self.sql_mode = params.get("sql_mode")
        # An option file may hold settings the driver applied at connect
        # (an init-command, a character set) that a reset cannot know to
        # apply again: such sessions are closed, not reset, when dirty.
        self.resettable = not (params.get("read_default_file") or params.get("read_default_group"))
        # The role a new session has (its user's default role), as SET ROLE
        # takes it; a reset keeps whatever role was set since. None: the
        # server has no roles, or was not asked (lifecycle.prepare asks).
        self.role: str | None = None
        # What Django's init_connection_state() last set up on this session.
        self.session_token: Any = None
        # Bumped at every checkout and give-back: a cursor from an earlier
        # checkout must not run on a session that is no longer its user's.
        self.lease = 0
        # The watching cursor class PooledConnection.cursor() makes (set by
        # lifecycle.prepare()).
        self.cursor_class: Any = None
        # With several servers in HOST: the cluster.Node this connection
        # went to, and its cluster.Cluster (set by the registry). None with
        # one server.
        self.node: Any = None
        self.cluster: Any = None
        # SET SESSION wsrep_sync_wait at connect and after every reset.
        self.sync_wait = options.wsrep_sync_wait


def state_of(connection: Any) -> ConnectionState:
    """The pool's state of a driver connection that lifecycle.prepare() fitted."""
    return getattr(connection, STATE_ATTRIBUTE)


def attach_state(connection: Any, state: ConnectionState) -> None:
    setattr(connection, STATE_ATTRIBUTE, state)


def track_session_changes(connection: Any, state: ConnectionState) -> None:
    """Have the server flag every reply that changed the session (one round trip)."""
    state.reply_status = state.control.track_state_changes(connection) or _NO_FLAGS


def must_close(connection: Any, reason: str) -> None:
    """Mark a session that no reset can surely clean: the give-back closes it."""
    state = state_of(connection)
    state.dirty = True
    state.close_reason = reason
