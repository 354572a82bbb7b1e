"""Ties checked-out connections to the lifetime of the thread that checked them out."""

from __future__ import annotations

import threading
import weakref
from typing import Any


class ThreadHoldings:
    """What one thread has checked out; gives it back when the thread ends.

    Django's connection wrapper sits in reference cycles, so a thread that
    ends holding a connection would release it only at the next cyclic
    garbage collection, which may be long in coming. This object has no
    cycles: the thread's local storage frees it as the thread ends, and its
    __del__ gives back whatever is still out.
    """

    __slots__ = ("held", "__weakref__")

    def __init__(self) -> None:
        self.held: list[Any] = []  # handles (handle.PooledConnection)

    def __del__(self) -> None:
        for handle in self.held[:]:
            try:
                handle.close()
            except Exception:  # a dead server: nothing to tell anyone
                pass


_thread_local = threading.local()


def no_holdings() -> None:
    """What a handle tied to no thread keeps instead of a weak reference to holdings."""
    return None


def holdings_of_this_thread() -> "weakref.ref[ThreadHoldings]":
    """A weak reference to the calling thread's holdings, made on first use."""
    try:
        return _thread_local.holdings_ref
    except AttributeError:
        holdings = _thread_local.holdings = ThreadHoldings()
        _thread_local.holdings_ref = weakref.ref(holdings)
        return _thread_local.holdings_ref
