"""The process-wide pool registry: one SQLAlchemy pool per set of connection parameters."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Any, Callable

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import connections
from django.dispatch import receiver
from django.db.utils import OperationalError
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy.pool import Pool, QueuePool
from sqlalchemy.pool.base import _ConnDialect

from . import checkout as checkout_path
from . import conf, forks
from .checkout import PooledConnection
from .errors import PoolTimeout
from .queue_pool import BurstKeepingQueuePool

logger = logging.getLogger("django_mysqlpool")


class _DriverDialect(_ConnDialect):
    """How SQLAlchemy's pool closes a driver connection, without an Engine.

    The pool's own reset, ping and checkout paths are not used (checkout.py
    does that work); closing is, and it must never reach a connection that a
    parent process opened (see forks.py): in a forked child, a pool may be
    disposed or garbage-collected with the parent's connections in it.
    """

    def do_close(self, dbapi_connection: Any) -> None:
        if forks.owned_here(dbapi_connection):
            forks.release(dbapi_connection)
            dbapi_connection.close()

    do_terminate = do_close


_DIALECT = _DriverDialect()


class ManagedPool:
    """A SQLAlchemy pool and what the registry knows of it.

    Its repr and description name the alias, server and database, never the
    password or the registry key.
    """

    def __init__(
        self, pool: Pool, alias: str, conn_params: dict[str, Any], options: conf.PoolOptions
    ) -> None:
        self.pool = pool
        self.alias = alias
        self.options = options
        self._next_idle_sweep = time.monotonic()
        self.database = conn_params.get("database") or conn_params.get("db")
        self.user = conn_params.get("user")
        self.server = conn_params.get("unix_socket") or "{}:{}".format(
            conn_params.get("host", "localhost"), conn_params.get("port", 3306)
        )
        self.disposed = False
        self._plain_return = isinstance(pool, BurstKeepingQueuePool)
        # Parking (checkout.PooledConnection.detach) keeps a connection with
        # the Django connection that used it: it would defeat the rotation a
        # first-in, first-out pool is chosen for.
        # A pool that resets every session would reset it for nobody.
        # False from dispose() on, so that no connection parks in it.
        self.parking = (
            self._plain_return
            and pool._use_lifo
            and not pool.dispatch.checkin
            and options.reset_session != "always"
        )
        self.pre_ping = pool._pre_ping
        # How long a parked connection may sit before taking it back pings
        # it (checkout.PooledConnection._reclaim): a number even for "never",
        # so the check is one comparison.
        if self.pre_ping:
            self.reclaim_ping_after = 0.0
        elif options.ping_after_idle is None:
            self.reclaim_ping_after = math.inf
        else:
            self.reclaim_ping_after = options.ping_after_idle

    def return_record(self, record: Any) -> None:
        """Put a checked-out record back in the pool."""
        pool = self.pool
        if self._plain_return and not pool.dispatch.checkin and not record.finalize_callback:
            # What record.checkin() would end with, minus its bookkeeping for
            # SQLAlchemy's own connection proxies, which we never create.
            pool._do_return_conn(record)
        else:
            record.checkin(_fairy_was_created=False)

    def retire_idle(self) -> None:
        """Close connections idle longer than idle_timeout, keeping min_idle of them.

        Runs on give-back, at most every quarter of idle_timeout: no thread.
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
            returned = checkout_path.state_of(connection).returned_at if connection else None
            return returned is None or now - returned >= timeout

        # Parked connections nobody took back for that long are idle ones.
        self.pool.unpark(idle_too_long)
        retired = self.pool.close_idle(keep, idle_too_long)
        if retired:
            logger.debug("retired %d idle connection(s) from %r", retired, self)

    def dispose(self) -> None:
        """Close idle connections now; checked-out ones close when given back."""
        self.disposed = True
        self.parking = False
        self.pool.dispose()

    def __repr__(self) -> str:
        return (
            f"<ManagedPool {type(self.pool).__name__} for alias {self.alias!r}: "
            f"{self.user}@{self.server}/{self.database}>"
        )


_pools: dict[tuple, ManagedPool] = {}
_pools_lock = threading.Lock()


# Bumped whenever a cached pool may no longer be the right one: settings
# changed, pools disposed, or a fork. Wrappers compare it to their cache.
generation = 0


def _forget_parent_pools() -> None:
    global _pools_lock, generation
    # The parent's pools (and a lock another thread may have held at the
    # fork) are not ours: start empty. forks.py has made their connections
    # harmless; nothing here closes them.
    _pools_lock = threading.Lock()
    for managed in _pools.values():
        managed.disposed = True  # flags only: no I/O on the parent's sockets
        managed.parking = False
    _pools.clear()
    generation += 1


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: Any) -> None:
    global generation
    if setting in ("MYSQLPOOL_BACKEND", "MYSQLPOOL_ARGUMENTS", "DATABASES"):
        generation += 1
        # A parked connection goes back to its owner without a settings
        # lookup: make its owner check out afresh, from the right pool.
        for managed in list(_pools.values()):
            if managed.parking:
                managed.pool.unpark(lambda record: True)


