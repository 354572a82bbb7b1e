"""Load shedding under a storm: max_waiting against an unbounded queue of waiting checkouts.

    python -m tests.server -- .venv/bin/python benchmarks/shedding.py [THREADS]

THREADS threads (default 1,000) are released together, each doing 10
cycles (ensure_connection, SELECT 1, close()) on a pool of 10+10 with a
checkout timeout of 5 s: with no max_waiting, and with max_waiting = 5, in
two rounds of alternating order (the first storm of a process also warms
it up). For each: errors by type, the p50/p99/max of the cycles that
succeeded, throughput, and the pool's get_stats() at the end. Prints a
table and writes benchmarks/results/shedding.json.

It also measures how fairly waiting checkouts are served: the p50/p99/max
of the checkout's wait (the ensure_connection() that starts each cycle),
and how often a checkout was overtaken, that is how many checkouts that
began after it got their connection before it did. Some overtaking is
noise (1,000 threads share one interpreter lock between the clock read
and the pool's queue); a queue that is not first-come, first-served shows
as checkouts overtaken hundreds of times.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

from tests.server import ServerAddress  # noqa: E402

DATABASE = "mysqlpool_shedding"
CYCLES = 10
WAYS = {"queue (no max_waiting)": "queue", "max_waiting = 5": "shed"}
ROUNDS = 2


def configure(address: ServerAddress) -> None:
    admin = address.connect()
    admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
    admin.cursor().execute("SET GLOBAL max_connections = 2000")
    for alias in WAYS.values():  # a login per pool, so that the server counts each pool's connections
        admin.cursor().execute(f"CREATE USER IF NOT EXISTS 'shedding_{alias}'@'%' IDENTIFIED BY 'shedding'")
        admin.cursor().execute(f"GRANT ALL ON `{DATABASE}`.* TO 'shedding_{alias}'@'%'")
    admin.close()
    common = {"ENGINE": "django_mysqlpool.backends.mysqlpool", "HOST": address.host, "PORT": str(address.port),
              "USER": address.user, "PASSWORD": address.password, "NAME": DATABASE}
    login = {"PASSWORD": "shedding"}
    settings.configure(
        DATABASES={
            "default": common,
            "queue": {**common, **login, "USER": "shedding_queue", "OPTIONS": {"pool": {"max_waiting": None}}},
            "shed": {**common, **login, "USER": "shedding_shed", "OPTIONS": {"pool": {"max_waiting": 5}}},
        },
        MYSQLPOOL_ARGUMENTS={"pool_size": 10, "max_overflow": 10, "timeout": 5},
        USE_TZ=True,
    )
    django.setup()


def storm(address: ServerAddress, alias: str, threads: int) -> dict:
    from django.db import connections

    from django_mysqlpool import pop_stats

    latencies: list[float] = []
    checkouts: list[tuple[float, float]] = []  # (began, got it) of each checkout that succeeded
    errors: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(threads + 1, timeout=120)
    peak = 0
    done = threading.Event()

    def sample():
        # The storm's connections, counted by the server from a separate connection.
        nonlocal peak
        admin = address.connect()
        cursor = admin.cursor()
        while not done.is_set():
            cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s",
                           [f"shedding_{alias}"])
            peak = max(peak, cursor.fetchone()[0])
            time.sleep(0.002)
        admin.close()

    def work():
        start.wait()
        wrapper = connections[alias]
        for _ in range(CYCLES):
            began = time.perf_counter()
            try:
                wrapper.ensure_connection()
                got = time.perf_counter()
                with wrapper.cursor() as cursor:
                    cursor.execute("SELECT 1")
                    cursor.fetchone()
                with lock:
                    latencies.append(time.perf_counter() - began)
                    checkouts.append((began, got))
            except Exception as error:  # counted by type: that is the measurement
                with lock:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
            finally:
                wrapper.close()

    pop_stats(alias)
    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join(300)
    elapsed = time.perf_counter() - began
    done.set()
    sampler.join(30)
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    waits = sorted(got - began for began, got in checkouts)
    overtaken = sorted(overtakes(checkouts))

    def ms(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")

    return {
        "wait_p50_ms": ms(waits, 0.5), "wait_p99_ms": ms(waits, 0.99), "wait_max_ms": ms(waits, 1.0),
        "overtaken_share": sum(1 for count in overtaken if count) / len(overtaken) if overtaken else None,
        "overtaken_p99": overtaken[int(0.99 * (len(overtaken) - 1))] if overtaken else None,
        "overtaken_max": overtaken[-1] if overtaken else None,
        "peak_connections": peak, "succeeded": len(latencies), "errors": errors, "stuck_threads": sum(w.is_alive() for w in workers),
        "p50_ms": quantile(0.5), "p99_ms": quantile(0.99), "max_ms": latencies[-1] * 1000 if latencies else None,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else None,
        "cycles_per_second": len(latencies) / elapsed, "seconds": elapsed,
        "stats": pop_stats(alias).get(alias),
    }


def overtakes(checkouts: list[tuple[float, float]]) -> list[int]:
    """For each checkout, how many checkouts that began after it got a connection before it did.

    Counted with a Fenwick tree over the ranks of the times they got one,
    walking from the latest beginning back: O(n log n) for 10,000 checkouts.
    """
    ranks = {got: rank for rank, got in enumerate(sorted(got for _, got in checkouts), start=1)}
    tree = [0] * (len(ranks) + 1)
    counts = []
    for _, got in sorted(checkouts, reverse=True):
        rank = ranks[got]
        earlier, index = 0, rank - 1
        while index > 0:  # how many later beginnings got theirs before this one
            earlier += tree[index]
            index -= index & -index
        counts.append(earlier)
        while rank < len(tree):
            tree[rank] += 1
            rank += rank & -rank
    return counts


def main() -> int:
    address = ServerAddress.from_environment()
    if address is None:
        print("MYSQL_HOST is not set: run me through python -m tests.server --", file=sys.stderr)
        return 2
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    configure(address)
    storm(address, "queue", threads)  # warm-up: threads, pools, connections
    ways = list(WAYS.items())
    results = {}
    for round_number in range(ROUNDS):
        for name, alias in (ways if round_number % 2 else ways[::-1]):
            results[f"{name}, round {round_number + 1}"] = storm(address, alias, threads)
    print(f"storm: {threads} threads x {CYCLES} cycles, pool 10+10, timeout 5 s")
    print(f"{'way':<32} {'ok':>6} {'errors':>22} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'cycles/s':>9}")
    for name, result in results.items():
        errors = ", ".join(f"{kind} {count}" for kind, count in result["errors"].items()) or "0"
        print(f"{name:<32} {result['succeeded']:>6} {errors:>22} {result['p50_ms']:>8.1f} "
              f"{result['p99_ms']:>8.1f} {result['max_ms'] or 0:>8.1f} {result['cycles_per_second']:>9.0f}")
    print("\ncheckout wait and order (overtaken: by checkouts that began later)")
    print(f"{'way':<32} {'wait p50':>9} {'wait p99':>9} {'wait max':>9} {'overtaken':>10} "
          f"{'p99 times':>10} {'max times':>10} {'peak conns':>10}")
    for name, result in results.items():
        print(f"{name:<32} {result['wait_p50_ms']:>9.1f} {result['wait_p99_ms']:>9.1f} "
              f"{result['wait_max_ms']:>9.1f} {result['overtaken_share']:>10.1%} "
              f"{result['overtaken_p99']:>10} {result['overtaken_max']:>10} {result['peak_connections']:>10}")
    path = os.path.join(ROOT, "benchmarks", "results", "shedding.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as output:
        json.dump(results, output, indent=2)
    print(f"\nJSON: {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
