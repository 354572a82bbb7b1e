"""ManagedPool: one SQLAlchemy pool, its checkout, and what the registry knows of it."""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from typing import Any

from django.db.utils import OperationalError
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy.pool import Pool
from sqlalchemy.pool.base import _ConnDialect

from . import lifecycle, ownership
from .conf import PoolOptions
from .errors import PoolTimeout, TooManyRequests
from .queue_pool import BurstKeepingQueuePool, QueueFull
from .state import STATE_ATTRIBUTE, state_of
from .stats import PoolStats

logger = logging.getLogger("django_mysqlpool")

# Each pass of a checkout either hands out a connection or closes one idle
# dead or expired connection; the bound only guards against a pathological pool.
MAX_REPLACEMENTS = 1000


class DriverDialect(_ConnDialect):
    """How SQLAlchemy's pool closes a driver connection, without an Engine.

    The pool's own reset, ping and checkout paths are not used (lifecycle.py
    does that work); closing is, and it must never reach a connection that a
    parent process opened (see ownership.py): in a forked child, a pool may
    be disposed or garbage-collected with the parent's connections in it.
    """

    def do_close(self, dbapi_connection: Any) -> None:
        if ownership.owned_here(dbapi_connection):
            ownership.release(dbapi_connection)
            try:
                dbapi_connection.close()
            finally:
                state = getattr(dbapi_connection, STATE_ATTRIBUTE, None)
                if state is not None and state.node is not None:
                    state.cluster.closed(state.node)

    do_terminate = do_close


def _check_in(record: Any) -> None:
    record.checkin(_fairy_was_created=False)


