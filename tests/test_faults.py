"""The fault campaign (benchmarks/faults.py), each fault on a private server of its own."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOUND = 3 + 2  # the campaign's pool_size + max_overflow

pytestmark = pytest.mark.xdist_group("faults")  # one campaign, on one worker


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    output = tmp_path_factory.mktemp("faults") / "faults.json"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MYSQL_")}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "faults.py"), "--json", str(output)],
        env=environment, capture_output=True, text=True, timeout=280,
    )
    assert output.exists(), result.stdout + result.stderr
    with open(output) as report:
        return {r["scenario"]: r for r in json.load(report)["results"]}, result


@pytest.mark.parametrize("scenario", ["restart", "crash", "down", "kill_all", "wait_timeout"])
def test_no_request_fails_after_the_fault_and_nothing_leaks(campaign, scenario):
    results, process = campaign
    r = results[scenario]
    assert r["requests"] > 100, process.stdout + process.stderr
    assert r["errors_after"] == 0
    assert r["checked_out_after"] == 0
    assert r["server_connections_after"] <= BOUND
    assert r["recover_ms"] is not None
    # Only Django's error class, never SQLAlchemy's or the driver's.
    assert set(r["error_types"]) <= {"django.db.utils.OperationalError"}


def test_connections_that_timed_out_idle_are_never_handed_out(campaign):
    results, _ = campaign
    assert results["wait_timeout"]["errors_during"] == 0


def test_a_kill_fails_at_most_the_requests_it_interrupted(campaign):
    # KILL can land on a connection in the middle of a query: that request
    # may fail (one per traffic thread at most); no request that checks out
    # a killed connection afterwards may.
    results, _ = campaign
    assert results["kill_all"]["errors_during"] <= 3


def test_a_down_server_fails_fast_naming_the_alias(campaign):
    results, _ = campaign
    down = results["down"]
    assert down["errors_during"] > 0
    assert down["slowest_error_ms"] < 3000  # connect_timeout is 2 s: no hang
    assert any("database alias 'default'" in message for message in down["error_messages"])
    assert all("\n" not in message for message in down["error_messages"])
