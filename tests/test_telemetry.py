"""OpenTelemetry metrics, read with the SDK's in-memory reader, against the real server."""

import pytest
from django.db import close_old_connections, connections
from django.test import override_settings

from django_mysqlpool import telemetry
from django_mysqlpool.errors import PoolTimeout
from tests.helpers import checkout_in_another_thread, connection_id

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 0.2}


@pytest.fixture(scope="module")
def reader():
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    telemetry._instruments = None  # made again, with this provider, by the next pool
    return reader


def _metrics(reader):
    """{name: (unit, [(attributes, value), ...])} of what the reader collected."""
    found = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = []
                for point in metric.data.data_points:
                    value = point.count if hasattr(point, "bucket_counts") else point.value
                    points.append((dict(point.attributes), value))
                found[metric.name] = (metric.unit, points)
    return found


@override_settings(MYSQLPOOL_OPENTELEMETRY=True, MYSQLPOOL_ARGUMENTS=SINGLE)
def test_the_semantic_conventions_pool_metrics_with_their_names_units_and_attributes(reader):
    for _ in range(3):
        connection_id()
        close_old_connections()  # parked: a wait of 0 and a use time each
    connection_id()  # held here: the next checkout times out
    (failure,) = checkout_in_another_thread()
    assert isinstance(failure, PoolTimeout)
    found = _metrics(reader)
    connections["default"].close()
    pool = {"db.client.connection.pool.name": "default"}
    assert found["db.client.connection.count"][0] == "{connection}"
    counts = {point[0]["db.client.connection.state"]: point[1]
              for point in found["db.client.connection.count"][1] if point[0].items() >= pool.items()}
    assert counts == {"idle": 0, "used": 1}  # the one connection, held
    for name in ("db.client.connection.max", "db.client.connection.idle.max", "db.client.connection.idle.min"):
        assert found[name] == ("{connection}", [(pool, 1)])
    assert found["db.client.connection.pending_requests"] == ("{request}", [(pool, 0)])
    assert found["db.client.connection.timeouts"] == ("{timeout}", [(pool, 1)])
    for name, at_least in (("db.client.connection.create_time", 1), ("db.client.connection.wait_time", 4),
                           ("db.client.connection.use_time", 3)):
        unit, points = found[name]
        assert unit == "s" and points[0][0] == pool and points[0][1] >= at_least, (name, points)


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_off_by_default_the_pool_records_nothing():
    connection_id()
    assert connections["default"].pool.telemetry is None
    connections["default"].close()
