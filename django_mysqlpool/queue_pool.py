"""QueuePool that keeps the connections a burst opened, with a lean checkout.

SQLAlchemy's QueuePool closes an overflow connection the moment it is given
back whenever pool_size connections are already idle. A site with more
threads than pool_size then closes and reopens connections on nearly every
request: the cost pooling exists to avoid. Here every connection the bound
allows may stay idle, and ManagedPool.retire_idle() closes those beyond
min_idle once they have been idle for idle_timeout. Connections are reused
last-in, first-out by default, so the ones a quiet period does not need sink
to the bottom and retire.

The idle connections sit in a deque under one lock instead of SQLAlchemy's
queue: taking or returning one is a lock and a deque operation, where the
queue's condition variables cost several microseconds per request. A
checkout that has to wait also wakes when a connection is closed and its
slot frees, which SQLAlchemy's queue does not notice.

A connection may also be parked instead of given back (see ParkingSpot):
it stays with the Django connection that used it, which takes it back
without touching the pool, while any other checkout may still take it
before it opens a connection or waits. Parked connections count as idle.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Callable, Literal

from sqlalchemy import exc
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from .stats import PoolStats


class ParkingSpot:
    """Where one handle parks its physical connection between requests.

    The owner parks (park()) and takes back (take_back()) without the pool's
    lock; the pool hands a parked record to another checkout under its lock.
    Both sides pop, and deque.pop() is atomic, so a record goes to one of
    them (a deque keeps its storage when emptied, where a list would free
    it). listed_in is the pool whose list of spots holds this one (changed
    under that pool's lock): the owner may move to another pool (settings
    changed, pools disposed), and a spot only ever holds records of the
    pool that lists it.
    """

    __slots__ = ("parked", "listed_in")

    def __init__(self) -> None:
        self.parked: deque[ConnectionPoolEntry] = deque()
        self.listed_in: BurstKeepingQueuePool | None = None

    def park(self, record: ConnectionPoolEntry, pool: "BurstKeepingQueuePool") -> None:
        """Park a record of pool here; it goes to a waiter at once if pool has one.

        The order matters: the record is parked before the listing and the
        waiters are read, and a checkout unlists a spot before it pops and
        counts itself as waiting before it looks, so a parked record is
        never in a spot nobody will look at, nor kept from a waiter. If the
        pool was disposed meanwhile, the record closes.
        """
        listed_in = self.listed_in
        if listed_in is not None and listed_in is not pool:
            listed_in.unlist(self)  # moved to another pool since the last park
        self.parked.append(record)
        if self.listed_in is not pool or pool._waiters or pool._disposed:
            pool._list_and_serve(self)

    def take_back(self) -> ConnectionPoolEntry | None:
        """The owner's own parked record, unless another checkout took it."""
        try:
            return self.parked.pop()
        except IndexError:
            return None

    @property
    def in_use(self) -> bool:
        """True if a record is parked here or a pool lists this spot."""
        return bool(self.parked) or self.listed_in is not None

    def leave(self) -> None:
        """Take this spot off its pool's list: its owner is done with it."""
        listed_in = self.listed_in
        if listed_in is not None:
            listed_in.unlist(self)

    def abandon(self) -> None:
        """Forget the parked record and the listing without touching the pool.

        For a forked child's copy: the record and the pool are the parent's,
        and no lock of the parent's pool may be taken here.
        """
        self.parked.clear()
        self.listed_in = None


class _Waiter:
    """One checkout waiting in line: what it is handed, and the lock it sleeps on."""

    __slots__ = ("wakeup", "record", "served")

    def __init__(self) -> None:
        self.wakeup = threading.Lock()
        self.wakeup.acquire()  # released by whoever serves it
        # The record handed over, or None with served: a free slot to open one in.
        self.record: ConnectionPoolEntry | None = None
        self.served = False


class QueueFull(Exception):
    """max_waiting checkouts already wait (ManagedPool turns it into errors.TooManyRequests)."""


