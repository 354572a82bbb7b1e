"""Forked children never break their parent's connections, and never share one."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import database_name

PARENT = os.path.join(os.path.dirname(__file__), "sites", "forking_parent.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_parent(mode, children):
    environment = {**os.environ, "PYTHONPATH": ROOT}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, PARENT, mode, str(children), database_name()],
        env=environment, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.parametrize("mode", ["fork", "multiprocessing"])
def test_hundred_children_leave_the_parents_held_and_idle_connections_working(mode):
    report, stderr = _run_parent(mode, 50)
    assert report["parent_errors"] == []
    assert report["children"] == 50
    assert report["child_errors"] == []
    assert not set(report["child_ids"]) & set(report["parent_ids"])
    assert "Traceback" not in stderr


def test_gunicorn_preload_workers_never_break_the_masters_connections(tmp_path):
    import time
    import urllib.request

    from tests.server import free_port

    gunicorn = pytest.importorskip("gunicorn")
    assert gunicorn
    port = free_port()
    report_path = tmp_path / "master.json"
    environment = {**os.environ, "PYTHONPATH": ROOT, "MYSQLPOOL_REPORT": str(report_path),
                   "MYSQLPOOL_PRELOAD_DATABASE": database_name()}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2",
         "--max-requests", "15", "--bind", f"127.0.0.1:{port}",
         "--config", "python:tests.sites.preload_gunicorn", "tests.sites.preload_site:application"],
        env=environment, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    answers, failures = [], []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        # 15 requests per worker life: about 20 workers forked from the master.
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
                    answers.append(json.loads(response.read()))
            except Exception as error:
                failures.append(repr(error))
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=60)
    assert report_path.exists(), output
    report = json.loads(report_path.read_text())
    worker_pids = {answer["pid"] for answer in answers}
    worker_ids = {answer["connection_id"] for answer in answers}
    assert failures == []
    assert len(worker_pids) >= 10  # workers really were forked again and again
    assert report["master_errors"] == []
    assert report["master_queries"] > 10
    assert not worker_ids & set(report["master_ids"])
    assert "Traceback" not in output



def test_an_interrupt_in_the_fork_hook_still_leaves_the_child_none_of_the_parents_pools(monkeypatch):
    from django.db import close_old_connections, connections

    from django_mysqlpool import ownership, registry
    from tests.helpers import connection_id, in_a_forked_child

    connection_id()
    close_old_connections()  # parked: the child must not take it back

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(ownership, "neutralise_inherited", interrupted)
    assert in_a_forked_child(lambda: {"pools": len(registry.pools())}) == {"pools": 0}
    connections["default"].close()
