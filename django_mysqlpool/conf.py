"""Reads and validates MYSQLPOOL_BACKEND, MYSQLPOOL_ARGUMENTS and OPTIONS["pool"]."""

from __future__ import annotations

import inspect
import numbers
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from sqlalchemy import pool as sqlalchemy_pool

DEFAULT_BACKEND = "QueuePool"
BUILTIN_BACKENDS = ("QueuePool", "NullPool", "SingletonThreadPool", "StaticPool", "AssertionPool")

# Keys people carry over from SQLAlchemy 1.x or from create_engine(): each
# gets a sentence saying what to do instead of a bare TypeError.
REMOVED_ARGUMENTS = {
    "use_threadlocal": (
        "was removed in SQLAlchemy 2.0; Django already gives each thread its "
        "own connection, so delete it"
    ),
    "sa_pool_key": (
        "belonged to pool.manage(), removed in SQLAlchemy 2.0; pools are now "
        "keyed by the connection parameters, so delete it"
    ),
    "poolclass": "is not an argument here; name the class in MYSQLPOOL_BACKEND instead",
    "listeners": (
        "(PoolListener) was removed in SQLAlchemy 2.0; pass 'events' as a list "
        "of (function, event name) pairs instead"
    ),
    "creator": "is supplied by django_mysqlpool from DATABASES; delete it",
    "dialect": "is supplied by django_mysqlpool; delete it",
}
ENGINE_STYLE_NAMES = {
    "pool_size": None,  # valid as is for QueuePool
    "pool_timeout": "timeout",
    "pool_recycle": "recycle",
    "pool_pre_ping": "pre_ping",
    "pool_use_lifo": "use_lifo",
    "pool_reset_on_return": "reset_on_return",
    "pool_logging_name": "logging_name",
}
NUMERIC_ARGUMENTS = ("pool_size", "max_overflow", "timeout", "recycle")
ROLLBACK_RESETS = (True, "rollback")
RESET_SESSION_CHOICES = ("auto", "always")
HOST_POLICIES = ("failover", "round_robin")


@dataclass(frozen=True)
class PoolOptions:
    """django_mysqlpool's own arguments, taken out before SQLAlchemy sees the rest.

    ping_after_idle: seconds; a connection idle longer than this is pinged
        (one round trip) before it is handed out. Younger ones get only a
        zero-timeout poll of their socket, which sees connections the server
        closed. None: never ping.
    max_lifetime: seconds; a connection is closed when it is given back or
        checked out after living this long, less a random 0-10% so that
        connections opened together do not expire together. None: no limit.
    idle_timeout: seconds; idle connections beyond min_idle are closed once
        idle this long (checked when connections are given back). None: keep.
    min_idle: idle connections idle_timeout never closes (default: pool_size).
    max_waiting: checkouts that may wait for a connection at once (QueuePool);
        one more fails at once with TooManyRequests instead of queueing for
        timeout seconds. None: no limit.
    leak_detection: seconds; a connection checked out longer than this is
        logged once at WARNING, with the stack that checked it out, and once
        at INFO when it is given back. None: off (no stack is captured).
    host_policy: with several servers in HOST ("db1:3306,db2:3306"), which
        node a new connection goes to: "failover" (the first node that is
        up, in HOST's order) or "round_robin" (the node with the fewest of
        the pool's connections). See cluster.py.
    host_retry_after: seconds a node that failed stays out of use before
        the idle sweeper probes it again.
    wsrep_sync_wait: if set, SET SESSION wsrep_sync_wait to it on every
        connection (Galera: 1 makes a read wait until the node has applied
        every write committed before it, on any node). None: the server's.
    reset_session: "auto" rolls back an open transaction and fully resets a
        session only when its statements may have changed session state;
        "always" fully resets every session on give-back (one round trip).
    """

    ping_after_idle: float | None = 0.5
    max_lifetime: float | None = 1800.0
    idle_timeout: float | None = 600.0
    min_idle: int | None = None
    reset_session: str = "auto"
    leak_detection: float | None = None
    max_waiting: int | None = None
    host_policy: str = "failover"
    host_retry_after: float = 5.0
    wsrep_sync_wait: int | None = None


