"""Pool statistics: counters named after psycopg_pool's where the meaning is the same."""

from __future__ import annotations

# What each pool counts, since it was made. Each is a plain attribute
# incremented in place: under the GIL no thread switch falls between the
# load and the store of such an increment, so none is lost. read() reports
# them since the last pop (a baseline taken then), and requests_num as
# checkouts + parked_reclaims; cumulative() as counted, for OpenTelemetry's
# counters, which must never go down.
COUNTERS = (
    "checkouts",  # checkouts through the pool (idle or new connections)
    "requests_queued",  # checkouts that had to wait for a connection
    "requests_wait_ms",  # milliseconds spent waiting, over all checkouts
    "requests_errors",  # checkouts that failed: no connection free within timeout
    "connections_num",  # connections opened
    "connections_ms",  # milliseconds spent opening them
    "connections_errors",  # connections that could not be opened
    "connections_lost",  # idle connections found dead at checkout (and replaced)
    "returns_bad",  # connections closed at give-back: an error, or a change no reset undoes
    "resets",  # sessions reset at give-back
    "rollbacks",  # give-backs that sent a ROLLBACK
    "closed_expired",  # connections closed past max_lifetime (or recycle)
    "closed_idle",  # idle connections retired after idle_timeout
    "parked_reclaims",  # requests served by the connection parked with them, with no checkout
)


class PoolStats:
    """The counters of one pool."""

    __slots__ = COUNTERS + ("_baseline",)

    checkouts: int
    requests_queued: int
    requests_wait_ms: float
    requests_errors: int
    connections_num: int
    connections_ms: float
    connections_errors: int
    connections_lost: int
    returns_bad: int
    resets: int
    rollbacks: int
    closed_expired: int
    closed_idle: int
    parked_reclaims: int

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self._baseline: dict[str, float] = dict.fromkeys(COUNTERS, 0)

    def cumulative(self) -> dict[str, float]:
        """Every counter as counted since the pool was made."""
        return {name: getattr(self, name) for name in COUNTERS}

    def read(self, reset: bool = False) -> dict[str, float]:
        """The counters since the last reset, as reported (requests_num, not checkouts); reset: start again."""
        counted = self.cumulative()
        baseline = self._baseline
        values = {name: counted[name] - baseline[name] for name in COUNTERS}
        if reset:
            self._baseline = counted
        values["requests_num"] = values.pop("checkouts") + values["parked_reclaims"]
        return values
