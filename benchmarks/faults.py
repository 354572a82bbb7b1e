"""Fault campaign: what steady traffic sees when the server restarts, kills or times out.

    .venv/bin/python benchmarks/faults.py [--json PATH] [--scenario NAME ...]

Each scenario gets a private MariaDB of its own (never a shared server),
three threads of steady traffic through Django on the pooled engine, then
one fault. It prints a table and writes JSON:

- requests: requests started during the scenario;
- errors during: failed requests that started while the fault lasted (only
  these may fail, and only with Django's OperationalError);
- errors after: failed requests that started after the fault ended (must be 0);
- recover ms: from the end of the fault to the first successful request;
- server conns before/after: connections on the server in steady state
  before the fault and after recovery (a leak shows as growth), and pooled
  connections still checked out when traffic stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

from tests.server import PrivateServer  # noqa: E402

DATABASE = "faults"
THREADS = 3
POOL = {"pool_size": 3, "max_overflow": 2, "timeout": 5}
CONNECT_TIMEOUT = 2  # seconds, OPTIONS["connect_timeout"]


@dataclass
class Outcome:
    started: float
    seconds: float
    error: str | None
    message: str | None = None


@dataclass
class ScenarioResult:
    scenario: str
    requests: int = 0
    errors_during: int = 0
    errors_after: int = 0
    error_types: dict = field(default_factory=dict)
    error_messages: list = field(default_factory=list)
    slowest_error_ms: float = 0.0
    recover_ms: float | None = None
    server_connections_before: int = 0
    server_connections_after: int = 0
    checked_out_after: int = 0


def configure() -> None:
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django_mysqlpool.backends.mysqlpool",
            "HOST": "127.0.0.1", "PORT": "0", "USER": "root", "PASSWORD": "",
            "NAME": DATABASE, "OPTIONS": {"connect_timeout": CONNECT_TIMEOUT},
        }},
        MYSQLPOOL_ARGUMENTS=POOL,
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()


class Traffic:
    """THREADS threads of requests through the pooled engine, each one recorded."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.paused = threading.Event()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(THREADS)]

    def _run(self) -> None:
        from django.db import connection

        from django_mysqlpool import auto_close_db

        @auto_close_db
        def request() -> None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()

        while not self.stopped.is_set():
            if self.paused.is_set():
                time.sleep(0.01)
                continue
            started = time.monotonic()
            error = message = None
            try:
                request()
            except Exception as exc:  # recorded, never raised: that is the measurement
                error = f"{type(exc).__module__}.{type(exc).__name__}"
                message = str(exc)
            self.outcomes.append(Outcome(started, time.monotonic() - started, error, message))
            time.sleep(0.005)

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in self.threads), "traffic thread stuck"


def server_connections(server: PrivateServer) -> int:
    admin = server.address.connect()
    try:
        cursor = admin.cursor()
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            [DATABASE],
        )
        return cursor.fetchone()[0]
    finally:
        admin.close()


def pooled_ids(server: PrivateServer) -> list[int]:
    admin = server.address.connect()
    try:
        cursor = admin.cursor()
        cursor.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            [DATABASE],
        )
        return [row[0] for row in cursor.fetchall()]
    finally:
        admin.close()


# Each fault returns when it has ended: the moment after which every new
# request must succeed.

def fault_restart(server: PrivateServer, traffic: Traffic) -> None:
    server.stop()
    time.sleep(0.5)
    server.start()


def fault_crash(server: PrivateServer, traffic: Traffic) -> None:
    server.kill()  # SIGKILL: no goodbye to any client
    time.sleep(0.5)
    server.start()


def fault_down(server: PrivateServer, traffic: Traffic) -> None:
    server.stop()
    time.sleep(2.0)  # requests meanwhile must fail fast, naming the alias
    server.start()


def fault_kill_all(server: PrivateServer, traffic: Traffic) -> None:
    victims = pooled_ids(server)
    admin = server.address.connect()
    try:
        for victim in victims:
            try:
                admin.cursor().execute(f"KILL {victim}")
            except Exception:
                pass  # already gone
        # KILL returns before the server has closed the victims' sockets.
        deadline = time.monotonic() + 5
        while set(victims) & set(pooled_ids(server)) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        admin.close()


