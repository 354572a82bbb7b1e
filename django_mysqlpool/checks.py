"""Django system checks (ids mysqlpool.E001...): configuration mistakes found at start-up."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import conf

ENGINE = "django_mysqlpool.backends.mysqlpool"


def pooled_aliases() -> list[str]:
    """The aliases of DATABASES on this engine."""
    return [alias for alias, database in settings.DATABASES.items() if database.get("ENGINE") == ENGINE]


@checks.register("mysqlpool")  # not Tags.database: these need no connection, and run by default
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001: MYSQLPOOL_BACKEND; E002: pool arguments; W001: CONN_MAX_AGE = None."""
    messages: list[checks.CheckMessage] = []
    aliases = pooled_aliases()
    if not aliases:
        return messages
    try:
        pool_cls = conf.pool_class()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), hint="Use QueuePool unless you have a reason not to.",
                             id="mysqlpool.E001")]
    for alias in aliases:
        database = settings.DATABASES[alias]
        per_alias = (database.get("OPTIONS") or {}).get("pool")
        try:
            arguments = conf.pool_arguments(alias, per_alias)
            conf.split_arguments(pool_cls, arguments, alias)
        except ImproperlyConfigured as error:
            messages.append(checks.Error(str(error), id="mysqlpool.E002"))
        if "CONN_MAX_AGE" in database and database["CONN_MAX_AGE"] is None:
            messages.append(checks.Warning(
                f"DATABASES[{alias!r}]['CONN_MAX_AGE'] is None: each thread keeps the connection "
                "it checks out until it ends, so the pool bounds how many threads can hold one "
                "instead of sharing connections between requests.",
                hint="Set CONN_MAX_AGE to 0 (the default): the pool keeps connections open between "
                     "requests without tying them to a thread.",
                id="mysqlpool.W001",
            ))
    return messages


@checks.register(checks.Tags.database)  # run with --database (and by migrate): they connect
def check_server(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W002: max_lifetime at or above wait_timeout; W003: the bound beyond max_connections."""
    from django.db import connections

    messages: list[checks.CheckMessage] = []
    for alias in pooled_aliases():
        if databases is None or alias not in databases:
            continue
        try:
            pool_cls = conf.pool_class()
            per_alias = (settings.DATABASES[alias].get("OPTIONS") or {}).get("pool")
            arguments, options = conf.split_arguments(pool_cls, conf.pool_arguments(alias, per_alias), alias)
        except ImproperlyConfigured:
            continue  # reported by check_settings
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT @@SESSION.wait_timeout, @@GLOBAL.max_connections")
            wait_timeout, max_connections = cursor.fetchone()
        connections[alias].close()
        if options.max_lifetime is not None and options.max_lifetime >= wait_timeout:
            messages.append(checks.Warning(
                f"database alias {alias!r}: max_lifetime is {options.max_lifetime:g} s, at or above the "
                f"server's wait_timeout of {wait_timeout} s: the server closes idle connections before "
                "the pool retires them (they are found and replaced at checkout, at a round trip's cost).",
                hint="Set max_lifetime (MYSQLPOOL_ARGUMENTS or OPTIONS['pool']) below wait_timeout.",
                id="mysqlpool.W002",
            ))
        processes = getattr(settings, "MYSQLPOOL_PROCESSES", 1)
        overflow = arguments.get("max_overflow", 10)
        if overflow == -1:
            continue
        bound = (arguments.get("pool_size", 5) + overflow) * processes
        if bound > max_connections:
            messages.append(checks.Warning(
                f"database alias {alias!r}: {processes} process(es) x (pool_size + max_overflow = "
                f"{bound // processes}) = {bound} connections, more than the server's "
                f"max_connections of {max_connections}.",
                hint="Lower pool_size or max_overflow, raise max_connections, or put a proxy "
                     "(ProxySQL, MaxScale) in front of the server; MYSQLPOOL_PROCESSES says how "
                     "many worker processes share the server.",
                id="mysqlpool.W003",
            ))
    return messages
