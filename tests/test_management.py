"""manage.py mysqlpool: settings and statistics per alias; --check against the real server."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import override_settings

from tests.helpers import connection_id


def _run(*args):
    out = io.StringIO()
    call_command("mysqlpool", *args, stdout=out)
    return out.getvalue()


def test_the_table_shows_each_pooled_alias_its_settings_and_statistics():
    connection_id()
    connections["default"].close()
    table = _run()
    assert "default: QueuePool on " in table and "stock" not in table.split(":")[0]
    assert "pool_size" in table and "max_lifetime" in table and "requests_num" in table
    assert "other-secret-pw" not in table


def test_json_reports_the_same_for_machines():
    connection_id()
    connections["default"].close()
    report = json.loads(_run("--json"))["aliases"]
    assert set(report) == {"default", "other_user", "other_db"}
    assert report["default"]["arguments"]["pool_size"] == 5
    assert report["default"]["stats"]["requests_num"] == 1


def test_check_reports_the_servers_limits_and_passes_when_the_pool_fits():
    output = _run("--check")
    assert "max_connections" in output and "wait_timeout" in output
    assert "The pools fit the server's limits." in output


@override_settings(MYSQLPOOL_PROCESSES=100_000)
def test_check_fails_when_the_bound_does_not_fit_max_connections():
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("mysqlpool", "--check", "--json", stdout=out)
    assert raised.value.returncode == 1
    problems = json.loads(out.getvalue())["problems"]
    assert any(problem.startswith("mysqlpool.W003") for problem in problems)
