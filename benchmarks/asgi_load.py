"""The ASGI measure: the benchmark site under uvicorn, loaded by wrk, next to the WSGI persistent figure.

    bash benchmarks/run.sh is not needed; after it has installed the peer once:
    python -m tests.server -- .venv/bin/python benchmarks/asgi_load.py [--quick]

Django tells ASGI sites to keep CONN_MAX_AGE = 0: each request runs its
synchronous parts in a thread of its own (asgiref's ThreadSensitiveContext),
so a connection kept across requests would belong to a thread that is gone.
The stock engine then connects on every request; a pool should not.

For each engine (stock with CONN_MAX_AGE = 0, pool, peer) and each wrk
concurrency (64, 256), uvicorn (2 workers) serves benchmarks/benchsite and
wrk loads one of two views: ``async``, an async view calling the async ORM
(``await Item.objects.aget(pk=1)``), and ``sync``, the one-row ORM get() of
the WSGI measure. In the same interleaved rounds (a fresh order each round,
as benchmarks/http_load.py does), gunicorn serves the sync view on the
persistent engine: the WSGI persistent figure the ASGI ones are compared
to. A separate connection samples each engine user's server connections
(the peak) and counts the connections the server accepted meanwhile.
Prints a table and writes benchmarks/results/asgi.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import http_load  # noqa: E402
from tests.server import ServerAddress  # noqa: E402

CONCURRENCIES = (64, 256)
ENGINES = ("stock", "pool", "peer")
VIEWS = {"async": "/async", "sync": "/"}
WORKERS = 2
REFERENCE = "wsgi persistent"


def uvicorn(port: int) -> list[str]:
    """The ASGI server of this measure, on port."""
    return [sys.executable, "-m", "uvicorn", "--workers", str(WORKERS), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log", "--backlog", "2048",
            "benchmarks.benchsite.asgi:application"]


def measure(address, database: str, quick: bool = False) -> dict:
    """Every engine, view and concurrency, and the WSGI reference, rounds interleaved."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found: apt-get install wrk (benchmarks/run.sh does)")
    http_load.prepare_table(address, database)
    rounds, seconds = (1, 3) if quick else (3, 6)
    arms = [(engine, view) for engine in ENGINES for view in VIEWS] + [(REFERENCE, "sync")]
    runs: dict = {f"{engine}/{view}@{c}": [] for engine, view in arms for c in CONCURRENCIES}
    for _ in range(rounds):
        for concurrency in CONCURRENCIES:
            for engine, view in random.sample(arms, len(arms)):  # a fresh order each round
                if engine == REFERENCE:
                    run = http_load.one_run(address, "persistent", concurrency, seconds)
                else:
                    run = http_load.one_run(address, engine, concurrency, seconds, uvicorn, VIEWS[view])
                runs[f"{engine}/{view}@{concurrency}"].append(run)
    summary = {}
    for key, repetitions in runs.items():
        arm, concurrency = key.split("@")
        engine, view = arm.split("/")

        def median_rps(of: str) -> float:
            return statistics.median(r["requests_per_second"] for r in runs[f"{of}@{concurrency}"])

        rps = median_rps(arm)
        summary[key] = {
            "engine": engine, "view": view, "connections": int(concurrency),
            "requests_per_second": rps,
            "ratio_to_stock": rps / median_rps(f"stock/{view}") if engine != REFERENCE else None,
            "ratio_to_wsgi_persistent": rps / median_rps(f"{REFERENCE}/sync"),
            "p50_ms": statistics.median(r.get("p50_ms", 0) for r in repetitions),
            "p99_ms": statistics.median(r.get("p99_ms", 0) for r in repetitions),
            "errors": sum(r["non_2xx"] + r["socket_errors"] for r in repetitions),
            "peak_server_connections": max(r["peak_server_connections"] for r in repetitions),
            "connections_opened": statistics.median(r["connections_opened"] for r in repetitions),
            "rps_spread": [min(r["requests_per_second"] for r in repetitions),
                           max(r["requests_per_second"] for r in repetitions)],
            "repetitions": repetitions,
        }
    return summary


def print_table(summary: dict) -> None:
    print(f"\nasgi: uvicorn {WORKERS} workers (and, for reference, gunicorn gthread {http_load.WORKERS} "
          f"workers x {http_load.THREADS} threads on the persistent engine), wrk, one-row ORM get()")
    print(f"{'engine/view':<22} {'conns':>5} {'req/s':>7} {'min..max':>13} {'x stock':>8} {'x wsgi pers':>11} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'peak conns':>10} {'opened':>7}")
    for row in sorted(summary.values(), key=lambda r: (r["connections"], r["view"], r["engine"])):
        spread = "{:.0f}..{:.0f}".format(*row["rps_spread"])
        to_stock = f"{row['ratio_to_stock']:.2f}" if row["ratio_to_stock"] is not None else "-"
        print(f"{row['engine'] + '/' + row['view']:<22} {row['connections']:>5} "
              f"{row['requests_per_second']:>7.0f} {spread:>13} {to_stock:>8} "
              f"{row['ratio_to_wsgi_persistent']:>11.2f} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
              f"{row['errors']:>6} {row['peak_server_connections']:>10} {row['connections_opened']:>7.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 3 s runs (a smoke run)")
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "asgi.json"))
    options = parser.parse_args()
    address = ServerAddress.from_environment()
    if address is None:
        print("MYSQL_HOST is not set: run me through python -m tests.server --", file=sys.stderr)
        return 2
    from benchmarks.bench import DATABASE, create_database_and_users

    create_database_and_users(address)
    summary = measure(address, DATABASE, quick=options.quick)
    print_table(summary)
    os.makedirs(os.path.dirname(options.json), exist_ok=True)
    with open(options.json, "w") as output:
        json.dump({"load_average_after": os.getloadavg(), "summary": summary}, output, indent=2)
    print(f"\nJSON: {os.path.relpath(options.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
