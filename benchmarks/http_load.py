"""The HTTP measure of bench.py: the benchmark site under gunicorn, loaded by wrk.

For each engine and each wrk concurrency, in interleaved rounds (engines in a
fresh order each round): gunicorn (gthread, 2 workers x 16 threads) serves
benchmarks/benchsite, wrk loads its one-row ORM get() view, and a separate
connection samples the engine user's server connections and counts the
connections the server accepted meanwhile.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONCURRENCIES = (64, 256)
ENGINES = ("stock", "persistent", "pool", "peer")
WORKERS, THREADS = 2, 16


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not listen on {port} within {timeout} s")


def prepare_table(address, database: str) -> None:
    admin = address.connect(database=database)
    cursor = admin.cursor()
    cursor.execute("CREATE TABLE IF NOT EXISTS bench_item (id INT PRIMARY KEY, name VARCHAR(50))")
    cursor.execute("REPLACE INTO bench_item VALUES (1, 'one row')")
    admin.close()


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _parse_wrk(output: str) -> dict:
    requests_per_second = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    latencies = {f"p{p}_ms": float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(output)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests_per_second": requests_per_second,
        **latencies,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
    }


def gunicorn(port: int) -> list[str]:
    """The WSGI server of this measure, on port."""
    return [sys.executable, "-m", "gunicorn", "-k", "gthread", "--workers", str(WORKERS),
            "--threads", str(THREADS), "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
            "--backlog", "2048", "benchmarks.benchsite.wsgi:application"]


def one_run(address, engine: str, connections: int, seconds: int,
             server_command: Callable[[int], list[str]] = gunicorn, path: str = "/") -> dict:
    from benchmarks.bench import server_connections

    port = _free_port()
    environment = {**os.environ, **address.environment(), "BENCH_ENGINE": engine,
                   "PYTHONPATH": ROOT, "DJANGO_SETTINGS_MODULE": "benchmarks.benchsite.settings"}
    server = subprocess.Popen(
        server_command(port),
        env=environment, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}{path}"
    peak, opened, done = 0, 0, threading.Event()

    def sample():
        # Connections opened while wrk runs tell churn (a pool that closes and
        # reopens) from a steady set; only this engine's site runs meanwhile.
        nonlocal peak, opened
        admin = address.connect()
        cursor = admin.cursor()
        opened_before = _connections_opened(cursor)
        while not done.is_set():
            peak = max(peak, server_connections(cursor, engine, "http_"))
            time.sleep(0.01)
        opened = _connections_opened(cursor) - opened_before
        admin.close()

    try:
        _wait_for(port)
        subprocess.run(["wrk", "-t2", "-c16", "-d1s", url],
                       capture_output=True, timeout=30)  # warm up: imports, pools
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
            capture_output=True, text=True, timeout=seconds + 60,
        )
        done.set()
        sampler.join(10)
    finally:
        done.set()
        server.terminate()
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate(timeout=10)
    return {**_parse_wrk(result.stdout), "peak_server_connections": peak, "connections_opened": opened}


def _connections_opened(cursor) -> int:
    cursor.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
    return int(cursor.fetchone()[1])


def measure(address, database: str, quick: bool = False) -> dict:
    """Every engine at every concurrency, rounds interleaved; medians and all repetitions."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found: apt-get install wrk (benchmarks/run.sh does)")
    prepare_table(address, database)
    rounds, seconds = (1, 3) if quick else (5, 8)
    runs: dict = {f"{engine}@{c}": [] for engine in ENGINES for c in CONCURRENCIES}
    for _ in range(rounds):
        for concurrency in CONCURRENCIES:
            for engine in random.sample(ENGINES, len(ENGINES)):  # a fresh order each round
                runs[f"{engine}@{concurrency}"].append(one_run(address, engine, concurrency, seconds))
    summary = {}
    for key, repetitions in runs.items():
        engine, concurrency = key.split("@")
        floor = statistics.median(r["requests_per_second"] for r in runs[f"persistent@{concurrency}"])
        median_rps = statistics.median(r["requests_per_second"] for r in repetitions)
        summary[key] = {
            "engine": engine, "connections": int(concurrency),
            "requests_per_second": median_rps,
            "ratio_to_persistent": median_rps / floor,
            "p50_ms": statistics.median(r.get("p50_ms", 0) for r in repetitions),
            "p99_ms": statistics.median(r.get("p99_ms", 0) for r in repetitions),
            "non_2xx": sum(r["non_2xx"] for r in repetitions),
            "socket_errors": sum(r["socket_errors"] for r in repetitions),
            "peak_server_connections": max(r["peak_server_connections"] for r in repetitions),
            "connections_opened": statistics.median(r["connections_opened"] for r in repetitions),
            "repetitions": repetitions,
        }
    return summary


def print_table(summary: dict) -> None:
    print(f"\nhttp: gunicorn gthread {WORKERS} workers x {THREADS} threads, wrk, one-row ORM get()")
    print(f"{'engine':<12} {'conns':>5} {'req/s':>8} {'x persistent':>13} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'non-2xx':>8} {'sock err':>8} {'peak conns':>10} {'opened':>7}")
    for row in summary.values():
        print(f"{row['engine']:<12} {row['connections']:>5} {row['requests_per_second']:>8.0f} "
              f"{row['ratio_to_persistent']:>13.2f} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
              f"{row['non_2xx']:>8} {row['socket_errors']:>8} {row['peak_server_connections']:>10} "
              f"{row['connections_opened']:>7.0f}")
