"""auto_close_db: give a thread's connections back when a function ends."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.db import connections

F = TypeVar("F", bound=Callable[..., Any])


def close_thread_connections() -> None:
    """Give back (or close) every connection this thread opened, on every alias."""
    for connection in connections.all(initialized_only=True):
        connection.close()


def auto_close_db(func: F) -> F:
    """Decorate a thread's work so its connections go back to the pool when it ends.

    The return value and any exception pass through unchanged. Works on
    plain functions and on coroutine functions (for those, the connections
    that sync_to_async code used in the call are given back).
    """
    if iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            finally:
                await sync_to_async(close_thread_connections)()

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            close_thread_connections()

    return wrapper  # type: ignore[return-value]
