"""The pool under gevent with PyMySQL as MySQLdb: the setup of gunicorn's gevent worker.

Monkey-patching turns threading.local into a greenlet-local, so Django gives
every greenlet a connection wrapper of its own, and the pool's locks and
PyMySQL's sockets yield to other greenlets instead of blocking the process.
Each scenario runs in a subprocess of its own (monkey-patching must come
before anything else is imported), bounded in time.
"""

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers import admin_connection, database_name, server_connections
from tests.server import free_port

if importlib.util.find_spec("gevent") is None:  # not imported here: this process must stay unpatched
    pytest.skip("gevent is a test dependency: pip install -e '.[test]'", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "tests", "sites", "gevent_app.py")
BOUND = 10  # pool_size 5 + max_overflow 5


def _environment(**extra):
    environment = {**os.environ, "PYTHONPATH": ROOT, **extra}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    return environment


def _run_app(*arguments):
    result = subprocess.run(
        [sys.executable, APP, database_name(), *arguments],
        env=_environment(), capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_500_greenlets_share_a_bounded_pool():
    report, stderr = _run_app("--greenlets", "500")
    summary = json.dumps(report, indent=1)
    assert report["driver"] == "pymysql", summary
    assert report["greenlet_local"], summary
    assert report["errors"] == [], summary
    assert report["greenlets_not_finished"] == 0, summary
    assert report["greenlets_done"] == 500, summary
    # One Django wrapper per greenlet, never another greenlet's.
    assert report["distinct_wrappers"] == 500, summary
    assert report["wrapper_shared"] == 0, summary
    assert report["wrapper_changed_within_greenlet"] == 0, summary
    # A greenlet keeps its connection until auto_close_db gives it back, and
    # no connection is ever handed to two greenlets at once.
    assert report["greenlet_saw_several_connection_ids"] == 0, summary
    assert report["connection_used_by_two_greenlets_at_once"] == 0, summary
    # The bound holds on the server, and was reached: the greenlets really
    # ran at once (blocking sockets would have serialised them).
    assert report["peak_server_connections"] - report["server_connections_before"] <= BOUND, summary
    assert 5 < report["peak_checked_out"] <= BOUND, summary
    # Every connection id is one the pool opened (nothing reconnected behind
    # its back, as PyMySQL's ping(reconnect=True) would), none was thrown
    # away, and the pool keeps a burst's connections: at most the bound.
    assert report["distinct_connection_ids"] == report["pool_connects"], summary
    assert report["pool_invalidations"] == 0, summary
    assert report["distinct_connection_ids"] <= BOUND, summary
    # All given back; the server holds exactly what the pool holds open.
    assert report["checked_out_after"] == 0, summary
    assert report["server_connections_after"] == report["pool_connects"] - report["pool_closes"], summary
    assert report["elapsed_seconds"] < 30, summary
    assert "Traceback" not in stderr


def test_killed_connections_are_found_by_the_socket_poll_under_gevent():
    # ping_after_idle "never": only the zero-timeout poll of the socket (gevent's
    # select.poll once patched) can notice that the server killed them.
    report, stderr = _run_app("--greenlets", "100", "--ping-after-idle", "never", "--kill-then-rerun", "100")
    summary = json.dumps(report, indent=1)
    assert report["errors"] == [], summary
    after = report["after_kill"]
    assert after["killed"] >= 1, summary
    assert after["errors"] == [], summary
    assert after["greenlets_not_finished"] == 0, summary
    assert after["replaced_at_checkout"] == after["killed"], summary
    assert after["killed_ids_seen"] == 0, summary
    assert after["checked_out_after"] == 0, summary
    assert "Traceback" not in stderr


@pytest.mark.parametrize("preload", [
    [],
    # --preload imports Django in the master, before the worker patches: the
    # config file must patch first (see gevent_gunicorn.py).
    ["--preload", "--config", "python:tests.sites.gevent_gunicorn"],
], ids=["worker", "preload"])
def test_gunicorn_gevent_worker_serves_concurrent_requests_from_a_bounded_pool(preload):
    if importlib.util.find_spec("gunicorn") is None:
        pytest.skip("gunicorn is a test dependency: pip install -e '.[test]'")
    port = free_port()
    requests = 200
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "--workers", "1",
         "--worker-connections", "1000", "--backlog", "1024", "--timeout", "60",
         "--graceful-timeout", "5", "--bind", f"127.0.0.1:{port}", *preload,
         "tests.sites.gevent_site:application"],
        env=_environment(MYSQLPOOL_GEVENT_DATABASE=database_name()), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    answers, failures, peak = [], [], [0]
    stop_sampling = threading.Event()
    started_up, before, elapsed = False, None, None

    def sample():
        with admin_connection() as admin:
            while not stop_sampling.is_set():
                peak[0] = max(peak[0], len(server_connections(admin)))
                time.sleep(0.005)

    def fetch(barrier):
        try:
            barrier.wait(timeout=30)
            with urllib.request.urlopen(url, timeout=30) as response:
                answers.append(json.loads(response.read()))
        except Exception as error:
            failures.append(repr(error))

    try:
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=5).read()
            except urllib.error.HTTPError:
                pass  # it answers; the requests below tell what is wrong
            except OSError:
                time.sleep(0.1)
                continue
            started_up = True
            break
        if started_up:  # else the assertion below shows gunicorn's output
            with admin_connection() as admin:
                before = len(server_connections(admin))
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            barrier = threading.Barrier(requests)
            clients = [threading.Thread(target=fetch, args=(barrier,), daemon=True) for _ in range(requests)]
            started = time.monotonic()
            for client in clients:
                client.start()
            for client in clients:
                client.join(60)
            elapsed = time.monotonic() - started
            stop_sampling.set()
            sampler.join(10)
            assert not any(client.is_alive() for client in clients), "requests still running"
    finally:
        stop_sampling.set()
        server.terminate()
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate(timeout=30)
    assert started_up, "gunicorn did not start:\n" + output[-3000:]
    ids = {connection_id for answer in answers for connection_id in answer["connection_ids"]}
    summary = json.dumps({"failures": failures[:5], "failure_count": len(failures), "answers": len(answers),
                          "peak_server_connections": peak[0], "before": before,
                          "distinct_connection_ids": len(ids), "elapsed_seconds": round(elapsed, 3),
                          "sample_answer": answers[:1]}, indent=1)
    assert failures == [], summary + output[-3000:]
    assert len(answers) == requests, summary
    assert {answer["driver"] for answer in answers} == {"pymysql"}, summary
    assert {answer["threading_local"] for answer in answers} == {"gevent._gevent_clocal.local"}, summary
    assert len({answer["pid"] for answer in answers}) == 1, summary  # one worker, many greenlets
    # Each request kept one connection for its three queries.
    assert all(len(set(answer["connection_ids"])) == 1 for answer in answers), summary
    # The readiness request's connection ("before") is one of the pool's own.
    assert peak[0] <= BOUND, summary
    assert 1 < len(ids) <= BOUND, summary  # concurrent (LIFO reuse would give 1 if serial), bounded
    assert "Traceback" not in output, output[-3000:]
    print(summary)
