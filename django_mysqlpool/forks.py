"""Fork safety: close_pool() before a planned fork, and the one hook that runs in every forked child.

A forked child never uses, closes or writes to its parent's connections
(ownership.py explains why). After a fork, the child:

1. points every inherited connection's socket at /dev/null
   (ownership.neutralise_inherited), before anything can talk on it;
2. makes the forking thread's Django wrappers forget their handles
   (PooledConnection.orphan), so the child's next query connects afresh;
3. forgets the parent's pools (registry.forget_parent_pools), which also
   tells cached wrappers to look their pool up again.

The order is written here once: one at-fork hook calls the three steps.
"""

from __future__ import annotations

import logging
import os

from django.db import connections

from . import ownership, registry
from .handle import PooledConnection

logger = logging.getLogger("django_mysqlpool")


def close_pool() -> None:
    """Close every pool of the process; call it before os.fork().

    The calling thread's pooled Django connections are given back first, so
    a forked child cannot inherit one in use. Idle connections close now;
    connections other threads hold close when they are given back. Safe to
    call twice; the next query opens a fresh connection.
    """
    for wrapper in connections.all(initialized_only=True):
        if isinstance(wrapper.connection, PooledConnection):
            wrapper.close()
    registry.dispose_pools()


def _orphan_thread_connections() -> None:
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


def _after_fork_in_child() -> None:
    try:
        if ownership.neutralise_inherited():
            _orphan_thread_connections()
    except Exception:  # a fork hook must never break the child
        logger.exception("could not neutralise the connections inherited from the parent")
    finally:
        # Even after an interrupt (KeyboardInterrupt, gevent.Timeout): a
        # child that kept the parent's pools would take back the parent's
        # parked connections.
        registry.forget_parent_pools()


os.register_at_fork(after_in_child=_after_fork_in_child)
