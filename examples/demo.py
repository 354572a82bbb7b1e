"""See the pool at work: many threads, few physical connections, a clear error when full.

    bash scripts/demo.sh          (starts a private MariaDB unless MYSQL_HOST is set)

A small Django program on the engine django_mysqlpool.backends.mysqlpool:
120 threads, each decorated with auto_close_db, run queries through Django's
ORM cursor; the server's own process list, sampled from a separate
connection, shows how many physical connections exist. The same work on
Django's stock engine follows for comparison, then an exhausted pool.
"""

import os
import sys
import threading
import time

import django
from django.conf import settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.server import ServerAddress  # noqa: E402

DATABASE = "mysqlpool_demo"
THREADS = 120
POOL = {"pool_size": 4, "max_overflow": 4, "timeout": 10}


def configure(address: ServerAddress) -> None:
    common = {
        "HOST": address.host,
        "PORT": str(address.port),
        "USER": address.user,
        "PASSWORD": address.password,
        "NAME": DATABASE,
    }
    settings.configure(
        DATABASES={
            "default": {"ENGINE": "django_mysqlpool.backends.mysqlpool", **common},
            "stock": {"ENGINE": "django.db.backends.mysql", **common},
        },
        MYSQLPOOL_BACKEND="QueuePool",
        MYSQLPOOL_ARGUMENTS=POOL,
        USE_TZ=True,
    )
    django.setup()


def server_connection_count(admin) -> int:
    cursor = admin.cursor()
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
        "WHERE DB = %s AND ID <> CONNECTION_ID()",
        [DATABASE],
    )
    return cursor.fetchone()[0]


def run_threads(alias: str, admin) -> dict:
    from django.db import connections

    from django_mysqlpool import auto_close_db

    ids, errors, peak = set(), [], 0
    done = threading.Event()

    @auto_close_db
    def request():
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT CONNECTION_ID(), SLEEP(0.02)")
                ids.add(cursor.fetchone()[0])
        except Exception as error:
            errors.append(error)

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server_connection_count(admin))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    threads = [threading.Thread(target=request) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - started
    done.set()
    sampler.join(10)
    time.sleep(0.2)  # let the server forget connections that just closed
    return {
        "ids": ids,
        "errors": errors,
        "peak": peak,
        "left": server_connection_count(admin),
        "elapsed": elapsed,
    }


def show_exhaustion() -> str:
    from django.db import connections
    from django.test import override_settings

    from django_mysqlpool import close_pool

    close_pool()
    holding, release = threading.Barrier(3, timeout=10), threading.Event()

    def hold():
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        holding.wait()
        release.wait(10)
        connections["default"].close()

    with override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 1, "max_overflow": 1, "timeout": 0.5}):
        holders = [threading.Thread(target=hold) for _ in range(2)]
        for thread in holders:
            thread.start()
        holding.wait()
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT 1")
            message = "(no error: the pool was not full)"
        except Exception as error:
            message = f"{type(error).__module__}.{type(error).__name__}: {error}"
        finally:
            release.set()
            for thread in holders:
                thread.join(10)
    return message


def main() -> int:
    address = ServerAddress.from_environment()
    if address is None:
        print("Set MYSQL_HOST (or run: bash scripts/demo.sh, which starts a private MariaDB).")
        return 2
    admin = address.connect()
    admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
    configure(address)
    from django_mysqlpool import close_pool

    bound = POOL["pool_size"] + POOL["max_overflow"]
    print(f"{THREADS} threads, each running one query, on {address.host}:{address.port}\n")
    print(f"{'engine':<34} {'distinct CONNECTION_ID()s':>26} {'peak on server':>15} "
          f"{'open after':>11} {'errors':>7} {'seconds':>8}")
    for alias, label in (("default", f"django_mysqlpool (pool {POOL['pool_size']}+{POOL['max_overflow']})"),
                         ("stock", "django.db.backends.mysql (stock)")):
        close_pool()  # each row starts from no open connection
        result = run_threads(alias, admin)
        print(f"{label:<34} {len(result['ids']):>26} {result['peak']:>15} {result['left']:>11} "
              f"{len(result['errors']):>7} {result['elapsed']:>8.2f}")
    print(f"\nThe pool served {THREADS} threads with at most {bound} physical connections and "
          "kept them open for the next requests (those beyond pool_size close once idle for "
          "idle_timeout); the stock engine opened one per thread and closed it.")
    print("\nWhen every connection is in use and none comes back within the timeout:")
    print("  " + show_exhaustion())
    admin.cursor().execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
    admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
