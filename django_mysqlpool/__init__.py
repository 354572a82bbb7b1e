"""A connection pool for Django on MySQL and MariaDB."""

from __future__ import annotations

import logging
from typing import Any

from ._version import __version__
from .decorators import auto_close_db
from .forks import close_pool
from .registry import get_stats as _get_stats

__all__ = ["__version__", "auto_close_db", "close_pool", "get_stats", "pop_stats"]

# A library's logger: silent until the application's logging configuration
# says where its records go (Python's last-resort handler would print
# warnings to stderr of every program that has none).
logging.getLogger("django_mysqlpool").addHandler(logging.NullHandler())


def get_stats(alias: str | None = None) -> dict[str, dict[str, Any]]:
    """Each pool's statistics, by pool name (the alias's pools only, if given).

    Each key, its unit and its meaning are listed in the documentation's
    "Errors, checks and monitoring" page (docs/operations.rst).
    """
    return _get_stats(alias)


def pop_stats(alias: str | None = None) -> dict[str, dict[str, Any]]:
    """get_stats(), with the counters zeroed as they are read (the gauges are not counters)."""
    return _get_stats(alias, reset=True)
