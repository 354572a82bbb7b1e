"""Which process opened a physical connection, and so may talk to it.

A forked child shares its parent's sockets. If the child's copy of a
MySQLdb connection is closed or garbage-collected, libmysqlclient sends
COM_QUIT on the shared socket and the parent's next query fails (error
2013); a rollback sent by the child would steal the parent's replies. So:

- every physical connection is adopted here, tagged with the process that
  opened it, and kept referenced until the pool closes it;
- code that would talk to a connection (rollback, ping, close) asks
  owned_here() first;
- in a forked child, neutralise_inherited() points every inherited
  connection's descriptor at /dev/null, so whatever the child's copy later
  sends goes nowhere (forks.py calls it first thing after a fork).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from . import drivers

_OWNER = "_django_mysqlpool_pid"

# Strong references: a connection dropped by garbage collection in a child
# would say goodbye on its parent's socket before the child could stop it.
_adopted: set[Any] = set()
_adopted_lock = threading.Lock()


def adopt(connection: Any) -> Any:
    """Record that this process opened connection; returns it."""
    setattr(connection, _OWNER, os.getpid())
    with _adopted_lock:
        _adopted.add(connection)
    return connection


def release(connection: Any) -> None:
    """Forget a connection the pool has closed."""
    with _adopted_lock:
        _adopted.discard(connection)


def owned_here(connection: Any) -> bool:
    """True if this process opened connection and may talk to it."""
    # os.getpid(), not a copy refreshed by a fork hook: in a child, Python
    # frees other threads' data (and so may give their connections back)
    # before any hook runs.
    return getattr(connection, _OWNER, None) == os.getpid()


def neutralise_inherited() -> int:
    """In a forked child: make every connection the parent opened deaf and mute.

    Returns how many there were. Nothing is sent on them, nor closed.
    """
    global _adopted_lock
    # A thread of the parent may have held the lock at the fork.
    _adopted_lock = threading.Lock()
    inherited = list(_adopted)
    _adopted.clear()
    if not inherited:
        return 0
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for connection in inherited:
            fd = drivers.descriptor(connection)
            if fd is not None and fd >= 0:
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    return len(inherited)
