"""The process-wide pool registry: one managed pool per set of connection parameters and settings.

It creates pools on first use, disposes them, notices settings changes,
forgets a parent's pools in a forked child, and runs the idle sweeper.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from typing import Any, Callable

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from sqlalchemy.pool import Pool, QueuePool

from . import cluster as clusters
from . import conf, lifecycle, ownership, telemetry
from .managed_pool import DriverDialect, ManagedPool
from .queue_pool import BurstKeepingQueuePool
from .state import state_of
from .stats import PoolStats

logger = logging.getLogger("django_mysqlpool")

_DIALECT = DriverDialect()

_pools: dict[tuple, ManagedPool] = {}
_pools_lock = threading.Lock()


# Bumped whenever a cached pool may no longer be the right one: settings
# changed, pools disposed, or a fork. Wrappers compare it to their cache.
generation = 0


def pools() -> list[ManagedPool]:
    """Every managed pool of this process, as a list of its own."""
    return list(_pools.values())


def forget_parent_pools() -> None:
    """In a forked child: start with no pools, leaving the parent's sockets alone."""
    global _pools_lock, generation
    # The parent's pools (and a lock another thread may have held at the
    # fork) are not ours: start empty. Their connections were neutralised
    # (ownership.py); nothing here closes them.
    _pools_lock = threading.Lock()
    for managed in _pools.values():
        managed.forget()
    _pools.clear()
    generation += 1


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: Any) -> None:
    global generation
    if setting in ("MYSQLPOOL_BACKEND", "MYSQLPOOL_ARGUMENTS", "DATABASES"):
        generation += 1
        # A parked connection goes back to its owner without a settings
        # lookup: make its owner check out afresh, from the right pool.
        for managed in pools():
            managed.unpark_all()


class _IdleSweeper(threading.Thread):
    """Retires idle connections of every pool even when no request comes, and reports leaks.

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
            for managed in pools():
                try:
                    managed.retire_idle()
                    managed.report_leaks()
                    if managed.cluster is not None:
                        managed.cluster.probe_due()
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
            recycle = arguments.get("recycle", -1)  # SQLAlchemy's; the connection state applies it
            stats = PoolStats()
            name = _new_name(alias, conn_params)
            metrics = telemetry.for_pool(name, pool_names) if conf.telemetry_enabled() else None
            cluster = _cluster(alias, params, options, connect)

            def open_connection():
                started = time.monotonic()
                connection = node = None
                try:
                    if cluster is None:
                        connection = ownership.adopt(connect(params))
                    else:
                        connection, node = cluster.connect(params, connect)
                        ownership.adopt(connection)
                    prepared = lifecycle.prepare(connection, options, params, recycle)
                    if node is not None:
                        state = state_of(prepared)
                        state.node, state.cluster = node, cluster
                except BaseException as error:
                    if connection is not None:  # opened, but its setup failed: not for the pool
                        ownership.release(connection)
                        try:
                            connection.close()
                        except Exception:
                            pass
                    if cluster is not None and node is not None:
                        cluster.closed(node)
                    stats.connections_errors += 1
                    logger.warning("could not open a connection for pool %r: %s", name, error)
                    raise
                seconds = time.monotonic() - started
                logger.debug("opened a connection for pool %r in %.1f ms", name, seconds * 1000)
                stats.connections_num += 1
                stats.connections_ms += seconds * 1000
                if metrics is not None:
                    metrics.record_create(seconds)
                return prepared

            pool = _create_pool(alias, pool_cls, arguments, open_connection)
            managed = ManagedPool(pool, alias, conn_params, options, stats, cluster)
            managed.name = name
            managed.telemetry = metrics
            _pools[key] = managed
            logger.debug("created %r", managed)
            _IdleSweeper.ensure_running()
    return managed


def _cluster(alias: str, params: dict[str, Any], options: conf.PoolOptions,
             connect: Callable[[dict[str, Any]], Any]) -> clusters.Cluster | None:
    """The cluster of nodes HOST names, or None if it names one server."""
    try:
        servers = clusters.parse_hosts(params.get("host"), params.get("port"))
    except ValueError as error:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['HOST'] names several servers, but {error}: write "
            "'db1:3306,db2:3306,db3:3306'."
        ) from None
    if servers is None:
        return None
    cluster = clusters.Cluster(alias, servers, options.host_policy, options.host_retry_after)
    # A node that vanished without refusing must not hold a checkout or a
    # probe for the operating system's TCP timeout (minutes): without a
    # connect_timeout in OPTIONS, nodes get a few seconds.
    params.setdefault("connect_timeout", NODE_CONNECT_TIMEOUT)

    def probe(node: clusters.Node) -> Any:
        return connect({**params, "host": node.host, "port": node.port})

    cluster.probe_connection = probe
    return cluster


NODE_CONNECT_TIMEOUT = 5  # seconds


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
    # Our give-back (lifecycle.give_back) replaces SQLAlchemy's blanket
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
    return (_freeze(_without_password(conn_params)), pool_cls, _freeze(arguments), options)


# Salted per process: a key tells two passwords apart, and a key printed by
# an error tracker that captures module globals gives nothing to guess at.
_KEY_SALT = os.urandom(16)


def _without_password(conn_params: dict[str, Any]) -> dict[str, Any]:
    secrets = [name for name in ("password", "passwd") if name in conn_params]
    if not secrets:
        return conn_params
    params = dict(conn_params)
    for name in secrets:
        digest = hashlib.sha256(_KEY_SALT + str(params[name]).encode("utf-8", "surrogatepass"))
        params[name] = "sha256:" + digest.hexdigest()
    return params


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


def _new_name(alias: str, conn_params: dict[str, Any]) -> str:
    # Under _pools_lock. The alias, unless a live pool has that name already
    # (settings changed, another database in tests): then the user, server
    # and database follow, never the password. A name stays with its pool,
    # so that a series of metrics keeps its name.
    taken = {managed.name for managed in _pools.values()}
    name = alias
    if name in taken:
        database = conn_params.get("database") or conn_params.get("db")
        server = conn_params.get("unix_socket") or "{}:{}".format(
            conn_params.get("host", "localhost"), conn_params.get("port", 3306))
        name = f"{alias} {conn_params.get('user')}@{server}/{database}"
        while name in taken:
            name += "'"
    return name


def pool_names(alias: str | None = None) -> dict[str, ManagedPool]:
    """This process's pools (of one alias if given), by name (see _new_name())."""
    return {managed.name: managed for managed in pools() if alias is None or managed.alias == alias}


def get_stats(alias: str | None = None, reset: bool = False) -> dict[str, dict[str, Any]]:
    """Each pool's statistics (of one alias if given), by pool name (see pool_names())."""
    return {name: managed.get_stats(reset) for name, managed in pool_names(alias).items()}


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
        for key in [key for key, value in _pools.items() if value is managed]:
            del _pools[key]
    managed.dispose()
    logger.debug("disposed %r", managed)