os.register_at_fork(after_in_child=_forget_parent_pools)


class _IdleSweeper(threading.Thread):
    """Retires idle connections of every pool even when no request comes.

    One daemon thread per process, started with the first pool (and again in
    a forked child, where the parent's thread does not exist).
    """

    INTERVAL = 1.0  # seconds; retire_idle() itself keeps to idle_timeout / 4

    _running: "_IdleSweeper | None" = None

    def __init__(self) -> None:
        super().__init__(name="django_mysqlpool idle sweeper", daemon=True)
        self.pid = os.getpid()

    @classmethod
    def ensure_running(cls) -> None:
        running = cls._running
        if running is None or running.pid != os.getpid() or not running.is_alive():
            cls._running = cls()
            cls._running.start()

    def run(self) -> None:
        while True:
            time.sleep(self.INTERVAL)
            if self.pid != os.getpid():
                return
            for managed in list(_pools.values()):
                try:
                    managed.retire_idle()
                except Exception:  # never let the sweeper die
                    logger.exception("retiring idle connections of %r failed", managed)


def pool_for_connection(
    alias: str,
    conn_params: dict[str, Any],
    per_alias_arguments: Any,
    connect: Callable[[dict[str, Any]], Any],
) -> ManagedPool:
    """The pool for these parameters and settings, created on first use.

    connect(conn_params) opens a new physical connection when the pool has
    none to give.
    """
    pool_cls, arguments, options = _configuration(alias, per_alias_arguments)
    key = _registry_key(conn_params, pool_cls, arguments, options)
    managed = _pools.get(key)
    if managed is not None:
        return managed
    with _pools_lock:
        # Two threads may both miss above; the lock makes the second one
        # find the first one's pool instead of creating a rival.
        managed = _pools.get(key)
        if managed is None:
            params = dict(conn_params)
            init_command = params.get("init_command")
            database = params.get("database") or params.get("db")
            recycle = arguments.get("recycle", -1)  # SQLAlchemy's; checkout.py applies it

            def open_connection():
                connection = forks.adopt(connect(params))
                return checkout_path.prepare(connection, options, init_command, database, recycle)

            pool = _create_pool(alias, pool_cls, arguments, open_connection)
            managed = _pools[key] = ManagedPool(pool, alias, conn_params, options)
            logger.debug("created %r", managed)
            _IdleSweeper.ensure_running()
    return managed


def checkout(
    alias: str, managed: ManagedPool, connect_error: type[Exception], tie_to_thread: bool = True
) -> PooledConnection:
    """A live connection from managed's pool, in a handle of its own (not reattachable).

    tie_to_thread: give it back when the calling thread ends, if it is still
    out then (False for a connection Django lets threads share).
    """
    handle = PooledConnection()
    record, connection = checkout_record(alias, managed, connect_error)
    handle.attach(record, connection, managed, tie_to_thread)
    return handle


def checkout_record(alias: str, managed: ManagedPool, connect_error: type[Exception]) -> tuple[Any, Any]:
    """A live connection from managed's pool: (its SQLAlchemy record, the driver connection).

    The caller must attach them to a PooledConnection at once: that is what
    gives the record back.

    connect_error is the driver's OperationalError, raised when the server
    cannot be reached or refuses the login; it becomes Django's
    OperationalError naming the alias.
    """
    # SQLAlchemy's records, not its connection proxies: the proxy's
    # bookkeeping cost more than the rest of a checkout. PooledConnection
    # does what the proxy did (give back on close or garbage collection).
    pool = managed.pool
    pre_ping = pool._pre_ping
    # Each pass either hands out a connection or closes one idle dead or
    # expired connection; the bound only guards against a pathological pool.
    for _ in range(_MAX_REPLACEMENTS):
        try:
            record = pool._do_get()
            try:
                connection = record.get_connection()  # reconnects if invalidated
            except BaseException as error:
                record._checkin_failed(error, _fairy_was_created=False)
                raise
        except sqlalchemy_exc.TimeoutError:
            raise PoolTimeout(_exhausted_message(alias, pool)) from None
        except connect_error as error:
            raise OperationalError(*_connect_failure_args(alias, managed, error.args)) from error
        try:
            if checkout_path.usable_at_checkout(connection, time.monotonic(), pre_ping):
                return record, connection
        except BaseException as error:  # an interrupted ping: the slot must come back
            record._checkin_failed(error, _fairy_was_created=False)
            raise
        logger.debug("replacing a dead or expired connection from %r", managed)
        record.invalidate()
        record.checkin(_fairy_was_created=False)
    raise OperationalError(
        f"database alias {alias!r}: {_MAX_REPLACEMENTS} connections in a row were dead "
        "at checkout; is the server restarting?"
    )


