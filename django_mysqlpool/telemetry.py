"""OpenTelemetry metrics of the pools, as the semantic conventions name them (optional: MYSQLPOOL_OPENTELEMETRY).

Needs opentelemetry-api (pip install django-mysqlpool[otel]); what exports
the metrics (a Prometheus reader, OTLP) is the application's SDK setup.
Off by default; off, no instrument exists and the pool records nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"

_instruments: "_Instruments | None" = None


class PoolTelemetry:
    """The histograms one pool records into, with its name as the attribute."""

    __slots__ = ("attributes", "_instruments")

    def __init__(self, name: str, instruments: "_Instruments") -> None:
        self.attributes = {POOL_NAME: name}
        self._instruments = instruments

    def record_create(self, seconds: float) -> None:
        self._instruments.create_time.record(seconds, self.attributes)

    def record_wait(self, seconds: float) -> None:
        self._instruments.wait_time.record(seconds, self.attributes)

    def record_use(self, seconds: float) -> None:
        self._instruments.use_time.record(seconds, self.attributes)


class _Instruments:
    def __init__(self, named_pools: Callable[[], dict[str, Any]]) -> None:
        from opentelemetry import metrics

        from ._version import __version__

        meter = metrics.get_meter("django_mysqlpool", __version__)
        self._named_pools = named_pools
        self.create_time = meter.create_histogram(
            "db.client.connection.create_time", unit="s", description="The time it took to create a new connection.")
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time", unit="s",
            description="The time it took to obtain an open connection from the pool.")
        self.use_time = meter.create_histogram(
            "db.client.connection.use_time", unit="s",
            description="The time between borrowing a connection and returning it to the pool.")
        meter.create_observable_up_down_counter(
            "db.client.connection.count", callbacks=[self._count], unit="{connection}",
            description="The number of connections that are currently in state described by the state attribute.")
        meter.create_observable_up_down_counter(
            "db.client.connection.idle.max", callbacks=[self._gauge("pool_max")], unit="{connection}",
            description="The maximum number of idle open connections allowed.")
        meter.create_observable_up_down_counter(
            "db.client.connection.idle.min", callbacks=[self._gauge("pool_min")], unit="{connection}",
            description="The minimum number of idle open connections allowed.")
        meter.create_observable_up_down_counter(
            "db.client.connection.max", callbacks=[self._gauge("pool_max")], unit="{connection}",
            description="The maximum number of open connections allowed.")
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests", callbacks=[self._gauge("requests_waiting")],
            unit="{request}", description="The number of current pending requests for an open connection.")
        meter.create_observable_counter(
            "db.client.connection.timeouts", callbacks=[self._timeouts], unit="{timeout}",
            description="The number of connection timeouts that have occurred trying to obtain a "
                        "connection from the pool.")

    def _gauges(self) -> Iterable[tuple[str, dict[str, Any]]]:
        for name, managed in self._named_pools().items():
            yield name, managed.get_stats()

    def _count(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for name, stats in self._gauges():
            if stats["pool_size"] is None:
                continue
            idle = stats["pool_available"]
            yield Observation(idle, {POOL_NAME: name, STATE: "idle"})
            yield Observation(stats["pool_size"] - idle, {POOL_NAME: name, STATE: "used"})

    def _gauge(self, key: str) -> Callable[[Any], Iterable[Any]]:
        def observe(options: Any) -> Iterable[Any]:
            from opentelemetry.metrics import Observation

            for name, stats in self._gauges():
                if stats[key] is not None:
                    yield Observation(stats[key], {POOL_NAME: name})

        return observe

    def _timeouts(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for name, managed in self._named_pools().items():
            # Cumulative: pop_stats() must not make a counter go down.
            yield Observation(managed.stats.cumulative()["requests_errors"], {POOL_NAME: name})


def for_pool(name: str, named_pools: Callable[[], dict[str, Any]]) -> PoolTelemetry:
    """The telemetry of a new pool named name; the instruments are made with the first."""
    global _instruments
    if _instruments is None:
        _instruments = _Instruments(named_pools)
    return PoolTelemetry(name, _instruments)
