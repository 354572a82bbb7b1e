"""What a session reset costs: microseconds and server statements per cycle, clean or reset.

    python -m tests.server -- .venv/bin/python benchmarks/reset_cost.py

One thread runs request-like cycles (ensure_connection, one statement,
close()) on a pooled alias in four ways: a plain SELECT with
reset_session="auto" (given back as it is), a SELECT that sets a user
variable (reset at give-back), a plain SELECT with reset_session="always"
(reset every time), and the stock engine connecting per cycle for scale.
Prints a table and writes benchmarks/results/reset_cost.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

from tests.server import ServerAddress  # noqa: E402

DATABASE = "mysqlpool_reset_cost"
ROUNDS, CYCLES = 10, 300
WAYS = {
    # name: (alias, statement)
    "auto, clean": ("auto", "SELECT 1"),
    "auto, dirty": ("auto", "SELECT @left := 1"),
    "always": ("always", "SELECT 1"),
    "stock, CONN_MAX_AGE=0": ("stock", "SELECT 1"),
}


def configure(address: ServerAddress) -> None:
    admin = address.connect()
    admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
    admin.close()
    common = {"HOST": address.host, "PORT": str(address.port), "USER": address.user,
              "PASSWORD": address.password, "NAME": DATABASE}
    pooled = {"ENGINE": "django_mysqlpool.backends.mysqlpool", **common}
    settings.configure(
        DATABASES={
            "default": {"ENGINE": "django.db.backends.mysql", **common},
            "stock": {"ENGINE": "django.db.backends.mysql", **common},
            "auto": pooled,
            "always": {**pooled, "OPTIONS": {"pool": {"reset_session": "always"}}},
        },
        MYSQLPOOL_ARGUMENTS={"pool_size": 1, "max_overflow": 0},
        USE_TZ=True,
    )
    django.setup()


def questions(admin) -> int:
    cursor = admin.cursor()
    cursor.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_admin_commands')")
    return sum(int(value) for _, value in cursor.fetchall())


def block(alias: str, statement: str, cycles: int) -> float:
    from django.db import connections

    wrapper = connections[alias]
    started = time.perf_counter()
    for _ in range(cycles):
        with wrapper.cursor() as cursor:
            cursor.execute(statement)
            cursor.fetchall()
        wrapper.close()
    return time.perf_counter() - started


def main() -> int:
    address = ServerAddress.from_environment()
    if address is None:
        print("MYSQL_HOST is not set: run me through python -m tests.server --", file=sys.stderr)
        return 2
    configure(address)
    admin = address.connect()
    results = {}
    for name, (alias, statement) in WAYS.items():
        block(alias, statement, 50)  # warm up
        before = questions(admin)
        block(alias, statement, CYCLES)
        # Questions counts statements, Com_admin_commands the reset and the
        # database selection; minus this measure's own status query.
        statements_per_cycle = (questions(admin) - before - 1) / CYCLES
        timings = [block(alias, statement, CYCLES) / CYCLES * 1e6 for _ in range(ROUNDS)]
        results[name] = {"us_per_cycle": statistics.median(timings), "statements_per_cycle": statements_per_cycle}
    admin.close()
    clean = results["auto, clean"]["us_per_cycle"]
    print(f"{'way':<24} {'us per cycle':>12} {'x clean':>8} {'statements + commands':>22}")
    for name, result in results.items():
        print(f"{name:<24} {result['us_per_cycle']:>12.1f} {result['us_per_cycle'] / clean:>8.2f} "
              f"{result['statements_per_cycle']:>22.2f}")
    path = os.path.join(ROOT, "benchmarks", "results", "reset_cost.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as output:
        json.dump(results, output, indent=2)
    print(f"\nJSON: {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
