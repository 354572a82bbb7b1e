"""Forked children never break their parent's connections, and never share one."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import database_name

PARENT = os.path.join(os.path.dirname(__file__), "forking_parent.py")
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