_MAX_REPLACEMENTS = 1000


def pool_for(alias: str, conn_params: dict[str, Any], per_alias_arguments: Any) -> ManagedPool | None:
    """The registered pool for these parameters, if one exists yet."""
    pool_cls, arguments, options = _configuration(alias, per_alias_arguments)
    return _pools.get(_registry_key(conn_params, pool_cls, arguments, options))


_validated: dict[tuple, tuple[dict[str, Any], conf.PoolOptions]] = {}


def _configuration(alias: str, per_alias_arguments: Any) -> tuple[type[Pool], dict[str, Any], conf.PoolOptions]:
    pool_cls = conf.pool_class()
    arguments = conf.pool_arguments(alias, per_alias_arguments)
    token = (pool_cls, _freeze(arguments))
    split = _validated.get(token)
    if split is None:
        split = _validated[token] = conf.split_arguments(pool_cls, arguments, alias)
    return (pool_cls, *split)


def _create_pool(alias, pool_cls, arguments, creator) -> Pool:
    # Our give-back (checkout.give_back) replaces SQLAlchemy's blanket
    # ROLLBACK: it rolls back only when a transaction is open.
    arguments = {**arguments, "reset_on_return": None}
    implementation = BurstKeepingQueuePool if pool_cls is QueuePool else pool_cls
    try:
        return implementation(creator, dialect=_DIALECT, **arguments)
    except (TypeError, ValueError) as error:
        raise ImproperlyConfigured(
            f"{pool_cls.__name__} refused the arguments from MYSQLPOOL_ARGUMENTS "
            f"(or DATABASES[{alias!r}]['OPTIONS']['pool']): {error}."
        ) from None


def _registry_key(
    conn_params: dict[str, Any], pool_cls: type, arguments: dict[str, Any], options: conf.PoolOptions
) -> tuple:
    # Every connection parameter is part of the key: the test runner renames
    # databases in place, and two users must never share a socket.
    return (_freeze(conn_params), pool_cls, _freeze(arguments), options)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        # The conversions dict Django passes is large and always the same
        # object: its identity is key enough.
        return tuple(
            sorted(
                ((str(k), id(v) if k == "conv" else _freeze(v)) for k, v in value.items()),
                key=lambda item: item[0],
            )
        )
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(_freeze(v) for v in value)
    return value


def _exhausted_message(alias: str, pool: Pool) -> str:
    size = pool.size() if hasattr(pool, "size") else "?"
    overflow = getattr(pool, "_max_overflow", "?")
    timeout = getattr(pool, "_timeout", 0.0)
    in_use = pool.checkedout() if hasattr(pool, "checkedout") else "?"
    return (
        f"database alias {alias!r}: no connection free after {timeout:.2f} s "
        f"({in_use} in use; pool_size={size}, max_overflow={overflow}); raise "
        "pool_size, max_overflow or timeout in MYSQLPOOL_ARGUMENTS, or give "
        "connections back sooner with connection.close() or @auto_close_db."
    )


def _connect_failure_args(alias: str, managed: ManagedPool, driver_args: Any) -> tuple:
    # Keep the driver's error number first, as Django's wrapped errors do,
    # so code testing e.args[0] == 2003 keeps working.
    if len(driver_args) >= 2:
        errno, text = driver_args[0], driver_args[1]
    else:
        errno, text = 0, " ".join(str(arg) for arg in driver_args)
    message = (
        f"database alias {alias!r} cannot connect to {managed.server} as "
        f"{managed.user!r} (database {managed.database!r}): {text}"
    )
    return (errno, message)


def dispose_pools(database: str | None = None) -> int:
    """Dispose the pools of this process (only those of one database if given)."""
    global generation
    generation += 1
    with _pools_lock:
        doomed = [
            key for key, managed in _pools.items()
            if database is None or managed.database == database
        ]
        disposed = [_pools.pop(key) for key in doomed]
    for managed in disposed:
        managed.dispose()
        logger.debug("disposed %r", managed)
    return len(disposed)


def dispose_pool(managed: ManagedPool) -> None:
    """Dispose one pool and take it out of the registry."""
    global generation
    generation += 1
    with _pools_lock:
        for key, registered in list(_pools.items()):
            if registered is managed:
                del _pools[key]
    managed.dispose()
    logger.debug("disposed %r", managed)


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
    dispose_pools()
