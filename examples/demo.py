"""See the pool's promise kept: a cheaper request, a cap on server connections, a clear error.

    bash scripts/demo.sh          (starts a private MariaDB unless MYSQL_HOST is set)

A small Django program with two aliases on one database: "pool" on the
engine django_mysqlpool.backends.mysqlpool and "stock" on Django's
django.db.backends.mysql, both with CONN_MAX_AGE = 0. It shows, in order:

1. one request cycle on each (what a request does to the database:
   connect if needed, SELECT 1, Django's end-of-request close), timed in
   interleaved rounds, with what the server counted per cycle (its
   Questions and Connections status counters, read from a separate
   connection);
2. 120 threads released at once on each engine, each holding its
   connection for a 20 ms query: the connections the server saw;
3. the error a full pool raises.
"""

import os
import statistics
import sys
import textwrap
import threading
import time

import django
from django.conf import settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# The benchmark's request cycle: ensure_connection(), SELECT 1 through a
# Django cursor, then Django's end-of-request close_if_unusable_or_obsolete().
from benchmarks.bench import cycle_block as request_cycles  # noqa: E402
from tests.server import ServerAddress  # noqa: E402

DATABASE = "mysqlpool_demo"
POOL = {"pool_size": 4, "max_overflow": 4, "timeout": 10}
ROUNDS, CYCLES = 8, 150  # per engine: ROUNDS blocks of CYCLES request cycles
THREADS = 120
JOIN_TIMEOUT = 60  # seconds: nothing here may hang


def say(text: str, indent: str = "   ") -> None:
    """Print a sentence wrapped for an 80-column terminal."""
    print(textwrap.fill(text, 80, initial_indent=indent, subsequent_indent=indent))


def configure(address: ServerAddress) -> None:
    common = {
        "HOST": address.host, "PORT": str(address.port), "USER": address.user,
        "PASSWORD": address.password, "NAME": DATABASE, "CONN_MAX_AGE": 0,
    }
    settings.configure(
        DATABASES={
            "default": {"ENGINE": "django_mysqlpool.backends.mysqlpool", **common},
            "stock": {"ENGINE": "django.db.backends.mysql", **common},
        },
        MYSQLPOOL_ARGUMENTS=POOL,
        USE_TZ=True,
    )
    django.setup()


def server_counters(admin) -> dict:
    """The server's own counts of statements received and connections accepted (one statement)."""
    cursor = admin.cursor()
    cursor.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Connections')")
    return {name: int(value) for name, value in cursor.fetchall()}


def measure_cycles(admin) -> dict:
    """Per engine: microseconds per cycle in each round, and the server's counts per cycle."""
    results = {alias: {"us": [], "statements": [], "connects": []} for alias in ("default", "stock")}
    request_cycles("default", 20)  # warm up: the pool's first connection and session setup
    request_cycles("stock", 20)
    for round_number in range(ROUNDS):
        # Alternate the order (A B, B A, ...): this machine's noise comes in bursts.
        order = ("default", "stock") if round_number % 2 == 0 else ("stock", "default")
        for alias in order:
            before = server_counters(admin)
            seconds = request_cycles(alias, CYCLES)
            after = server_counters(admin)
            result = results[alias]
            result["us"].append(seconds / CYCLES * 1e6)
            # Minus one: the SHOW GLOBAL STATUS that read the counters.
            result["statements"].append((after["Questions"] - before["Questions"] - 1) / CYCLES)
            result["connects"].append((after["Connections"] - before["Connections"]) / CYCLES)
    return results


def server_connection_count(admin) -> int:
    cursor = admin.cursor()
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
        [DATABASE],
    )
    return cursor.fetchone()[0]


