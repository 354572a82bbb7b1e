"""The engine under gevent on PyMySQL, as in gunicorn's gevent worker; run by test_gevent.py.

    python tests/sites/gevent_app.py DATABASE [--greenlets 500] [--pool-size 5]
        [--max-overflow 5] [--ping-after-idle SECONDS|never]
        [--kill-then-rerun N] [--no-auto-close]

Monkey-patches everything first, then installs PyMySQL as MySQLdb, then
configures Django. Runs GREENLETS greenlets at once, each decorated with
auto_close_db and doing a few queries (SELECT CONNECTION_ID(), SLEEP(0.01))
through django.db.connection, while a sampler greenlet counts the server's
connections to DATABASE from a PyMySQL connection of its own. With
--kill-then-rerun, the server then KILLs every pooled connection and N more
greenlets run: the pool must replace the dead ones at checkout, unseen.
Everything is bounded: joinall() has a timeout, and the greenlets still
running then are counted and killed.

Prints one JSON line: errors (by type), peak server connections, greenlets
not finished, distinct connection ids, physical connects and invalidations
seen by the pool, whether each greenlet had a Django connection wrapper of
its own, and the elapsed seconds.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import collections  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.local  # noqa: E402
import pymysql  # noqa: E402

pymysql.install_as_MySQLdb()

import django  # noqa: E402
from django.conf import settings  # noqa: E402

QUERIES_PER_GREENLET = 3
QUERY = "SELECT CONNECTION_ID(), SLEEP(0.01)"
JOIN_TIMEOUT = 60.0  # seconds for every greenlet of a storm to end; 500 need about 2
SAMPLE_EVERY = 0.002


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database")
    parser.add_argument("--greenlets", type=int, default=500)
    parser.add_argument("--pool-size", type=int, default=5)
    parser.add_argument("--max-overflow", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=10.0, help="the pool's checkout timeout")
    parser.add_argument("--ping-after-idle", default=None,
                        help="the pool's ping_after_idle in seconds, or 'never' (default: the package's)")
    parser.add_argument("--kill-then-rerun", type=int, default=0, metavar="N",
                        help="then KILL every pooled connection and run N more greenlets")
    parser.add_argument("--no-auto-close", action="store_true",
                        help="leave out @auto_close_db (to watch the test fail)")
    return parser.parse_args()


def pool_arguments(arguments):
    pool = {
        "pool_size": arguments.pool_size,
        "max_overflow": arguments.max_overflow,
        "timeout": arguments.timeout,
    }
    if arguments.ping_after_idle is not None:
        never = arguments.ping_after_idle == "never"
        pool["ping_after_idle"] = None if never else float(arguments.ping_after_idle)
    return pool


def admin_connect():
    return pymysql.connect(
        host=os.environ["MYSQL_HOST"], port=int(os.environ["MYSQL_PORT"]),
        user=os.environ["MYSQL_USER"], password=os.environ["MYSQL_PASSWORD"],
        autocommit=True, connect_timeout=10, read_timeout=10, write_timeout=10,
    )


def server_connection_ids(admin, database):
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            [database],
        )
        return sorted(row[0] for row in cursor.fetchall())


def server_connection_count(admin, database):
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE DB = %s AND ID <> CONNECTION_ID()",
            [database],
        )
        return cursor.fetchone()[0]


def main():
    arguments = parse_arguments()
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django_mysqlpool.backends.mysqlpool",
            "HOST": os.environ["MYSQL_HOST"], "PORT": os.environ["MYSQL_PORT"],
            "USER": os.environ["MYSQL_USER"], "PASSWORD": os.environ["MYSQL_PASSWORD"],
            "NAME": arguments.database,
        }},
        MYSQLPOOL_ARGUMENTS=pool_arguments(arguments),
        USE_TZ=True,
    )
    django.setup()

    from django.db import connection, connections
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    from django_mysqlpool import auto_close_db
    from django_mysqlpool import registry as pool_registry

    # What the pool did, from SQLAlchemy's own events (class-level listeners
    # reach the pool the engine creates at its first connection).
    pool_events = collections.Counter()
    for name in ("connect", "close", "invalidate"):
        event.listen(Pool, name, lambda *args, _name=name: pool_events.update([_name]))

    facts = collections.Counter()
    in_use = {}  # connection id -> the greenlet querying on it now
    serials = itertools.count(1)

    def query_on_own_connection(me, ids_seen):
        wrapper = connections["default"]
        # Tag the wrapper with the greenlet that first saw it. No strong
        # reference is kept, so garbage collection works as in real life.
        if getattr(wrapper, "_gevent_app_owner", None) is None:
            wrapper._gevent_app_owner = me
            wrapper._gevent_app_serial = next(serials)
        elif wrapper._gevent_app_owner != me:
            facts["wrapper_shared"] += 1
        ids = set()
        for _ in range(QUERIES_PER_GREENLET):
            if connections["default"] is not wrapper:
                facts["wrapper_changed_within_greenlet"] += 1
            with connection.cursor() as cursor:
                cursor.execute(QUERY)
                connection_id = cursor.fetchone()[0]
            holder = in_use.setdefault(connection_id, me)
            if holder != me:
                facts["connection_used_by_two_greenlets_at_once"] += 1
            ids.add(connection_id)
        for connection_id in ids:
            if in_use.get(connection_id) == me:
                del in_use[connection_id]
        ids_seen.update(ids)
        if len(ids) != 1:
            facts["greenlet_saw_several_connection_ids"] += 1

    work = query_on_own_connection if arguments.no_auto_close else auto_close_db(query_on_own_connection)

    def storm(count):
        """count greenlets at once; (errors, ids seen, greenlets not finished, seconds)."""
        errors = collections.Counter()
        ids_seen = set()

        def run():
            try:
                work(id(gevent.getcurrent()), ids_seen)
                facts["greenlets_done"] += 1
            except Exception as error:
                errors[f"{type(error).__module__}.{type(error).__name__}: {str(error)[:160]}"] += 1

        started = time.monotonic()
        greenlets = [gevent.spawn(run) for _ in range(count)]
        gevent.joinall(greenlets, timeout=JOIN_TIMEOUT)
        elapsed = time.monotonic() - started
        unfinished = [greenlet for greenlet in greenlets if not greenlet.ready()]
        gevent.killall(unfinished, timeout=5)
        listed = [{"error": text, "count": n} for text, n in errors.most_common()]
        return listed, ids_seen, len(unfinished), elapsed

    admin = admin_connect()
    peak = {"server": 0, "checked_out": 0}
    stop_sampling = gevent.event.Event()

    def sample():
        while not stop_sampling.is_set():
            peak["server"] = max(peak["server"], server_connection_count(admin, arguments.database))
            for managed in pool_registry.pools():
                peak["checked_out"] = max(peak["checked_out"], managed.pool.checkedout())
            gevent.sleep(SAMPLE_EVERY)

    def open_in_pool():
        return pool_events["connect"] - pool_events["close"]

    def settled_server_count():
        # The server drops a closed connection a moment after the client.
        deadline = time.monotonic() + 5
        while True:
            count = server_connection_count(admin, arguments.database)
            if count == open_in_pool() or time.monotonic() > deadline:
                return count
            gevent.sleep(0.02)

    report = {
        "driver": connection.Database.__name__,
        "threading_local": f"{threading.local.__module__}.{threading.local.__name__}",
        "greenlet_local": threading.local is gevent.local.local,
        "greenlets": arguments.greenlets,
        "pool": pool_arguments(arguments),
        "auto_close_db": not arguments.no_auto_close,
        "server_connections_before": server_connection_count(admin, arguments.database),
    }
    sampler = gevent.spawn(sample)
    errors, ids, unfinished, elapsed = storm(arguments.greenlets)
    stop_sampling.set()
    sampler.join(timeout=5)
    sampler.kill(timeout=5)
    report.update({
        "errors": errors,
        "error_count": sum(error["count"] for error in errors),
        "greenlets_done": facts["greenlets_done"],
        "greenlets_not_finished": unfinished,
        "distinct_wrappers": next(serials) - 1,
        "wrapper_shared": facts["wrapper_shared"],
        "wrapper_changed_within_greenlet": facts["wrapper_changed_within_greenlet"],
        "connection_used_by_two_greenlets_at_once": facts["connection_used_by_two_greenlets_at_once"],
        "greenlet_saw_several_connection_ids": facts["greenlet_saw_several_connection_ids"],
        "distinct_connection_ids": len(ids),
        "pool_connects": pool_events["connect"],
        "pool_closes": pool_events["close"],
        "pool_invalidations": pool_events["invalidate"],
        "peak_server_connections": peak["server"],
        "peak_checked_out": peak["checked_out"],
        "checked_out_after": sum(m.pool.checkedout() for m in pool_registry.pools()),
        "server_connections_after": settled_server_count(),
        "sampler_error": repr(sampler.exception) if sampler.exception else None,
        "elapsed_seconds": round(elapsed, 3),
    })

    if arguments.kill_then_rerun:
        victims = server_connection_ids(admin, arguments.database)
        for victim in victims:
            with admin.cursor() as cursor:
                cursor.execute(f"KILL {victim}")
        deadline = time.monotonic() + 5
        while set(victims) & set(server_connection_ids(admin, arguments.database)):
            if time.monotonic() > deadline:
                break
            gevent.sleep(0.01)
        invalidations_before = pool_events["invalidate"]
        errors, ids, unfinished, elapsed = storm(arguments.kill_then_rerun)
        report["after_kill"] = {
            "killed": len(victims),
            "greenlets": arguments.kill_then_rerun,
            "errors": errors,
            "error_count": sum(error["count"] for error in errors),
            "greenlets_not_finished": unfinished,
            "replaced_at_checkout": pool_events["invalidate"] - invalidations_before,
            "killed_ids_seen": len(ids & set(victims)),
            "distinct_connection_ids": len(ids),
            "checked_out_after": sum(m.pool.checkedout() for m in pool_registry.pools()),
            "server_connections_after": settled_server_count(),
            "elapsed_seconds": round(elapsed, 3),
        }
    admin.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