class ManagedPool:
    """A SQLAlchemy pool and what the registry knows of it.

    Its repr and description name the alias, server and database, never the
    password or the registry key.
    """

    def __init__(
        self, pool: Pool, alias: str, conn_params: dict[str, Any], options: PoolOptions,
        stats: PoolStats | None = None, cluster: Any = None,
    ) -> None:
        # Any: the methods used beyond Pool's are BurstKeepingQueuePool's,
        # each behind an isinstance() test.
        self.pool: Any = pool
        self.stats = stats or PoolStats()
        # The pool's name in statistics and metrics (set by the registry).
        self.name = alias
        # OpenTelemetry histograms (telemetry.PoolTelemetry), or None: off.
        self.telemetry: Any = None
        if isinstance(pool, BurstKeepingQueuePool):
            pool.stats = self.stats  # the pool counts its waits and timeouts there
            pool.max_waiting = options.max_waiting
        self.alias = alias
        self.options = options
        self._next_idle_sweep = time.monotonic()
        self.database = conn_params.get("database") or conn_params.get("db")
        self.user = conn_params.get("user")
        # With several servers in HOST, their cluster.Cluster; None with one.
        self.cluster = cluster
        if cluster is not None:
            self.server = cluster.servers()
            cluster.discard_idle = self.discard_idle_of
        else:
            self.server = conn_params.get("unix_socket") or "{}:{}".format(
                conn_params.get("host", "localhost"), conn_params.get("port", 3306)
            )
        self.disposed = False
        # Put a checked-out record back in the pool (an attribute, not a
        # method: it runs at every give-back).
        self.return_record = pool.return_record if isinstance(pool, BurstKeepingQueuePool) else _check_in
        # Whether handles may park connections of this pool (handle.detach()):
        # a pool that resets every session would reset it for nobody. False
        # from dispose() on, so that no connection parks in it.
        self.parking = (
            isinstance(pool, BurstKeepingQueuePool) and pool.can_park and options.reset_session != "always"
            # With several servers, every connection goes through give_back(),
            # which moves it off a node that is down or no longer preferred.
            and cluster is None
        )
        self.pre_ping = pool._pre_ping
        # Leak detection (options.leak_detection seconds; None: off, and
        # nothing is recorded): what each handle holding a connection of
        # this pool checked it out with, by id(handle).
        self.leak_threshold = options.leak_detection
        self._checkouts: dict[int, _Checkout] = {}
        self._checkouts_lock = threading.Lock()
        # How long a parked connection may sit before taking it back pings
        # it (handle.PooledConnection.take_back): a number even for "never",
        # so the check is one comparison.
        if self.pre_ping:
            self.take_back_ping_after = 0.0
        elif options.ping_after_idle is None:
            self.take_back_ping_after = math.inf
        else:
            self.take_back_ping_after = options.ping_after_idle

    def checkout(self, alias: str, connect_error: type[Exception]) -> tuple[Any, Any]:
        """A live connection: (its SQLAlchemy record, the driver connection).

        The caller must attach them to a PooledConnection at once: that is
        what gives the record back.

        connect_error is the driver's OperationalError, raised when the
        server cannot be reached or refuses the login; it becomes Django's
        OperationalError naming the alias.
        """
        # SQLAlchemy's records, not its connection proxies: the proxy's
        # bookkeeping cost more than the rest of a checkout. PooledConnection
        # does what the proxy did (give back on close or garbage collection).
        pool = self.pool
        pre_ping = self.pre_ping
        telemetry = self.telemetry
        cluster = self.cluster
        if telemetry is not None:
            started = time.monotonic()
        for _ in range(MAX_REPLACEMENTS):
            try:
                record: Any = pool._do_get()
                try:
                    connection = record.get_connection()  # reconnects if invalidated
                except BaseException as error:
                    record._checkin_failed(error, _fairy_was_created=False)
                    raise
            except sqlalchemy_exc.TimeoutError:
                message = _exhausted_message(alias, pool)
                logger.warning("%s", message)
                raise PoolTimeout(message) from None
            except QueueFull as full:
                logger.warning("%r: %d checkouts already wait (max_waiting); one more refused",
                               self, full.args[0])
                raise TooManyRequests(
                    f"database alias {alias!r}: {full.args[0]} checkouts already wait for a "
                    f"connection (max_waiting={self.options.max_waiting}; pool_size={pool.size()}, "
                    f"max_overflow={pool._max_overflow}); this one fails at once instead of "
                    "queueing: raise max_waiting, pool_size or max_overflow in "
                    "MYSQLPOOL_ARGUMENTS or OPTIONS['pool'], or shed load before it reaches "
                    "the database."
                ) from None
            except connect_error as error:
                raise OperationalError(*_connect_failure_args(alias, self, error)) from error
            now = time.monotonic()
            try:
                usable = lifecycle.usable_at_checkout(connection, now, pre_ping)
            except BaseException as error:  # an interrupted ping: the slot must come back
                record._checkin_failed(error, _fairy_was_created=False)
                raise
            if usable and cluster is not None and cluster.should_leave(state_of(connection).node):
                # With several servers: an idle connection to a node marked
                # down since it was given back, or one traffic is moving off
                # (a better node is up again). Replaced, not counted as lost.
                lifecycle.close_and_free(record)
                continue
            if usable:
                self.stats.checkouts += 1
                if telemetry is not None:
                    telemetry.record_wait(now - started)
                return record, connection
            self.count_unusable(connection, now)
            lifecycle.close_and_free(record)
        raise OperationalError(
            f"database alias {alias!r}: {MAX_REPLACEMENTS} connections in a row were dead "
            "at checkout; is the server restarting?"
        )

    def note_checkout(self, handle: Any) -> None:
        """Leak detection: remember when, by which thread and from where handle checked out."""
        checkout = _Checkout(time.monotonic(), threading.current_thread().name,
                             "".join(traceback.format_stack(limit=_STACK_DEPTH)[:-2]))
        with self._checkouts_lock:
            self._checkouts[id(handle)] = checkout

    def note_give_back(self, handle: Any) -> None:
        """Leak detection: handle gave its connection back; say so if it was reported."""
        with self._checkouts_lock:
            checkout = self._checkouts.pop(id(handle), None)
        if checkout is not None and checkout.reported:
            logger.info(
                "a connection of %r reported as a possible leak was given back after %.1f s "
                "(checked out by thread %r)", self, time.monotonic() - checkout.started, checkout.thread,
            )

    def report_leaks(self) -> int:
        """Log each connection out longer than leak_detection, once; returns how many were logged."""
        threshold = self.leak_threshold
        if threshold is None:
            return 0
        now = time.monotonic()
        with self._checkouts_lock:
            overdue = [c for c in self._checkouts.values() if not c.reported and now - c.started >= threshold]
            for checkout in overdue:
                checkout.reported = True
        for checkout in overdue:
            logger.warning(
                "possible connection leak: a connection of %r has been checked out for %.1f s "
                "by thread %r (leak_detection is %s s); give it back with connection.close() or "
                "@auto_close_db. It was checked out at:\n%s",
                self, now - checkout.started, checkout.thread, threshold, checkout.stack,
            )
        return len(overdue)

    def status(self) -> str:
        """One line on the pool's size, idle connections, overflow and checkouts (SQLAlchemy's).

        With several servers, each node's state follows.
        """
        if self.cluster is not None:
            return f"{self.pool.status()} Nodes: {self.cluster.describe()}"
        return str(self.pool.status())

    def count_unusable(self, connection: Any, now: float) -> None:
        """Count an idle connection found unusable at checkout: expired, or dead."""
        if now >= state_of(connection).expires_at:
            self.stats.closed_expired += 1
            logger.debug("replacing an expired connection from %r", self)
        else:
            self.stats.connections_lost += 1
            logger.info("replacing a dead connection from %r", self)

    def get_stats(self, reset: bool = False) -> dict[str, Any]:
        """This pool's gauges (now) and counters (reset: zeroed as read)."""
        pool = self.pool
        gauges: dict[str, Any] = {"pool_min": None, "pool_max": None, "pool_size": None,
                                  "pool_available": None, "requests_waiting": None}
        if isinstance(pool, BurstKeepingQueuePool):
            overflow = pool._max_overflow
            gauges = {
                "pool_min": pool.size() if self.options.min_idle is None else self.options.min_idle,
                "pool_max": None if overflow == -1 else pool.size() + overflow,
                "pool_size": pool.open_count(),
                "pool_available": pool.checkedin(),
                "requests_waiting": pool.waiting(),
            }
        counters = self.stats.read(reset)
        counters["requests_wait_ms"] = round(counters["requests_wait_ms"])
        counters["connections_ms"] = round(counters["connections_ms"])
        return {**gauges, **counters}

    def retire_idle(self) -> None:
        """Close connections idle longer than idle_timeout, keeping min_idle of them.

        Runs on give-back, at most every quarter of idle_timeout, and from
        the registry's idle sweeper.
        """
        timeout = self.options.idle_timeout
        now = time.monotonic()
        if timeout is None or now < self._next_idle_sweep:
            return
        self._next_idle_sweep = now + max(timeout / 4, 0.05)
        if not isinstance(self.pool, BurstKeepingQueuePool):
            return
        keep = self.options.min_idle
        if keep is None:
            keep = self.pool.size()

        def idle_too_long(record: Any) -> bool:
            connection = record.dbapi_connection
            returned = state_of(connection).returned_at if connection else None
            return returned is None or now - returned >= timeout

        # Parked connections nobody took back for that long are idle ones.
        self.pool.unpark(idle_too_long)
        retired = self.pool.close_idle(keep, idle_too_long)
        self.stats.closed_idle += retired
        if retired:
            logger.debug("retired %d idle connection(s) from %r", retired, self)

    def discard_idle_of(self, node: Any) -> int:
        """Close the idle connections to one node of a cluster (it went down)."""
        if not isinstance(self.pool, BurstKeepingQueuePool):
            return 0

        def to_node(record: Any) -> bool:
            connection = record.dbapi_connection
            return connection is not None and state_of(connection).node is node

        closed = self.pool.close_idle_where(to_node)
        if closed:
            logger.info("closed %d idle connection(s) of %r to node %s", closed, self, node.label)
        return closed

    def unpark_all(self) -> None:
        """Make every parked connection idle, so that its handle checks out afresh."""
        if self.parking:
            self.pool.unpark(lambda record: True)

    def dispose(self) -> None:
        """Close idle connections now; checked-out ones close when given back."""
        self.disposed = True
        self.parking = False
        self.pool.dispose()

    def forget(self) -> None:
        """In a forked child: mark this parent's pool disposed, with no I/O on its sockets."""
        self.disposed = True
        self.parking = False

    def __repr__(self) -> str:
        return (
            f"<ManagedPool {type(self.pool).__name__} for alias {self.alias!r}: "
            f"{self.user}@{self.server}/{self.database}>"
        )