class BurstKeepingQueuePool(QueuePool):
    def __init__(
        self,
        creator: Any,
        pool_size: int = 5,
        max_overflow: int = 10,
        timeout: float = 30.0,
        use_lifo: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(
            creator, pool_size=pool_size, max_overflow=max_overflow, timeout=timeout,
            use_lifo=use_lifo, **kw,
        )
        self._pool = None  # type: ignore[assignment]  # SQLAlchemy's queue; _idle replaces it
        # Its waits and timeouts are counted here; ManagedPool counts the rest.
        self.stats = PoolStats()
        # Checkouts that may wait at once (None: any number); set by ManagedPool.
        self.max_waiting: int | None = None
        self._core_size = pool_size
        self._use_lifo = use_lifo
        # Open connections are _core_size + _overflow, as in QueuePool.
        self._idle: deque[ConnectionPoolEntry] = deque()  # oldest given back first
        # Re-entrant: a connection garbage-collected while this thread holds
        # the lock gives itself back through _do_return_conn().
        self._lock = threading.RLock()
        # Checkouts waiting for a connection, first come first served: a
        # connection given back, unparked or freed goes to the first of
        # them directly, so a checkout arriving meanwhile cannot take it
        # (with a condition variable, the waiter woken would find it gone
        # and wait again, at the back). No connection is idle while any
        # waits.
        self._waiters: deque[_Waiter] = deque()
        # Spots that have parked a record, oldest listing first; a spot
        # whose owner took its record back stays listed (one per owner).
        self._spots: dict[ParkingSpot, None] = {}
        # A forked child must never take this lock: a parent's thread may
        # have held it at the fork.
        self._pid = os.getpid()
        # Set under the lock by dispose(): from then on nothing becomes idle
        # here (it would stay open in a pool nobody checks out from again);
        # a record given back, parked or unparked is closed instead.
        self._disposed = False

    def _list_and_serve(self, spot: ParkingSpot) -> None:
        # ParkingSpot.park()'s second half: list the spot, and give its
        # record to a waiter (or close it, once disposed).
        if spot.listed_in is not self:
            with self._lock:
                self._spots[spot] = None
                spot.listed_in = self
        if self._waiters or self._disposed:
            # Someone is waiting for a connection: this one goes to them. Or
            # the pool was disposed while the owner was parking: it closes.
            taken = spot.take_back()
            if taken is not None:
                self._do_return_conn(taken)

    def unlist(self, spot: ParkingSpot) -> None:
        """Take a spot off this pool's list (its owner is gone, or moved to another pool)."""
        if self._pid != os.getpid():
            return  # a forked child's copy: the lock may never be free here
        with self._lock:
            if spot.listed_in is self:
                del self._spots[spot]
                spot.listed_in = None

    def _take_parked(self) -> ConnectionPoolEntry | None:
        # Under self._lock. Oldest listing first.
        spots = self._spots
        while spots:
            spot = next(iter(spots))
            del spots[spot]
            spot.listed_in = None
            record = spot.take_back()
            if record is not None:
                return record
        return None

    def unpark(self, may_unpark: Callable[[ConnectionPoolEntry], bool]) -> int:
        """Move the parked records may_unpark() accepts to the idle ones (in a
        disposed pool: close them); returns how many."""
        moved, doomed = 0, []
        with self._lock:
            for spot in list(self._spots):
                try:
                    last = spot.parked[-1]
                except IndexError:  # none, or the owner took it back meanwhile
                    continue
                if may_unpark(last):
                    record = spot.take_back()
                    if record is None:
                        continue
                    if self._disposed:
                        doomed.append(record)  # its slot frees (and goes to a waiter) as it closes
                    else:
                        if not self._hand_over(record):
                            self._idle.appendleft(record)  # long unused: first to retire
                        moved += 1
        self._close_all(doomed)
        return moved + len(doomed)

    def parked(self) -> int:
        with self._lock:
            return sum(1 for spot in self._spots if spot.parked)

    def _do_get(self) -> ConnectionPoolEntry:
        with self._lock:
            if self._idle:  # (never while checkouts wait: what is given back goes to them)
                return self._idle.pop() if self._use_lifo else self._idle.popleft()
            if not self._waiters:  # else a newcomer queues behind them, first come first served
                record = self._take_parked()
                if record is not None:
                    return record
                if self._inc_overflow():
                    waiter = None  # a slot for a new connection, opened below
                else:
                    waiter = self._queue()
            else:
                waiter = self._queue()
        if waiter is not None:
            record = self._wait(waiter)
            if record is not None:
                return record
        try:
            return self._create_connection()
        except BaseException:
            self._dec_overflow()  # the slot goes to the next in line, if any
            raise

    def _queue(self) -> "_Waiter":
        # Under self._lock: join the line, or refuse at once past max_waiting.
        if self.max_waiting is not None and len(self._waiters) >= self.max_waiting:
            self.stats.requests_errors += 1
            raise QueueFull(len(self._waiters))
        self.stats.requests_queued += 1
        waiter = _Waiter()
        self._waiters.append(waiter)
        # An owner parking from now on sees a waiter and hands its record
        # over; one that parked just before did not: serve its record now,
        # to whoever is first in line.
        record = self._take_parked()
        if record is not None:
            self._hand_over(record)
        return waiter

    def _wait(self, waiter: "_Waiter") -> ConnectionPoolEntry | None:
        """The record handed to waiter, or None if it was handed a slot to open one in."""
        started = time.monotonic()
        try:
            served = waiter.wakeup.acquire(True, self._timeout)
        except BaseException:  # an interrupt (gevent.Timeout, KeyboardInterrupt) while waiting
            self._leave_line(waiter)
            raise
        now = time.monotonic()
        if not served:
            with self._lock:
                # Served meanwhile (between the timeout and the lock): take it.
                served = waiter.served
                if not served:
                    self._waiters.remove(waiter)
                    self.stats.requests_errors += 1
        self.stats.requests_wait_ms += (now - started) * 1000
        if not served:
            raise exc.TimeoutError(
                "QueuePool limit of size %d overflow %d reached, "
                "connection timed out, timeout %0.2f"
                % (self.size(), self.overflow(), self._timeout),
                code="3o7r",
            )
        return waiter.record

    def _leave_line(self, waiter: "_Waiter") -> None:
        # An interrupted waiter: out of the line, and what it was handed
        # meanwhile goes to the next one, so the pool loses no slot.
        with self._lock:
            if not waiter.served:
                self._waiters.remove(waiter)
                return
        if waiter.record is not None:
            self._do_return_conn(waiter.record)
        else:
            self._dec_overflow()

    def _hand_over(self, record: ConnectionPoolEntry | None) -> bool:
        """Under self._lock: give record (None: a free slot) to the first in line; False if none waits."""
        waiters = self._waiters
        if not waiters:
            return False
        waiter = waiters.popleft()
        waiter.record = record
        waiter.served = True
        waiter.wakeup.release()
        return True

    @property
    def can_park(self) -> bool:
        """Whether connections may park here (see ParkingSpot).

        Parking keeps a connection with the handle that used it, which would
        defeat the rotation a first-in, first-out pool is chosen for; and a
        checkin listener expects to see every give-back.
        """
        return self._use_lifo and not self.dispatch.checkin

    def return_record(self, record: Any) -> None:
        """Put a checked-out record back: record.checkin(_fairy_was_created=False), made lean.

        What checkin() ends with, minus its bookkeeping for SQLAlchemy's
        connection proxies (which this package never creates), unless a
        checkin listener or a finalize callback needs it.
        test_queue_pool.py checks that the two leave the pool alike.
        """
        if self.dispatch.checkin or record.finalize_callback:
            record.checkin(_fairy_was_created=False)
        else:
            self._do_return_conn(record)

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        with self._lock:
            if not self._disposed:
                if not self._hand_over(record):
                    self._idle.append(record)
                return
        self._close_all([record])

    def _close_all(self, records: list) -> None:
        # Outside the lock: closing may wait on the network. A close that
        # raises (an interrupt, a close listener) stops neither the rest
        # nor the count; the first error is raised at the end.
        error = None
        for record in records:
            try:
                record.close()
            except BaseException as caught:
                error = error or caught
            finally:
                self._dec_overflow()  # as QueuePool does when it closes a surplus one
        if error is not None:
            raise error

    def _inc_overflow(self) -> bool:
        with self._lock:
            if self._max_overflow == -1 or self._overflow < self._max_overflow:
                self._overflow += 1
                return True
            return False

    def _dec_overflow(self) -> Literal[True]:
        with self._lock:
            # The slot goes to the first in line (who opens a connection in
            # it) rather than to whichever checkout comes next.
            if not self._hand_over(None):
                self._overflow -= 1
        return True

    def close_idle(self, keep: int, may_retire: Callable[[ConnectionPoolEntry], bool]) -> int:
        """Close the oldest idle records may_retire() accepts, leaving keep idle; returns how many."""
        taken = []
        with self._lock:
            while len(self._idle) > keep and may_retire(self._idle[0]):
                taken.append(self._idle.popleft())
        self._close_all(taken)
        return len(taken)

    def close_idle_where(self, matches: Callable[[ConnectionPoolEntry], bool]) -> int:
        """Close every idle record matches() accepts, wherever it is in the queue; returns how many."""
        with self._lock:
            taken = [record for record in self._idle if matches(record)]
            for record in taken:
                self._idle.remove(record)
        self._close_all(taken)
        return len(taken)

    def size(self) -> int:
        return self._core_size

    def open_count(self) -> int:
        """Connections open now: idle, parked and checked out (and those being opened)."""
        return self._core_size + self._overflow

    def waiting(self) -> int:
        """Checkouts waiting for a connection now."""
        return len(self._waiters)

    def checkedin(self) -> int:
        with self._lock:
            return len(self._idle) + self.parked()

    def overflow(self) -> int:
        return self._overflow if self._core_size else 0

    def checkedout(self) -> int:
        return self._core_size + self._overflow - self.checkedin()

    def dispose(self) -> None:
        # QueuePool.dispose() resets the overflow counter as if nothing were
        # checked out; connections that are out would then not count against
        # the bound. Close the idle ones and count each one down instead.
        with self._lock:
            self._disposed = True
        self.unpark(lambda record: True)
        self.close_idle(0, lambda record: True)
        self.logger.info("Pool disposed. %s", self.status())

    def recreate(self) -> "BurstKeepingQueuePool":
        self.logger.info("Pool recreating")
        return self.__class__(
            self._creator,
            pool_size=self._core_size,
            max_overflow=self._max_overflow,
            pre_ping=self._pre_ping,
            use_lifo=self._use_lifo,
            timeout=self._timeout,
            recycle=self._recycle,
            echo=self.echo,
            logging_name=self._orig_logging_name,
            reset_on_return=self._reset_on_return,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )
