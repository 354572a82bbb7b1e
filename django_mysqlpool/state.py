"""What the pool knows of one physical connection, kept on the connection itself."""

from __future__ import annotations

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


class ConnectionState:
    """What the pool knows of one physical connection (see lifecycle.py for the words)."""

    __slots__ = ("options", "expires_at", "returned_at", "poller", "control", "dirty",
                 "init_command", "database", "session_token", "lease", "cursor_class")

    def __init__(
        self, connection: Any, options: PoolOptions, init_command: str | None, database: str | None,
        recycle: float = -1,
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
        self.init_command = init_command
        self.database = database
        # What Django's init_connection_state() last set up on this session.
        self.session_token: Any = None
        # Bumped at every checkout and give-back: a cursor from an earlier
        # checkout must not run on a session that is no longer its user's.
        self.lease = 0
        # The watching cursor class PooledConnection.cursor() makes (set by
        # lifecycle.prepare()).
        self.cursor_class: Any = None


def state_of(connection: Any) -> ConnectionState:
    """The pool's state of a driver connection that lifecycle.prepare() fitted."""
    return getattr(connection, STATE_ATTRIBUTE)


def attach_state(connection: Any, state: ConnectionState) -> None:
    setattr(connection, STATE_ATTRIBUTE, state)
