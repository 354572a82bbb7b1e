"""Has the server closed an idle connection, or sent it something unasked?

One zero-timeout poll() of the connection's socket: no round trip. It is
called through ctypes.PyDLL, which keeps the GIL, because select.poll()
releases it around even a zero-timeout call, and in a process whose
threads all want the GIL (a gunicorn worker with 16 threads) the thread
that let go waits up to the switch interval (5 ms) to get it back: the
convoy effect, paid at every checkout. It also sidesteps gevent, whose
patched poll() yields to its event loop (about 29 us instead of 1).
"""

from __future__ import annotations

import ctypes
import select
import sys
from typing import Any

_EVENTS = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class _PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


def _libc_poll() -> Any:
    try:
        poll = ctypes.PyDLL(None).poll
    except (OSError, AttributeError):  # no dlopen(NULL) or no poll(): use select's
        return None
    # No argtypes: the arguments are passed as ready-made ctypes objects,
    # which spares a conversion per call (0.6 us a call instead of 1).
    poll.restype = ctypes.c_int
    return poll


_ONE = ctypes.c_ulong(1)  # nfds_t
_NO_WAIT = ctypes.c_int(0)


_poll = _libc_poll()


class SocketWatch:
    """Watches one socket descriptor; signalled() is True if it is readable or closed."""

    __slots__ = ("_pollfd", "_pollfd_ref", "_poller")

    def __init__(self, fd: int) -> None:
        self._pollfd = self._pollfd_ref = self._poller = None
        if _poll is not None:
            self._pollfd = _PollFd(fd, _EVENTS, 0)
            self._pollfd_ref = ctypes.byref(self._pollfd)
        else:
            self._poller = _select_poll()
            self._poller.register(fd, _EVENTS)

    def signalled(self) -> bool:
        if self._pollfd_ref is not None:
            return _poll(self._pollfd_ref, _ONE, _NO_WAIT) != 0  # 0: nothing; -1 (an error) counts as suspect
        return bool(self._poller.poll(0))


def _select_poll() -> Any:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original("select", "poll")()
    return select.poll()
