"""A connection pool for Django on MySQL and MariaDB."""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .decorators import auto_close_db
from .forks import close_pool
from .registry import get_stats as _get_stats

__all__ = ["__version__", "auto_close_db", "close_pool", "get_stats", "pop_stats"]


def get_stats(alias: str | None = None) -> dict[str, dict[str, Any]]:
    """Each pool's statistics, by pool name (the alias's pools only, if given).

    The keys and their units are listed in the README ("Monitoring").
    """
    return _get_stats(alias)


def pop_stats(alias: str | None = None) -> dict[str, dict[str, Any]]:
    """get_stats(), with the counters zeroed as they are read (the gauges are not counters)."""
    return _get_stats(alias, reset=True)
