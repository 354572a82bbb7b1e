"""Has the server closed an idle connection, or sent it something unasked?

One zero-timeout poll() of the connection's socket: no round trip. It is
called through ctypes.PyDLL, which keeps the GIL, because select.poll()
releases it around even a zero-timeout call, and in a process whose
threads all want the GIL (a gunicorn worker with 16 threads) the thread
that let go waits up to the switch interval (sys.getswitchinterval()) to
get it back: the convoy effect, paid at every checkout. It also sidesteps
gevent, whose patched poll() yields to its event loop, many times slower.
"""

from __future__ import annotations

import ctypes
import functools
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
    # which spares a conversion per call.
    poll.restype = ctypes.c_int
    return poll


# Converted once, ready to pass (from_param(), as ctypes would do at every call).
_ONE = ctypes.c_ulong.from_param(1)  # nfds_t
_NO_WAIT = ctypes.c_int.from_param(0)


_poll = _libc_poll()


class SocketWatch:
    """Watches one socket descriptor; signalled() is True if it is readable or closed.

    poll_now() is the same test with a truthy or falsy answer, called with
    no Python frame of its own (a partial of the C function): the checkout
    that takes back a parked connection makes it at every request.
    """

    __slots__ = ("_pollfd", "poll_now")

    def __init__(self, fd: int) -> None:
        self._pollfd = None
        if _poll is not None:
            self._pollfd = _PollFd(fd, _EVENTS, 0)
            # 0: nothing; 1: readable or closed; -1 (an error) counts as suspect.
            self.poll_now = functools.partial(_poll, ctypes.byref(self._pollfd), _ONE, _NO_WAIT)
        else:
            poller = _select_poll()
            poller.register(fd, _EVENTS)
            self.poll_now = functools.partial(poller.poll, 0)  # a list: empty if nothing

    def signalled(self) -> bool:
        return bool(self.poll_now())


def _select_poll() -> Any:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original("select", "poll")()
    return select.poll()
