"""Client and server on fixed CPUs, for the single-threaded cycle measure.

On a small machine the scheduler moves a loopback client and its server
between sharing a CPU and running on two, and flips between the two within
a measurement. On the 2-core machine this was built on, a round trip takes
about 45 us when they share a CPU (the wake-up is a direct hand-over) and
about 150 us when they do not (a wake-up across CPUs). Pinning this process
and every thread of a local server keeps the round trip in one mode for
every engine; the benchmark measures both. Used only when the server's pid
file is readable here and the machine has two CPUs or more; restored
afterwards.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

MODES = ("same CPU", "separate CPUs")


def _server_tasks(admin) -> list[int]:
    cursor = admin.cursor()
    cursor.execute("SELECT @@pid_file")
    (pid_file,) = cursor.fetchone()
    with open(pid_file) as handle:
        pid = int(handle.read().strip())
    return [int(task) for task in os.listdir(f"/proc/{pid}/task")]


def why_not(admin) -> str | None:
    """None if pinning is possible here, else the reason it is not."""
    if len(os.sched_getaffinity(0)) < 2:
        return "one CPU"
    try:
        _server_tasks(admin)
    except (OSError, ValueError, TypeError) as error:  # a remote server, or no access
        return f"server process not reachable ({error.__class__.__name__})"
    return None


@contextlib.contextmanager
def pinned(admin, mode: str) -> Iterator[None]:
    """Client and server on one CPU ("same CPU") or on two ("separate CPUs")."""
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[0]
    client_cpu = cpus[0] if mode == "same CPU" else cpus[1]
    before = {}
    # New server threads (connections the stock engine opens) inherit the
    # affinity of the thread that creates them, which is pinned too.
    for task in _server_tasks(admin):
        try:
            before[task] = os.sched_getaffinity(task)
            os.sched_setaffinity(task, {server_cpu})
        except OSError:  # a thread that ended meanwhile
            pass
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {client_cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)
        for task, mask in before.items():
            try:
                os.sched_setaffinity(task, mask)
            except OSError:
                pass