OWN_ARGUMENTS = tuple(f.name for f in fields(PoolOptions))


def telemetry_enabled() -> bool:
    """MYSQLPOOL_OPENTELEMETRY: record the pools' OpenTelemetry metrics (default False)."""
    enabled = getattr(settings, "MYSQLPOOL_OPENTELEMETRY", False)
    if not isinstance(enabled, bool):
        raise ImproperlyConfigured(f"MYSQLPOOL_OPENTELEMETRY must be True or False, not {enabled!r}.")
    if enabled:
        try:
            import opentelemetry.metrics  # noqa: F401
        except ImportError:
            raise ImproperlyConfigured(
                "MYSQLPOOL_OPENTELEMETRY is True but opentelemetry-api is not installed: "
                "pip install django-mysqlpool[otel]."
            ) from None
    return enabled


def pool_class() -> type[sqlalchemy_pool.Pool]:
    """The SQLAlchemy pool class named by MYSQLPOOL_BACKEND."""
    name = getattr(settings, "MYSQLPOOL_BACKEND", DEFAULT_BACKEND)
    return _resolve_pool_class(name)


def _resolve_pool_class(name: Any) -> type[sqlalchemy_pool.Pool]:
    accepted = ", ".join(BUILTIN_BACKENDS)
    if not isinstance(name, str) or not name:
        raise ImproperlyConfigured(
            f"MYSQLPOOL_BACKEND must be a pool class name ({accepted}) or a "
            f"dotted path to a sqlalchemy.pool.Pool subclass, not {name!r}."
        )
    if "." not in name:
        if name not in BUILTIN_BACKENDS:
            raise ImproperlyConfigured(
                f"MYSQLPOOL_BACKEND {name!r} is not a pool class of sqlalchemy.pool; "
                f"use one of {accepted}, or a dotted path to a Pool subclass."
            )
        return getattr(sqlalchemy_pool, name)
    try:
        found = import_string(name)
    except ImportError as error:
        raise ImproperlyConfigured(
            f"MYSQLPOOL_BACKEND {name!r} cannot be imported ({error}); use one of "
            f"{accepted}, or a dotted path to a Pool subclass."
        ) from None
    if not (isinstance(found, type) and issubclass(found, sqlalchemy_pool.Pool)):
        raise ImproperlyConfigured(
            f"MYSQLPOOL_BACKEND {name!r} is not a subclass of sqlalchemy.pool.Pool."
        )
    return found


def pool_arguments(alias: str, per_alias: Any = None) -> dict[str, Any]:
    """MYSQLPOOL_ARGUMENTS with DATABASES[alias]["OPTIONS"]["pool"] merged over it."""
    merged: dict[str, Any] = {}
    base = getattr(settings, "MYSQLPOOL_ARGUMENTS", None) or {}
    for setting, value in (
        ("MYSQLPOOL_ARGUMENTS", base),
        (f"DATABASES[{alias!r}]['OPTIONS']['pool']", per_alias or {}),
    ):
        if not isinstance(value, dict):
            raise ImproperlyConfigured(
                f"{setting} must be a dict of pool arguments, not {value!r}."
            )
        merged.update(value)
    return merged


