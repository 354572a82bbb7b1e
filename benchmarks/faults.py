"""Fault campaign: what steady traffic sees when the server restarts, kills or times out.

    .venv/bin/python benchmarks/faults.py [--json PATH] [--scenario NAME ...] [--cluster]

With --cluster, the scenarios run on a private 3-node Galera cluster
(tests/cluster.py) instead, with four threads of traffic (an INSERT and a
read of the serving node's name per request) through an alias whose HOST
names the three nodes:

- failover_kill: the node in use is killed; the fault ends when the
  survivors have evicted it; then it is started again;
- failover_quorum: two of three nodes are killed, and the survivor loses
  quorum (1047); the fault ends when the survivor is bootstrapped and
  both nodes have rejoined;
- round_robin_kill: as failover_kill, through an alias with
  host_policy="round_robin".

Their rows add which nodes served before the fault, after it (until the
nodes it took down are started again), and at the end (after they
rejoined), and return ms: from the moment they were started again (their
rejoining included) to the first request served by one of them.

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
import math
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
    node: str | None = None  # cluster scenarios: the node that served it


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
    # Cluster scenarios only.
    nodes_before: list = field(default_factory=list)
    nodes_after_fault: list = field(default_factory=list)
    nodes_at_end: list = field(default_factory=list)
    errors_after_messages: list = field(default_factory=list)
    return_ms: float | None = None
    slowest_all_down_ms: float = 0.0  # the slowest "no node can serve" error


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
    """Threads of requests through the pooled engine, each one recorded."""

    def __init__(self, threads: int = THREADS, alias: str = "default", cluster: bool = False) -> None:
        self.outcomes: list[Outcome] = []
        self.paused = threading.Event()
        self.stopped = threading.Event()
        self.alias = alias
        self.cluster = cluster
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        from django.db import connections

        from django_mysqlpool import auto_close_db

        @auto_close_db
        def request() -> str | None:
            with connections[self.alias].cursor() as cursor:
                if not self.cluster:
                    cursor.execute("SELECT 1")
                    cursor.fetchone()
                    return None
                cursor.execute("INSERT INTO hits (node) VALUES (@@wsrep_node_name)")
                cursor.execute("SELECT @@wsrep_node_name")
                return cursor.fetchone()[0]

        while not self.stopped.is_set():
            if self.paused.is_set():
                time.sleep(0.01)
                continue
            started = time.monotonic()
            error = message = node = None
            try:
                node = request()
            except Exception as exc:  # recorded, never raised: that is the measurement
                error = f"{type(exc).__module__}.{type(exc).__name__}"
                message = str(exc)
            self.outcomes.append(Outcome(started, time.monotonic() - started, error, message, node))
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


# The cluster scenarios: each gets the running cluster with every node up,
# and leaves it so (it returns once the nodes it took down are back and
# ready). Each returns when the fault ended, and when the nodes it took
# down were started again.

def fault_failover_kill(cluster, traffic: Traffic) -> tuple[float, float]:
    cluster.kill(1)  # the node failover uses
    cluster.nodes[1].wait_until(ready=True, cluster_size=2, timeout=60)
    evicted = time.monotonic()
    time.sleep(CLUSTER_STEADY)
    restarted = time.monotonic()
    cluster.restart(1)
    return evicted, restarted


def fault_failover_quorum(cluster, traffic: Traffic) -> tuple[float, float]:
    cluster.kill(1)
    cluster.kill(2)
    cluster.nodes[2].wait_until(ready=False, timeout=60)  # the survivor has lost quorum
    time.sleep(CLUSTER_STEADY)  # requests meanwhile must fail fast, naming every node
    restarted = time.monotonic()
    cluster.bootstrap(3)  # what an operator does: the survivor becomes the primary component
    cluster.restart(1)
    cluster.restart(2)
    cluster.nodes[0].wait_until(ready=True, cluster_size=3, timeout=60)
    return time.monotonic(), restarted


def fault_round_robin_kill(cluster, traffic: Traffic) -> tuple[float, float]:
    cluster.kill(2)
    cluster.nodes[0].wait_until(ready=True, cluster_size=2, timeout=60)
    evicted = time.monotonic()
    time.sleep(CLUSTER_STEADY)
    restarted = time.monotonic()
    cluster.restart(2)
    return evicted, restarted


CLUSTER_THREADS = 4
CLUSTER_STEADY = 2.0  # seconds of traffic before a fault, after it, and after the nodes are back
CLUSTER_POOL = {"pool_size": 4, "max_overflow": 2, "timeout": 5, "host_retry_after": 1.0}
CLUSTER_SCENARIOS = {
    "failover_kill": (fault_failover_kill, "failover"),
    "failover_quorum": (fault_failover_quorum, "failover"),
    "round_robin_kill": (fault_round_robin_kill, "round_robin"),
}


def run_cluster_scenario(name: str, cluster) -> ScenarioResult:
    from django.db import connections

    from django_mysqlpool import close_pool

    fault, alias = CLUSTER_SCENARIOS[name]
    result = ScenarioResult(name)
    close_pool()
    with Traffic(CLUSTER_THREADS, alias, cluster=True) as traffic:
        time.sleep(CLUSTER_STEADY)
        fault_started = time.monotonic()
        fault_ended, restarted = fault(cluster, traffic)
        time.sleep(CLUSTER_STEADY)
        end_started = time.monotonic()
        time.sleep(CLUSTER_STEADY)
    pool = connections[alias].pool
    result.checked_out_after = pool.pool.checkedout() if pool else 0
    close_pool()

    outcomes = list(traffic.outcomes)
    _count(result, outcomes, fault_started, fault_ended)
    result.slowest_all_down_ms = round(max(
        (o.seconds * 1000 for o in outcomes if o.message and "no node can serve" in o.message), default=0.0), 1)
    result.errors_after_messages = sorted({o.message for o in outcomes if o.error and o.started >= fault_ended})[:5]

    def served(since: float, until: float) -> list:
        return sorted({o.node for o in outcomes if o.node and since <= o.started < until})

    down_nodes = set(served(0, fault_started)) - set(served(fault_ended, restarted))
    result.nodes_before = served(0, fault_started)
    # From the fault's end until the nodes it took down are started again.
    result.nodes_after_fault = served(fault_ended, restarted)
    result.nodes_at_end = served(end_started, math.inf)
    first_return = min((o.started for o in outcomes if o.node in down_nodes and o.started >= restarted),
                       default=None)
    if first_return is not None:
        result.return_ms = round((first_return - restarted) * 1000, 1)
    return result


SYNC_WAIT_TRIES = 1000


def measure_sync_wait() -> dict:
    """Read-your-writes across nodes: a row written on node1, read at once on node2.

    Through the pooled engine, without and with wsrep_sync_wait=1 (reads
    interleaved): how many reads missed the row, and what a read cost.
    """
    from django.db import connections

    results = {"tries": SYNC_WAIT_TRIES}
    writer = connections["node1"]
    readers = {"without": connections["node2"], "with": connections["node2_sync_wait"]}
    missed = {"without": 0, "with": 0}
    seconds = {"without": 0.0, "with": 0.0}
    with writer.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS marks (id INT PRIMARY KEY)")
    for attempt in range(SYNC_WAIT_TRIES):
        for mode, reader in readers.items():
            mark = attempt * 2 + (mode == "with")
            with writer.cursor() as cursor:
                cursor.execute("INSERT INTO marks (id) VALUES (%s)", [mark])
            started = time.perf_counter()
            with reader.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM marks WHERE id = %s", [mark])
                found = cursor.fetchone()[0]
            seconds[mode] += time.perf_counter() - started
            missed[mode] += not found
    for mode in readers:
        results[f"missed_{mode}"] = missed[mode]
        results[f"read_us_{mode}"] = round(seconds[mode] / SYNC_WAIT_TRIES * 1e6, 1)
    with readers["with"].cursor() as cursor:
        cursor.execute("SELECT @@session.wsrep_sync_wait")
        results["session_value_with"] = cursor.fetchone()[0]
    for connection in (writer, *readers.values()):
        connection.close()
    return results


def configure_cluster(hosts: str) -> None:
    def alias(policy: str, host: str = hosts, **pool) -> dict:
        host, _, port = host.rpartition(":") if "," not in host else (host, "", "")
        return {
            "ENGINE": "django_mysqlpool.backends.mysqlpool",
            "HOST": host, "PORT": port, "USER": "root", "PASSWORD": "", "NAME": DATABASE,
            "OPTIONS": {"connect_timeout": CONNECT_TIMEOUT, "pool": {"host_policy": policy, **pool}},
        }

    first, second, _ = hosts.split(",")
    settings.configure(
        DATABASES={"default": alias("failover"), "failover": alias("failover"),
                   "round_robin": alias("round_robin"), "node1": alias("failover", first),
                   "node2": alias("failover", second),
                   "node2_sync_wait": alias("failover", second, wsrep_sync_wait=1)},
        MYSQLPOOL_ARGUMENTS=CLUSTER_POOL,
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()


def run_cluster_campaign(names: list[str]) -> tuple[list[ScenarioResult], dict]:
    from tests.cluster import PrivateCluster

    with PrivateCluster() as cluster:
        admin = cluster.nodes[0].address.connect()
        cursor = admin.cursor()
        cursor.execute(f"CREATE DATABASE {DATABASE}")
        cursor.execute(f"CREATE TABLE {DATABASE}.hits (id INT AUTO_INCREMENT PRIMARY KEY, node VARCHAR(20))")
        admin.close()
        configure_cluster(cluster.hosts)
        sync_wait = measure_sync_wait()
        return [run_cluster_scenario(name, cluster) for name in names], sync_wait


def _count(result: ScenarioResult, outcomes: list[Outcome], fault_started: float, fault_ended: float) -> None:
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

    _count(result, list(traffic.outcomes), fault_started, fault_ended)
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


def print_cluster_table(results: list[ScenarioResult]) -> None:
    print(f"{'scenario':<17} {'requests':>8} {'errors during':>13} {'errors after':>12} {'recover ms':>10} "
          f"{'return ms':>9}  served before / after fault / at end")
    for r in results:
        recover = "-" if r.recover_ms is None else f"{r.recover_ms:.1f}"
        back = "-" if r.return_ms is None else f"{r.return_ms:.1f}"
        print(f"{r.scenario:<17} {r.requests:>8} {r.errors_during:>13} {r.errors_after:>12} {recover:>10} "
              f"{back:>9}  {','.join(r.nodes_before)} / {','.join(r.nodes_after_fault)} / "
              f"{','.join(r.nodes_at_end)}")
    for r in results:
        for message in r.error_messages[:2]:
            print(f"  {r.scenario}: {message}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="where to write the results (default: benchmarks/results/faults.json, "
                        "or faults_cluster.json with --cluster)")
    parser.add_argument("--scenario", action="append", choices=sorted({*SCENARIOS, *CLUSTER_SCENARIOS}))
    parser.add_argument("--cluster", action="store_true", help="the Galera scenarios (a 3-node cluster)")
    options = parser.parse_args()
    extra = {}
    if options.cluster:
        results, extra["sync_wait"] = run_cluster_campaign(options.scenario or list(CLUSTER_SCENARIOS))
        print_cluster_table(results)
        print(f"\nwsrep_sync_wait, a row written on node1 read at once on node2: {extra['sync_wait']}")
    else:
        configure()
        results = [run_scenario(name) for name in options.scenario or SCENARIOS]
        print_table(results)
    if options.json is None:
        name = "faults_cluster.json" if options.cluster else "faults.json"
        options.json = os.path.join(ROOT, "benchmarks", "results", name)
    os.makedirs(os.path.dirname(options.json), exist_ok=True)
    with open(options.json, "w") as output:
        json.dump({
            "python": platform.python_version(),
            "django": django.__version__,
            "load_average": os.getloadavg(),
            "pool": CLUSTER_POOL if options.cluster else POOL,
            "threads": CLUSTER_THREADS if options.cluster else THREADS,
            "results": [asdict(r) for r in results],
            **extra,
        }, output, indent=2)
    print(f"\nJSON: {os.path.relpath(options.json)}")
    bad = [r for r in results if r.errors_after or any(not k.startswith("django.") for k in r.error_types)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