def run_threads(alias: str, admin) -> dict:
    """THREADS threads at once, each one 20 ms query; what the server saw meanwhile."""
    from django.db import connections

    from django_mysqlpool import auto_close_db

    ids, errors, peak = set(), [], 0
    done = threading.Event()
    start = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)

    @auto_close_db
    def request():
        start.wait()
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT CONNECTION_ID(), SLEEP(0.02)")
                ids.add(cursor.fetchone()[0])
        except Exception as error:  # counted: an error is what this measures
            errors.append(error)

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server_connection_count(admin))
            time.sleep(0.002)

    opened_before = server_counters(admin)["Connections"]
    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=request) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    hung = sum(thread.is_alive() for thread in threads)
    done.set()
    sampler.join(JOIN_TIMEOUT)
    time.sleep(0.2)  # let the server forget connections that just closed
    return {
        "distinct": len(ids),
        "peak": peak,
        # Minus the sampler's own queries: none open a connection.
        "opened": server_counters(admin)["Connections"] - opened_before,
        "left": server_connection_count(admin),
        "errors": len(errors) + hung,
    }


def show_exhaustion() -> str:
    """The error a checkout meets when every connection stays out past the timeout."""
    from django.db import connections
    from django.test import override_settings

    from django_mysqlpool import close_pool

    close_pool()
    holding, release = threading.Barrier(3, timeout=JOIN_TIMEOUT), threading.Event()

    def hold():
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        holding.wait()
        release.wait(JOIN_TIMEOUT)
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
                thread.join(JOIN_TIMEOUT)
    return message


def print_cycles(results: dict) -> None:
    say(f"1. One request cycle (connect if needed, SELECT 1, Django's end-of-request close), "
        f"{ROUNDS} interleaved rounds of {CYCLES} cycles each; the server's counts per cycle:", "")
    print()
    print(f"   {'engine':<26} {'us per cycle':>12} {'(min..max)':>12} "
          f"{'statements':>11} {'connects':>9}")
    for alias, label in (("default", "django_mysqlpool"), ("stock", "django.db.backends.mysql")):
        result = results[alias]
        spread = f"({min(result['us']):.0f}..{max(result['us']):.0f})"
        print(f"   {label:<26} {statistics.median(result['us']):>12.0f} {spread:>12} "
              f"{statistics.median(result['statements']):>11.1f} "
              f"{statistics.median(result['connects']):>9.1f}")
    ratio = statistics.median(results["stock"]["us"]) / statistics.median(results["default"]["us"])
    print()
    say(f"Proves: a pooled request sends only its own statement and opens no connection; "
        f"the stock engine logs in and sets the session up every time ({ratio:.1f}x the time "
        "here; medians, on a machine other work may share).")
    print()


def print_bound(rows: list) -> None:
    bound = POOL["pool_size"] + POOL["max_overflow"]
    say(f"2. {THREADS} threads at once, each holding its connection for a 20 ms query "
        f"(pool_size={POOL['pool_size']}, max_overflow={POOL['max_overflow']}):", "")
    print()
    print(f"   {'engine':<26} {'used':>5} {'peak on server':>15} "
          f"{'opened':>7} {'open after':>11} {'errors':>7}")
    for label, result in rows:
        print(f"   {label:<26} {result['distinct']:>5} {result['peak']:>15} {result['opened']:>7} "
              f"{result['left']:>11} {result['errors']:>7}")
    print()
    say(f"Proves: however many threads ask, the server never sees more than {bound} "
        "connections from the pool; threads beyond them wait for a free one (up to "
        f"timeout={POOL['timeout']} s) instead of opening their own, and the {bound} stay "
        "open for the next requests.")
    print()


def main() -> int:
    address = ServerAddress.from_environment()
    if address is None:
        print("Set MYSQL_HOST (or run: bash scripts/demo.sh, which starts a private MariaDB).")
        return 2
    admin = address.connect()
    admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
    configure(address)
    from django_mysqlpool import close_pool

    try:
        print(f"django_mysqlpool against the server at {address.host}:{address.port}\n")
        print_cycles(measure_cycles(admin))
        rows = []
        for alias, label in (("default", "django_mysqlpool"), ("stock", "django.db.backends.mysql")):
            close_pool()  # each row starts with no open connection
            rows.append((label, run_threads(alias, admin)))
        print_bound(rows)
        say("3. A full pool (pool_size=1, max_overflow=1, timeout=0.5, both connections held):", "")
        print()
        say(show_exhaustion())
        print()
        say("Proves: a checkout that finds no free connection in time fails with an "
            "OperationalError naming the alias, the numbers and the way out.")
    finally:
        close_pool()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