_STACK_DEPTH = 24  # frames kept of where a connection was checked out (leak detection)


class _Checkout:
    __slots__ = ("started", "thread", "stack", "reported")

    def __init__(self, started: float, thread: str, stack: str) -> None:
        self.started = started
        self.thread = thread
        self.stack = stack
        self.reported = False


def _exhausted_message(alias: str, pool: Pool) -> str:
    size = pool.size() if hasattr(pool, "size") else "?"
    overflow = getattr(pool, "_max_overflow", "?")
    timeout = getattr(pool, "_timeout", 0.0)
    in_use = pool.checkedout() if hasattr(pool, "checkedout") else "?"
    return (
        f"database alias {alias!r}: no connection free after {timeout:.2f} s "
        f"({in_use} in use; pool_size={size}, max_overflow={overflow}); raise "
        "pool_size, max_overflow or timeout in MYSQLPOOL_ARGUMENTS or OPTIONS['pool'], or give "
        "connections back sooner with connection.close() or @auto_close_db."
    )


def _connect_failure_args(alias: str, managed: ManagedPool, error: BaseException) -> tuple:
    # Keep the driver's error number first, as Django's wrapped errors do,
    # so code testing e.args[0] == 2003 keeps working.
    driver_args = error.args
    if len(driver_args) >= 2:
        errno, text = driver_args[0], driver_args[1]
    else:
        errno, text = 0, " ".join(str(arg) for arg in driver_args)
    message = (
        # With several servers, the node that refused, if one did (cluster.py).
        f"database alias {alias!r} cannot connect to {getattr(error, 'mysqlpool_node', managed.server)} as "
        f"{managed.user!r} (database {managed.database!r}): {text}"
    )
    return (errno, message)
