"""A connection pool for Django on MySQL and MariaDB."""

from .decorators import auto_close_db
from .forks import close_pool

__all__ = ["auto_close_db", "close_pool"]
