"""Speed and bounds of the pooled engine against the stock engine and the best-known peer.

    bash benchmarks/run.sh [--quick] [--skip-http]

Runs, in one invocation and interleaved so that machine noise hits every
engine alike:

- cycle (twice when this process may pin itself and a local server to
  CPUs: client and server on the same CPU, then on separate CPUs; see
  benchmarks/pinning.py): one thread repeating what a request does to the database
  (ensure_connection(), SELECT 1 through a Django cursor, then Django's
  request-end close_if_unusable_or_obsolete(); for the pools also ended by
  an explicit close(), as pool:close and peer:close): median microseconds per cycle,
  min..max over blocks, ratio to the persistent connection (and the median
  of each round's own ratio), and statements per cycle seen by the server
  (deltas of its Questions counter);
- storm: 1,000 threads each doing 10 cycles, released together: errors by
  type, peak server connections sampled from a separate connection,
  throughput;
- http: a small Django site (benchmarks/benchsite) under gunicorn (gthread,
  2 workers x 16 threads) loaded by wrk at 64 and 256 connections on a
  one-row ORM get() view: req/s and its ratio to persistent, p50/p99,
  non-2xx responses, peak server connections (benchmarks/http_load.py).

Engines: stock (CONN_MAX_AGE=0), persistent (CONN_MAX_AGE=None), pool
(django_mysqlpool) and peer (django-db-connection-pool). Pools are 10+10.
Prints tables and writes benchmarks/results/bench.json with every repetition.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

from benchmarks import pinning  # noqa: E402
from tests.server import ServerAddress  # noqa: E402

DATABASE = "mysqlpool_bench"
POOL_SIZE, MAX_OVERFLOW = 10, 10
ENGINES = ("stock", "persistent", "pool", "peer")
# The cycle measure also ends cycles with an explicit close() on the pools.
CYCLES = ENGINES + ("pool:close", "peer:close")


def engine_user(engine: str, measure: str = "") -> str:
    """Each engine (and measure) logs in as a user of its own, so server counts tell them apart.

    The HTTP measure's users differ from the in-process ones: this process's
    own pools keep their idle connections while gunicorn runs.
    """
    return f"bench_{measure}{engine}"


def database_settings(address: ServerAddress, measure: str = "") -> dict:
    def common(engine):
        return {
            "HOST": address.host, "PORT": str(address.port),
            "USER": engine_user(engine, measure), "PASSWORD": "bench", "NAME": DATABASE,
        }

    return {
        "stock": {"ENGINE": "django.db.backends.mysql", "CONN_MAX_AGE": 0, **common("stock")},
        "persistent": {"ENGINE": "django.db.backends.mysql", "CONN_MAX_AGE": None,
                       **common("persistent")},
        "pool": {"ENGINE": "django_mysqlpool.backends.mysqlpool", **common("pool")},
        "peer": {
            "ENGINE": "dj_db_conn_pool.backends.mysql", **common("peer"),
            "POOL_OPTIONS": {"POOL_SIZE": POOL_SIZE, "MAX_OVERFLOW": MAX_OVERFLOW, "RECYCLE": 3600},
        },
    }


def create_database_and_users(address: ServerAddress) -> None:
    admin = address.connect()
    cursor = admin.cursor()
    cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
    for engine in ENGINES:
        for measure in ("", "http_"):
            user = engine_user(engine, measure)
            cursor.execute(f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY 'bench'")
            cursor.execute(f"GRANT ALL ON `{DATABASE}`.* TO '{user}'@'%'")
    admin.close()


def server_connections(cursor, engine: str, measure: str = "") -> int:
    cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s",
                   [engine_user(engine, measure)])
    return cursor.fetchone()[0]


def configure(address: ServerAddress) -> None:
    create_database_and_users(address)
    engines = database_settings(address)
    settings.configure(
        DATABASES={"default": engines["stock"], **engines},
        MYSQLPOOL_ARGUMENTS={"pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW, "timeout": 30},
        USE_TZ=True,
    )
    django.setup()


def questions(admin) -> int:
    cursor = admin.cursor()
    cursor.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
    return int(cursor.fetchone()[1])


def cycle_block(alias: str, cycles: int) -> float:
    """Seconds for cycles request-like cycles on alias in this thread.

    alias may end in ":close": each cycle then ends with connection.close()
    (what worker threads, management commands and @auto_close_db do)
    instead of the request-end close_if_unusable_or_obsolete().
    """
    from django.db import connections

    engine, _, ending = alias.partition(":")
    wrapper = connections[engine]
    end = wrapper.close if ending == "close" else wrapper.close_if_unusable_or_obsolete
    started = time.perf_counter()
    for _ in range(cycles):
        wrapper.ensure_connection()
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        end()
    return time.perf_counter() - started


def measure_cycle(address: ServerAddress, blocks: int, cycles: int) -> dict:
    """Blocks of cycles per engine, in rounds: every round runs each engine once, in a shuffled order.

    This machine's noise comes in bursts of a second or so; short blocks,
    many rounds and a fresh order each round spread it over all engines
    alike. Next to the ratio of medians, the median of each round's own
    ratio to persistent shows how much of a difference noise could explain.
    """
    admin = address.connect()
    results = {engine: {"block_us": [], "statements_per_cycle": []} for engine in CYCLES}
    order = random.Random(6)  # the same sequence of orders on every run
    for engine in CYCLES:  # warm up: pools filled, sessions set up
        cycle_block(engine, 50)
    for _ in range(blocks):
        engines = list(CYCLES)
        order.shuffle(engines)
        for engine in engines:
            before = questions(admin)
            seconds = cycle_block(engine, cycles)
            after = questions(admin)
            results[engine]["block_us"].append(seconds / cycles * 1e6)
            # minus the SHOW GLOBAL STATUS itself
            results[engine]["statements_per_cycle"].append((after - before - 1) / cycles)
    admin.close()
    floor = statistics.median(results["persistent"]["block_us"])
    for engine, result in results.items():
        result["median_us"] = statistics.median(result["block_us"])
        result["min_us"], result["max_us"] = min(result["block_us"]), max(result["block_us"])
        result["ratio_to_persistent"] = result["median_us"] / floor
        result["median_round_ratio"] = statistics.median(
            mine / theirs
            for mine, theirs in zip(result["block_us"], results["persistent"]["block_us"])
        )
        result["statements"] = statistics.median(result["statements_per_cycle"])
    return results


def measure_storm(address: ServerAddress, engine: str, threads: int, cycles: int) -> dict:
    from django.db import connections

    errors: dict[str, int] = {}
    peak = 0
    done = threading.Event()
    start = threading.Barrier(threads + 1, timeout=120)

    def sample():
        nonlocal peak
        admin = address.connect()
        cursor = admin.cursor()
        while not done.is_set():
            peak = max(peak, server_connections(cursor, engine))
            time.sleep(0.002)
        admin.close()

    def work():
        start.wait()
        wrapper = connections[engine]
        for _ in range(cycles):
            try:
                wrapper.ensure_connection()
                with wrapper.cursor() as cursor:
                    cursor.execute("SELECT 1")
                    cursor.fetchone()
            except Exception as error:  # counted by type: that is the measurement
                name = f"{type(error).__module__}.{type(error).__name__}"
                errors[name] = errors.get(name, 0) + 1
            finally:
                try:
                    wrapper.close()
                except Exception as error:
                    name = f"close: {type(error).__name__}"
                    errors[name] = errors.get(name, 0) + 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join(300)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join(10)
    stuck = sum(worker.is_alive() for worker in workers)
    return {
        "engine": engine, "threads": threads, "cycles_per_thread": cycles,
        "errors": errors, "error_count": sum(errors.values()), "stuck_threads": stuck,
        "peak_server_connections": peak, "seconds": elapsed,
        "cycles_per_second": threads * cycles / elapsed,
    }


def print_cycle(results: dict, pinning_mode: str) -> None:
    print(f"\ncycle: one thread, ensure_connection + SELECT 1 + request end, or close() "
          f"(:close) ({pinning_mode})")
    print(f"{'engine':<12} {'median us':>10} {'min..max us':>16} {'x persistent':>13} "
          f"{'round ratio':>12} {'statements':>11}")
    for engine in CYCLES:
        r = results[engine]
        print(f"{engine:<12} {r['median_us']:>10.1f} {r['min_us']:>7.1f}..{r['max_us']:<8.1f} "
              f"{r['ratio_to_persistent']:>13.2f} {r['median_round_ratio']:>12.2f} "
              f"{r['statements']:>11.2f}")


def print_storm(results: list[dict]) -> None:
    print("\nstorm: threads released together, each doing cycles; pools 10+10")
    print(f"{'engine':<12} {'threads':>7} {'errors':>7} {'peak conns':>10} {'cycles/s':>9}  error types")
    for r in results:
        types = ", ".join(f"{k.rsplit('.', 1)[-1]} x{v}" for k, v in r["errors"].items()) or "-"
        print(f"{r['engine']:<12} {r['threads']:>7} {r['error_count']:>7} "
              f"{r['peak_server_connections']:>10} {r['cycles_per_second']:>9.0f}  {types}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--skip-http", action="store_true", help="no gunicorn/wrk measure")
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "bench.json"))
    options = parser.parse_args()
    address = ServerAddress.from_environment()
    if address is None:
        print("Set MYSQL_HOST (bash benchmarks/run.sh starts a private MariaDB).", file=sys.stderr)
        return 2
    configure(address)
    report = {
        "python": platform.python_version(), "django": django.__version__,
        "load_average_before": os.getloadavg(),
    }
    blocks, cycles = (8, 250) if options.quick else (40, 500)
    admin = address.connect()
    cannot_pin = pinning.why_not(admin)
    if cannot_pin:
        report["cycle"] = measure_cycle(address, blocks, cycles)
        print_cycle(report["cycle"], f"not pinned: {cannot_pin}")
    else:
        report["cycle_by_pinning"] = {}
        for mode in pinning.MODES:
            with pinning.pinned(admin, mode):
                report["cycle_by_pinning"][mode] = measure_cycle(address, blocks, cycles)
            print_cycle(report["cycle_by_pinning"][mode], f"client and server on {mode}")
    admin.close()
    storm_threads = 200 if options.quick else 1000
    report["storm"] = [measure_storm(address, engine, storm_threads, 10) for engine in ("pool", "peer")]
    print_storm(report["storm"])
    if not options.skip_http:
        from benchmarks import http_load

        report["http"] = http_load.measure(address, DATABASE, quick=options.quick)
        http_load.print_table(report["http"])
    report["load_average_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(options.json), exist_ok=True)
    with open(options.json, "w") as output:
        json.dump(report, output, indent=2)
    print(f"\nJSON: {os.path.relpath(options.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
