"""Failover across a real 3-node Galera cluster: the fault campaign's cluster scenarios (benchmarks/faults.py --cluster)."""

import json
import os
import subprocess
import sys

import pytest

from tests.cluster import why_unavailable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONNECT_TIMEOUT_MS = 2000  # the campaign's OPTIONS["connect_timeout"]

pytestmark = [
    pytest.mark.skipif(why_unavailable() is not None, reason=f"no Galera cluster: {why_unavailable()}"),
    pytest.mark.galera,
    pytest.mark.xdist_group("galera"),  # one cluster, on one worker
]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    output = tmp_path_factory.mktemp("cluster") / "faults_cluster.json"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MYSQL_")}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "faults.py"), "--cluster", "--json", str(output)],
        env=environment, capture_output=True, text=True, timeout=280,
    )
    assert output.exists(), result.stdout + result.stderr
    with open(output) as report:
        data = json.load(report)
    return {r["scenario"]: r for r in data["results"]}, data["sync_wait"], result


@pytest.mark.parametrize("scenario", ["failover_kill", "failover_quorum", "round_robin_kill"])
def test_no_request_fails_once_the_fault_is_over(campaign, scenario):
    results, _, process = campaign
    r = results[scenario]
    assert r["requests"] > 100, process.stdout + process.stderr
    assert r["errors_after"] == 0, r["errors_after_messages"]
    assert r["checked_out_after"] == 0
    assert set(r["error_types"]) <= {"django.db.utils.OperationalError"}


def test_a_killed_node_gets_no_request_once_evicted_and_failover_returns_to_it(campaign):
    r = campaign[0]["failover_kill"]
    assert r["nodes_before"] == ["node1"]  # failover: the first node only
    assert r["nodes_after_fault"] == ["node2"]  # the next node in HOST's order, never the dead one
    assert r["nodes_at_end"] == ["node1"]  # back to the preferred node once it rejoined
    assert r["return_ms"] is not None
    # Only requests in flight on the killed node fail: at most one per traffic thread.
    assert r["errors_during"] <= 4


def test_a_cluster_without_quorum_fails_fast_naming_the_alias_and_every_node(campaign):
    r = campaign[0]["failover_quorum"]
    assert r["errors_during"] > 0
    all_down = [message for message in r["error_messages"] if "no node can serve" in message]
    assert all_down, r["error_messages"]
    for message in all_down:
        assert "database alias 'failover'" in message
        assert message.count(" down (") == 3  # each node's state
        assert "wsrep_ready=OFF" in message or "1047" in message  # the survivor's own word
        assert "\n" not in message
    # Within connect_timeout: no hang while the cluster cannot serve.
    assert 0 < r["slowest_all_down_ms"] < CONNECT_TIMEOUT_MS + 1000
    assert r["nodes_at_end"] == ["node1"]


def test_round_robin_spreads_skips_the_dead_node_and_spreads_again(campaign):
    r = campaign[0]["round_robin_kill"]
    assert r["nodes_before"] == ["node1", "node2", "node3"]
    assert r["nodes_after_fault"] == ["node1", "node3"]
    assert r["nodes_at_end"] == ["node1", "node2", "node3"]
    assert r["errors_during"] <= 4


def test_wsrep_sync_wait_makes_a_write_on_one_node_visible_to_a_read_on_another(campaign):
    sync_wait = campaign[1]
    assert sync_wait["session_value_with"] == 1
    assert sync_wait["missed_with"] == 0
