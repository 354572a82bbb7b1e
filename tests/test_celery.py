"""A real Celery prefork worker on the engine, with no configuration for Celery.

Each test starts `celery -A tests.sites.celery_tasks worker --pool prefork
--concurrency 2` in a subprocess (broker: kombu's filesystem:// transport
in a temporary folder; database: one of its own), enqueues TASKS tasks from
another process, waits for their rows, and stops the worker with SIGTERM.
Meanwhile a thread counts the server's connections to that database from
an admin connection outside every pool. Celery's Django fix-up closes the
connections around every task and in each new child; with the pool
arguments in OPTIONS["pool"] it also calls close_pool() there.

MYSQLPOOL_CELERY_TASKS changes the number of tasks (300 by default).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.helpers import admin_connection, server_connections

pytest.importorskip("celery")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POOL_SIZE, MAX_OVERFLOW = 2, 1  # tests/sites/celery_site.py
PARENT_CONNECTIONS = 3  # tests/sites/celery_tasks.py: main thread, traffic thread, one idle
CHILDREN = 2
TASKS = int(os.environ.get("MYSQLPOOL_CELERY_TASKS", "300"))
START_TIMEOUT = 90.0  # seconds until the worker says it is ready
RUN_TIMEOUT = 120.0 + TASKS * 0.2  # seconds for every task's row to appear
STOP_TIMEOUT = 60.0  # seconds for a warm shutdown


@pytest.fixture
def celery_database():
    name = os.environ["MYSQLPOOL_TEST_DATABASE"] + "_celery"
    with admin_connection() as admin:
        cursor = admin.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}`")
        cursor.execute(
            f"CREATE TABLE `{name}`.celery_run (task INT PRIMARY KEY, pid INT NOT NULL, "
            "connection_id BIGINT NOT NULL) ENGINE=InnoDB"
        )
    yield name
    with admin_connection() as admin:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


class Sampler(threading.Thread):
    """Counts the server's connections to one database every 10 ms."""

    def __init__(self, database):
        super().__init__(daemon=True)
        self.database = database
        self.peak = 0
        self.ids = set()
        self.samples = 0
        self.errors = []
        self.stop = threading.Event()

    def run(self):
        with admin_connection() as admin:
            while not self.stop.is_set():
                try:
                    ids = server_connections(admin, database=self.database)
                except Exception as error:  # reported by the test
                    self.errors.append(repr(error))
                    return
                self.peak = max(self.peak, len(ids))
                self.ids.update(ids)
                self.samples += 1
                self.stop.wait(0.01)


class Worker:
    """`celery worker` in a subprocess; its output goes to a file."""

    def __init__(self, environment):
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.sites.celery_tasks", "worker",
             "--pool", "prefork", "--concurrency", str(CHILDREN), "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", "mysqlpool@%h"],
            cwd=ROOT, env=environment, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait_until_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.output()}")
            if " ready." in self.output():
                return
            time.sleep(0.1)
        raise AssertionError(f"worker not ready after {timeout} s:\n{self.output()}")

    def stop(self, timeout=STOP_TIMEOUT):
        """Warm shutdown (SIGTERM); returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self):
        if self.process.poll() is None:
            # The worker leads its own children; take them down with it.
            for pid in _child_pids(self.process.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.kill()
            self.process.wait(30)


def _child_pids(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def _rows(database):
    with admin_connection() as admin:
        cursor = admin.cursor()
        cursor.execute(f"SELECT task, pid, connection_id FROM `{database}`.celery_run")
        return cursor.fetchall()


def _count(admin, database):
    cursor = admin.cursor()
    cursor.execute(f"SELECT COUNT(*) FROM `{database}`.celery_run")
    return cursor.fetchone()[0]


def _run_worker(database, folder, pool_in_options):
    """Run the worker through TASKS tasks; returns everything the assertions need."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.sites.celery_site",
                   "MYSQLPOOL_CELERY_DATABASE": database, "MYSQLPOOL_CELERY_DIR": str(folder),
                   "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    environment.pop("MYSQLPOOL_CELERY_POOL_IN_OPTIONS", None)
    if pool_in_options:
        environment["MYSQLPOOL_CELERY_POOL_IN_OPTIONS"] = "1"
    sampler = Sampler(database)
    sampler.start()
    worker = Worker(environment)
    exit_code, elapsed = None, None
    try:
        worker.wait_until_ready()
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-c", f"from tests.sites.celery_tasks import send; send({TASKS})"],
            cwd=ROOT, env=environment, check=True, timeout=120,
        )
        with admin_connection() as admin:
            deadline = time.monotonic() + RUN_TIMEOUT
            while _count(admin, database) < TASKS and time.monotonic() < deadline:
                if worker.process.poll() is not None:
                    break
                time.sleep(0.05)
        elapsed = time.monotonic() - started
        try:
            exit_code = worker.stop()
        except subprocess.TimeoutExpired:
            exit_code = f"still running {STOP_TIMEOUT} s after SIGTERM"
    finally:
        worker.kill()
        sampler.stop.set()
        sampler.join(10)
    output = worker.output()
    worker.log.close()
    parent_path = folder / "parent.json"
    assert parent_path.exists(), output
    children_path = folder / "children.jsonl"
    return {
        "exit_code": exit_code,
        "elapsed": elapsed,
        "output": output,
        "rows": _rows(database),
        "parent": json.loads(parent_path.read_text()),
        "children": [json.loads(line) for line in children_path.read_text().splitlines()]
        if children_path.exists() else [],
        "sampler": sampler,
        "worker_pid": worker.process.pid,
    }