def split_arguments(
    pool_cls: type[sqlalchemy_pool.Pool], arguments: dict[str, Any], alias: str
) -> tuple[dict[str, Any], PoolOptions]:
    """Validate arguments; return SQLAlchemy's share and our own options."""
    where = _where(alias)
    own = {name: arguments[name] for name in OWN_ARGUMENTS if name in arguments}
    for name in ("ping_after_idle", "max_lifetime", "idle_timeout", "leak_detection"):
        value = own.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0):
            raise ImproperlyConfigured(
                f"{where}: {name!r} must be a number of seconds (0 or more) or None, not {value!r}."
            )
    for name in ("min_idle", "max_waiting"):
        count = own.get(name)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ImproperlyConfigured(f"{where}: {name!r} must be a whole number, 0 or more, not {count!r}.")
    if own.get("reset_session", "auto") not in RESET_SESSION_CHOICES:
        raise ImproperlyConfigured(
            f"{where}: 'reset_session' must be one of {', '.join(map(repr, RESET_SESSION_CHOICES))}, "
            f"not {own['reset_session']!r}."
        )
    if own.get("host_policy", "failover") not in HOST_POLICIES:
        raise ImproperlyConfigured(
            f"{where}: 'host_policy' must be one of {', '.join(map(repr, HOST_POLICIES))}, "
            f"not {own['host_policy']!r}."
        )
    retry_after = own.get("host_retry_after", 5.0)
    if isinstance(retry_after, bool) or not isinstance(retry_after, numbers.Real) or retry_after <= 0:
        raise ImproperlyConfigured(
            f"{where}: 'host_retry_after' must be a number of seconds above 0, not {retry_after!r}."
        )
    sync_wait = own.get("wsrep_sync_wait")
    if sync_wait is not None and (
        isinstance(sync_wait, bool) or not isinstance(sync_wait, int) or not 0 <= sync_wait <= 15
    ):
        raise ImproperlyConfigured(
            f"{where}: 'wsrep_sync_wait' must be a whole number from 0 to 15 (a bit mask; 1: reads "
            f"wait for writes committed on other nodes) or None, not {sync_wait!r}."
        )
    rest = {name: value for name, value in arguments.items() if name not in own}
    validate(pool_cls, rest, alias)
    return rest, PoolOptions(**own)


def _where(alias: str) -> str:
    return f"MYSQLPOOL_ARGUMENTS (or DATABASES[{alias!r}]['OPTIONS']['pool'])"


def validate(pool_cls: type[sqlalchemy_pool.Pool], arguments: dict[str, Any], alias: str) -> None:
    """Raise ImproperlyConfigured for any argument pool_cls would refuse or misuse."""
    accepted = accepted_arguments(pool_cls) | set(OWN_ARGUMENTS)
    where = _where(alias)
    for name, value in arguments.items():
        if name in REMOVED_ARGUMENTS:
            raise ImproperlyConfigured(f"{where}: {name!r} {REMOVED_ARGUMENTS[name]}.")
        if name not in accepted:
            hint = ""
            renamed = ENGINE_STYLE_NAMES.get(name)
            if renamed:
                hint = f" ({name!r} is create_engine()'s name; the pool calls it {renamed!r})"
            raise ImproperlyConfigured(
                f"{where}: {name!r} is not an argument of {pool_cls.__name__}{hint}; "
                f"accepted: {', '.join(sorted(accepted))}."
            )
        if name in NUMERIC_ARGUMENTS and (
            isinstance(value, bool) or not isinstance(value, numbers.Real)
        ):
            raise ImproperlyConfigured(f"{where}: {name!r} must be a number, not {value!r}.")
        if name == "reset_on_return" and value not in ROLLBACK_RESETS:
            raise ImproperlyConfigured(
                f"{where}: reset_on_return={value!r} would hand an open transaction "
                "to the next user; the pool always rolls back on give-back, so "
                "delete the argument."
            )
    if arguments.get("pool_size", 1) < 0:
        raise ImproperlyConfigured(f"{where}: 'pool_size' must be 0 or more.")
    if arguments.get("timeout", 1) < 0:
        raise ImproperlyConfigured(f"{where}: 'timeout' must be 0 or more seconds.")


def accepted_arguments(pool_cls: type[sqlalchemy_pool.Pool]) -> set[str]:
    """Keyword arguments pool_cls takes, walking **kw up to Pool.__init__."""
    names: set[str] = set()
    for cls in pool_cls.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names.update(
            p.name
            for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        )
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
        if cls is sqlalchemy_pool.Pool:
            break
    return {name for name in names if not name.startswith("_")} - {"creator", "dialect"}
