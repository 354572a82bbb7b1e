"""Fork safety: a child process never uses, closes or writes to its parent's connections.

A forked child shares its parent's sockets. If the child's copy of a
MySQLdb connection is closed or garbage-collected, libmysqlclient sends
COM_QUIT on the shared socket and the parent's next query fails (error
2013); a rollback sent by the child would steal the parent's replies. So:

- every physical connection is adopted here, tagged with the process that
  opened it, and kept referenced until the pool closes it;
- code that would talk to a connection (rollback, ping, close) asks
  owned_here() first;
- in a forked child, every inherited connection's descriptor is pointed at
  /dev/null, so whatever the child's copy later sends goes nowhere, and the
  forking thread's Django wrappers forget their inherited connections, so
  the child's next query opens a connection of its own.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from . import drivers

logger = logging.getLogger("django_mysqlpool")

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


def _after_fork_in_child() -> None:
    try:
        _neutralise_inherited_connections()
    except Exception:  # a fork hook must never break the child
        logger.exception("could not neutralise the connections inherited from the parent")


def _neutralise_inherited_connections() -> None:
    global _adopted_lock
    # A thread of the parent may have held the lock at the fork.
    _adopted_lock = threading.Lock()
    inherited = list(_adopted)
    _adopted.clear()
    if not inherited:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for connection in inherited:
            fd = drivers.descriptor(connection)
            if fd is not None and fd >= 0:
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    _forget_thread_connections()


def _forget_thread_connections() -> None:
    from django.db import connections

    from .checkout import PooledConnection

    for wrapper in connections.all(initialized_only=True):
        if isinstance(wrapper.connection, PooledConnection):
            # Not close(): the connection is the parent's. Drop it; the
            # next query connects afresh, from the child's own pool.
            wrapper.connection.orphan()
            wrapper.connection = None
            wrapper.in_atomic_block = False
            wrapper.needs_rollback = False
            wrapper.savepoint_ids = []
            wrapper.atomic_blocks = []


os.register_at_fork(after_in_child=_after_fork_in_child)