@pytest.mark.timeout(RUN_TIMEOUT + START_TIMEOUT + STOP_TIMEOUT + 120)
@pytest.mark.parametrize("pool_in_options", [False, True], ids=["MYSQLPOOL_ARGUMENTS", "OPTIONS-pool"])
def test_prefork_worker_runs_every_task_and_never_breaks_the_parents_connections(
        celery_database, tmp_path, pool_in_options):
    run = _run_worker(celery_database, tmp_path, pool_in_options)
    output, rows, parent, sampler = run["output"], run["rows"], run["parent"], run["sampler"]

    # Every task ran once and succeeded; the worker logged no error and
    # stopped cleanly.
    assert sorted(task for task, _, _ in rows) == list(range(TASKS)), output
    assert output.count("succeeded in") == TASKS, output
    assert "Traceback" not in output, output
    assert " ERROR/" not in output and " CRITICAL/" not in output, output
    assert run["exit_code"] == 0, output

    # The main process: its connections, held across every fork and idle
    # in its pool, still answer at shutdown, and are the very same ones.
    assert parent["pid"] == run["worker_pid"]
    assert parent["errors"] == [] and parent["traffic_errors"] == [], parent
    assert parent["main_id_after"] == parent["main_id"], parent
    assert parent["idle_id_after"] == parent["idle_id"], parent
    assert len(parent["traffic_ids"]) == 1, parent
    assert parent["traffic_queries"] > 10, parent
    parent_ids = {parent["main_id"], parent["idle_id"], *parent["traffic_ids"]}
    assert len(parent_ids) == PARENT_CONNECTIONS, parent

    # The two children: each used connections of its own, never the
    # parent's nor its sibling's. When a child starts, its copy of the
    # forking thread's Django wrapper already holds no connection
    # (forks.py forgot the inherited one before Celery's fix-up ran).
    ids_by_pid = {}
    for _, pid, connection_id in rows:
        ids_by_pid.setdefault(pid, set()).add(connection_id)
    assert len(ids_by_pid) == CHILDREN, ids_by_pid.keys()
    assert parent["pid"] not in ids_by_pid
    assert {child["pid"] for child in run["children"]} == set(ids_by_pid), run["children"]
    assert not any(child["inherited_connection"] for child in run["children"]), run["children"]
    child_ids = set().union(*ids_by_pid.values())
    assert not child_ids & parent_ids
    first, second = ids_by_pid.values()
    assert not first & second
    if not pool_in_options:
        # A child runs one task at a time and Celery gives the connection
        # back after each: the next task checks the same one out again.
        assert all(len(ids) == 1 for ids in ids_by_pid.values()), ids_by_pid
    # (With OPTIONS["pool"], Celery's fix-up calls close_pool() before and
    # after every task, so each task opens a connection of its own:
    # celery/celery#10554. Not bounded here.)

    # Server side: nothing but these connections, and never more at once
    # than the parent's three and one per child. With close_pool() around
    # every task a child closes a connection and opens another each time,
    # and the server may list a closed one a little longer: there, only the
    # pools' own bound holds (pool_size + max_overflow per child).
    assert sampler.errors == [] and sampler.samples > 10
    assert sampler.ids <= parent_ids | child_ids, sampler.ids - parent_ids - child_ids
    assert sampler.peak >= PARENT_CONNECTIONS
    per_child = POOL_SIZE + MAX_OVERFLOW if pool_in_options else 1
    assert sampler.peak <= PARENT_CONNECTIONS + CHILDREN * per_child, sampler.peak

    print(json.dumps({
        "variant": "OPTIONS['pool']" if pool_in_options else "MYSQLPOOL_ARGUMENTS",
        "tasks": TASKS, "seconds": round(run["elapsed"], 2),
        "peak_server_connections": sampler.peak, "samples": sampler.samples,
        "parent": {"pid": parent["pid"], "ids": sorted(parent_ids),
                   "traffic_queries": parent["traffic_queries"]},
        "children": {pid: {"tasks": sum(1 for _, p, _ in rows if p == pid),
                           "distinct_ids": len(ids)} for pid, ids in ids_by_pid.items()},
    }))