def fault_wait_timeout(server: PrivateServer, traffic: Traffic) -> None:
    # The server runs with wait_timeout=2: idle for 3 s, every pooled
    # connection is closed by the server.
    traffic.paused.set()
    time.sleep(3.0)
    traffic.paused.clear()


SCENARIOS = {
    "restart": (fault_restart, {}),
    "crash": (fault_crash, {}),
    "down": (fault_down, {}),
    "kill_all": (fault_kill_all, {}),
    "wait_timeout": (fault_wait_timeout, {"wait-timeout": "2"}),
}


def run_scenario(name: str, steady_seconds: float = 1.0) -> ScenarioResult:
    from django.db import connections

    from django_mysqlpool import close_pool

    fault, server_options = SCENARIOS[name]
    result = ScenarioResult(name)
    with PrivateServer(**server_options) as server:
        admin = server.address.connect()
        admin.cursor().execute(f"CREATE DATABASE {DATABASE}")
        admin.close()
        connections.settings["default"]["PORT"] = str(server.port)
        close_pool()
        with Traffic() as traffic:
            time.sleep(steady_seconds)
            result.server_connections_before = server_connections(server)
            fault_started = time.monotonic()
            fault(server, traffic)
            fault_ended = time.monotonic()
            time.sleep(steady_seconds)
        result.server_connections_after = server_connections(server)
        pool = connections["default"].pool
        result.checked_out_after = pool.pool.checkedout() if pool else 0
        close_pool()

    outcomes = [o for o in traffic.outcomes]
    result.requests = len(outcomes)
    for outcome in outcomes:
        if outcome.error is None:
            continue
        result.error_types[outcome.error] = result.error_types.get(outcome.error, 0) + 1
        if outcome.message not in result.error_messages and len(result.error_messages) < 5:
            result.error_messages.append(outcome.message)
        result.slowest_error_ms = max(result.slowest_error_ms, outcome.seconds * 1000)
        if outcome.started >= fault_ended:
            result.errors_after += 1
        elif outcome.started + outcome.seconds >= fault_started:
            result.errors_during += 1
    first_success = min(
        (o.started + o.seconds for o in outcomes if o.error is None and o.started >= fault_ended),
        default=None,
    )
    if first_success is not None:
        result.recover_ms = round((first_success - fault_ended) * 1000, 1)
    result.slowest_error_ms = round(result.slowest_error_ms, 1)
    return result


def print_table(results: list[ScenarioResult]) -> None:
    header = (f"{'scenario':<13} {'requests':>8} {'errors during':>13} {'errors after':>12} "
              f"{'recover ms':>10} {'conns before':>12} {'conns after':>11} {'checked out':>11}  error types")
    print(header)
    for r in results:
        recover = "-" if r.recover_ms is None else f"{r.recover_ms:.1f}"
        types = ", ".join(f"{k.rsplit('.', 1)[-1]} x{v}" for k, v in r.error_types.items()) or "-"
        print(f"{r.scenario:<13} {r.requests:>8} {r.errors_during:>13} {r.errors_after:>12} {recover:>10} "
              f"{r.server_connections_before:>12} {r.server_connections_after:>11} "
              f"{r.checked_out_after:>11}  {types}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "faults.json"))
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    options = parser.parse_args()
    configure()
    results = [run_scenario(name) for name in options.scenario or SCENARIOS]
    print_table(results)
    os.makedirs(os.path.dirname(options.json), exist_ok=True)
    with open(options.json, "w") as output:
        json.dump({
            "python": platform.python_version(),
            "django": django.__version__,
            "load_average": os.getloadavg(),
            "pool": POOL,
            "threads": THREADS,
            "results": [asdict(r) for r in results],
        }, output, indent=2)
    print(f"\nJSON: {os.path.relpath(options.json)}")
    bad = [r for r in results if r.errors_after or any(not k.startswith("django.") for k in r.error_types)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
