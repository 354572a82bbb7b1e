"""PooledConnection: the handle Django's wrapper holds in place of a driver connection.

The handle checks a connection out (through its owner's reattach callback),
passes the driver's attributes through, parks or gives the connection back
at a request's end, and refuses every use once closed. The words it uses
(checked out, detached, parked, taken back, given back, orphaned) are
defined in lifecycle.py.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections import deque
from typing import Any, Callable

from . import cursors, drivers, lifecycle, ownership
from .drivers import SERVER_STATUS_IN_TRANS
from .errors import WrongThread, driver_interface_error, given_back
from .queue_pool import ParkingSpot
from .state import STATE_ATTRIBUTE, ConnectionState, must_close, state_of
from .threads import ThreadHoldings, holdings_of_this_thread, no_holdings


class _GivenBack:
    """Stands in for a physical connection once its handle is closed.

    Django may still touch its wrapper's connection after _close() (for
    instance is_usable() in its own tests); the answer must be an
    errors.ConnectionGivenBack that is the driver's own InterfaceError,
    never someone else's live socket.
    """

    __slots__ = ("_interface_error",)

    def __init__(self, interface_error: type[Exception]) -> None:
        self._interface_error = interface_error

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise given_back(self._interface_error, "the connection was given back to the pool")

        if name == STATE_ATTRIBUTE:  # PooledConnection.cursor() looks for it first
            refuse()
        return refuse


# Driver connection methods that change the session without a cursor: the
# give-back resets it.
_SESSION_METHODS = frozenset((
    "query", "select_db", "set_character_set", "set_charset", "set_sql_mode", "begin",
))
# Driver connection methods whose change no session reset undoes: the
# give-back closes the connection.
_UNRESETTABLE_METHODS = {
    # COM_RESET_CONNECTION keeps the login, and the server options.
    "change_user": "the login was changed with change_user()",
    "set_server_option": "a server option was changed with set_server_option()",
    # A reply not yet read would answer the reset, and every reply after
    # it would answer the statement before.
    "send_query": "a reply may be left unread after send_query()",
}


# One _GivenBack per driver error class: it holds nothing else, and a close()
# need not make one.
_given_back_instances: dict[type[Exception], _GivenBack] = {}


def _given_back_as(interface_error: type[Exception]) -> _GivenBack:
    given = _given_back_instances.get(interface_error)
    if given is None:
        given = _given_back_instances.setdefault(interface_error, _GivenBack(interface_error))
    return given


class PooledConnection:
    """A Django wrapper's handle on a pooled physical connection; close() gives it back.

    Every attribute the driver's connections have once open, but cursor()
    and close(), is passed to the driver connection (see _passing_through()),
    so Django's MySQL backend uses it exactly as it would use MySQLdb's
    connection. If its thread ends while it is checked out, or it is
    garbage-collected, it gives the connection back then.

    At a request's end the handle may instead be detached: the physical
    connection is parked or given back, and the handle stays with its
    Django wrapper, which then looks just like a persistent connection
    between requests. The next use of the handle takes its parked
    connection back, or checks one out through the wrapper's reattach
    callback, so a request pays neither Django's connect() nor its close().
    """

    # The driver's InterfaceError, for a handle closed while detached (set
    # on each driver's class, see _passing_through()).
    _interface_error: type[Exception] | None = None

    __slots__ = ("_record", "_driver_connection", "detached", "_managed", "_last_used",
                 "_holdings", "_reattach", "_released_state", "_released_lease", "_reattaching",
                 "_spot", "settings_checked", "_checked_out_at", "_owner_thread")

    def __init__(
        self, reattach: Callable[["PooledConnection"], None] | None = None, spot: ParkingSpot | None = None,
    ) -> None:
        # One element while checked out: deque.pop() is atomic, so two
        # threads closing a shared connection (or a close racing a thread's
        # end) can never both give it back. A deque, not a list: a list
        # emptied by pop() frees its storage, and the next append at the
        # next request allocates it again.
        self._record: deque[Any] = deque()
        self._driver_connection: Any = None  # None: detached
        # True between detach() and the next use: nothing checked out, the
        # handle kept. Kept in step with _driver_connection (None exactly
        # when detached) wherever that changes, so that the owner's check at
        # every query is a plain attribute read, not a property call.
        self.detached = True
        # The managed pool the connection came from: tells whether it was
        # disposed while this connection was out, and retires idle ones.
        self._managed: Any = None
        self._last_used = 0.0
        self._holdings: Callable[[], ThreadHoldings | None] = no_holdings
        # Called with this handle to check a connection out into it again
        # after detach(); None once closed.
        self._reattach = reattach
        # The session given back at the last detach() and its lease then: if
        # nobody has checked it out since, it needs no setup at reattach.
        self._released_state: ConnectionState | None = None
        self._released_lease = 0
        # Two threads sharing a wrapper (inc_thread_sharing()) must not both
        # check a connection out into this handle.
        self._reattaching = threading.RLock()
        # Where detach() parks a clean connection, when the pool allows it;
        # the owner's, when a closed handle of the owner left one (close_parking()).
        self._spot = ParkingSpot() if spot is None else spot
        # Set by the owner when it found its settings unchanged since the
        # parked connection was checked out: cursor() may then take it back
        # without asking the owner (the reattach callback).
        self.settings_checked = False
        # When the connection held now was checked out (kept only while the
        # pool records OpenTelemetry metrics: its use time).
        self._checked_out_at = 0.0
        # The thread this handle belongs to (Django's thread ident), or None
        # when threads may share it: a reference kept and used in another
        # thread must not reach the owner's session.
        self._owner_thread: int | None = None

    def attach(self, record: Any, connection: Any, managed: Any, tie_to_thread: bool = True) -> bool:
        """Hold a connection just checked out; True if it is the session this
        handle gave back last, untouched by anyone since."""
        if type(self) is PooledConnection:
            # From now on this handle answers for the driver's connection.
            self.__class__ = _passing_through(connection)
        state = state_of(connection)
        state.lease += 1
        untouched = state is self._released_state and state.lease == self._released_lease + 1
        self._released_state = None
        self._driver_connection = connection
        self.detached = False
        self._managed = managed
        self._last_used = time.monotonic()
        if managed.leak_threshold is not None or managed.telemetry is not None:
            self._note_checkout(managed, self._last_used, parked=False)
        self._tie(tie_to_thread)
        self._record.append(record)  # last: from here on close() gives it back
        return untouched

    def _tie(self, tie_to_thread: bool) -> None:
        if tie_to_thread:
            self._owner_thread = _thread.get_ident()
            if self._holdings() is None:
                # A weak reference, so the thread's holdings are in no cycle.
                reference = self._holdings = holdings_of_this_thread()
                holdings = reference()
                if holdings is not None:  # (it is: the thread's local storage holds it)
                    holdings.held.append(self)
        elif self._holdings is not no_holdings:
            self.untie_from_thread()

    def take_over(self, parking: "ClosedParking") -> Any:
        """Take the connection a closed handle of the same owner parked (see close_parking()).

        The driver connection, or None if there is none to take (another
        checkout took it, or it was dead, expired or its pool disposed):
        then check one out with attach(). This handle keeps the spot either
        way, and is tied to the calling thread, as close_parking() requires.
        """
        self._spot = parking.spot
        self._managed = parking.managed
        # Tied to the thread in the parking's place among what it holds.
        self._owner_thread = _thread.get_ident()
        reference = self._holdings = parking.holdings
        holdings = reference()
        if holdings is not None:
            held = holdings.held
            try:
                held[held.index(parking)] = self
            except ValueError:  # (the thread's end gave it back: it cannot be this thread's)
                held.append(self)
        connection = self.take_back()
        if connection is not None and type(self) is PooledConnection:
            self.__class__ = _passing_through(connection)
        return connection

    def untie_from_thread(self) -> None:
        """Keep this connection out when the thread that checked it out ends.

        For a connection Django lets several threads share
        (inc_thread_sharing()): another thread may still be using it.
        """
        holdings = self._holdings()
        self._holdings = no_holdings
        self._owner_thread = None
        if holdings is not None and self in holdings.held:
            holdings.held.remove(self)

    def _wrong_thread(self) -> WrongThread:
        return WrongThread(
            f"this pooled connection belongs to thread {self._owner_thread} and was used in thread "
            f"{_thread.get_ident()}; a Django connection belongs to the thread that uses it, unless "
            "shared with inc_thread_sharing()."
        )

    def _attached_connection(self) -> Any:
        owner = self._owner_thread
        if owner is not None and owner != _thread.get_ident():
            raise self._wrong_thread()
        connection = self._driver_connection
        if connection is None:
            with self._reattaching:
                connection = self._driver_connection
                if connection is None:
                    reattach = self._reattach
                    if reattach is None:
                        raise given_back(driver_interface_error(), "this connection handle was closed")
                    reattach(self)
                    connection = self._driver_connection
        return connection

    def cursor(self, cursorclass: Any = None) -> Any:
        owner = self._owner_thread
        if owner is not None and owner != _thread.get_ident():
            raise self._wrong_thread()
        connection = self._driver_connection
        if connection is None:
            if self.settings_checked:
                # What _attached_connection() would come to in its common
                # case, without asking the owner: take back the connection
                # parked at the last request's end, once the owner has found
                # its settings unchanged (under the lock only if threads may
                # share this handle, as in detach()).
                if self._holdings is no_holdings:
                    with self._reattaching:
                        connection = self._driver_connection
                        if connection is None:
                            connection = self.take_back()
                else:
                    connection = self.take_back()
            if connection is None:
                connection = self._attached_connection()
        else:
            self._last_used = time.monotonic()  # (a checkout sets it too)
        state = connection._django_mysqlpool_state
        # What the driver's cursor(cls) does (MySQLdb's and PyMySQL's alike),
        # minus its Python call: cls(connection). test_cursors.py checks
        # that its cursors are the driver's class, watched.
        if cursorclass is None:
            cursor = state.cursor_class(connection)
        else:
            # A class of the caller's own (SSCursor, DictCursor, ...) is watched too.
            cursor = cursors.lean_watching(cursorclass)(connection)
        cursor._mysqlpool_lease = state.lease
        # The driver's code reaches the driver connection through _get_db();
        # whoever asks the cursor for its connection gets this handle, which
        # watches what is done with it, and refuses once given back.
        cursor._mysqlpool_db = connection
        cursor.connection = self
        return cursor

    def next_result(self) -> int:
        """The driver's next_result(); -1 (no more results) when nothing is checked out.

        The driver's cursors call it on their connection (this handle) as
        they close: a cursor closed after its connection was parked or given
        back must neither check one out nor touch the next user's session.
        """
        connection = self._driver_connection
        if connection is None or type(connection) is _GivenBack:
            return -1
        return connection.next_result()

    def get_autocommit(self) -> bool:
        """The driver's get_autocommit(): as passed through, minus a wrapper per read.

        A read that changes nothing needs no guard against being kept past
        close(): a kept one finds the handle closed (or checks out for its
        owner) like every other use of it.
        """
        return self._attached_connection().get_autocommit()

    @property
    def driver_connection(self) -> Any:
        """The driver's own connection object (MySQLdb's, or PyMySQL's).

        Whatever is done with it goes unseen, and a reference kept past
        close() would reach the next user's session: the physical
        connection is closed when it is given back, not pooled.
        """
        connection = self._attached_connection()
        must_close(connection, "the driver connection was handed out")
        return connection

    @property
    def given_back(self) -> bool:
        """True when no physical connection is checked out: detached or closed."""
        return not self._record

    @property
    def state(self) -> ConnectionState:
        """The pool's state of the connection, checked out first if detached."""
        return state_of(self._attached_connection())

    def _claim(self) -> tuple[Any, Any]:
        """Take the record this handle holds, checked out or parked, and its
        connection; (None, None) if it holds none. deque.pop() is atomic:
        two threads closing a shared handle never both get it."""
        try:
            return self._record.pop(), self._driver_connection
        except IndexError:
            return self._pop_parked()

    def stale(self) -> bool:
        """True if this held connection sat idle long and no longer answers.

        For threads that keep a connection without closing it (daemons,
        CONN_MAX_AGE): checked before a query, never inside a transaction,
        whose loss must not be hidden.
        """
        connection = self._driver_connection
        if connection is None or not self._record:
            return False
        state = state_of(connection)
        ping_after = state.options.ping_after_idle
        if ping_after is None or time.monotonic() - self._last_used < ping_after:
            return False
        if not connection.get_autocommit() or state.control.in_transaction(connection) is not False:
            # A transaction, or the code's own transaction block under
            # autocommit off before its first statement: its loss must show.
            return False
        alive = drivers.ping(connection)
        self._last_used = time.monotonic()
        return not alive

    def detach(self, autocommit: bool | None = None, now: float | None = None) -> None:
        """Park or give back the connection, keeping this handle ready to check one out again.

        A clean connection of a pool that allows it is parked: it stays in
        this handle's spot, and this handle's next use takes it back with no
        pool lock, no queue and no settings lookup, unless another checkout
        took it first (it counts as idle, and anyone may). autocommit is the
        mode the owner expects at that next use: only a connection in
        autocommit mode, as its owner expects, parks; any other is given
        back (and rolled back), and set right at its next checkout.
        now: time.monotonic(), if the caller has it.
        """
        # Threads may share this handle (inc_thread_sharing()): one must not
        # attach a connection while another is half way through parking, so
        # then this runs under the lock that taking back and checking out
        # take. A handle tied to its thread needs no lock. (No with-block,
        # nor a second method: this runs at every request's end.)
        shared = self._holdings is no_holdings
        if shared:
            self._reattaching.acquire()
        try:
            try:
                record = self._record.pop()
            except IndexError:
                return
            connection = self._driver_connection
            self._driver_connection = None
            self.detached = True
            state = connection._django_mysqlpool_state
            managed = self._managed
            if managed.leak_threshold is not None or managed.telemetry is not None:
                self._note_give_back()
            if now is None:
                now = time.monotonic()
            try:
                # SessionControl.in_transaction(), inlined for its common
                # case (the flags read in place); test_handle.py checks
                # that the two agree. As in give_back(), the flag is read:
                # a raw START TRANSACTION must not stay open into the next
                # request either.
                live_status = state.control.live_status
                if live_status is not None:
                    in_transaction = live_status.value & SERVER_STATUS_IN_TRANS
                else:
                    in_transaction = state.control.in_transaction(connection) is not False
                parkable = (
                    # False once the pool is disposed (in a forked child every
                    # inherited pool is), and for a pool that resets every
                    # session (ManagedPool.parking).
                    managed.parking
                    and not state.dirty
                    and now < state.expires_at
                    # With autocommit off a transaction may be open that the
                    # flag cannot show (see give_back()): only a connection
                    # in autocommit mode, as its owner expects, parks.
                    and autocommit
                    and connection.get_autocommit()
                    and not in_transaction
                    # (Warnings: the watching cursors mark a session dirty
                    # at the statement that left them.)
                )
            except Exception:  # a connection closed under us: give_back() copes
                parkable = False
            except BaseException:  # an interrupt: the slot must come back all the same
                lifecycle.give_back(record, connection, managed)
                raise
            if parkable:
                # What give_back() does to a clean connection, minus the pool.
                state.lease += 1  # cursors kept from now on refuse to run
                state.returned_at = now
                self._released_state = state
                self._released_lease = state.lease
                self._spot.park(record, managed.pool)
                self.settings_checked = False
                return
            if lifecycle.give_back(record, connection, managed):
                # Pooled with its session as this wrapper left it (not reset).
                self._released_state = state
                self._released_lease = state.lease
        finally:
            if shared:
                self._reattaching.release()

    def take_back(self) -> Any:
        """Take back the connection detach() parked; None if there is none to take.

        None also when it was found dead or expired, or its pool disposed:
        it is then replaced through a full checkout. Nothing else is checked
        or set up: between requests nothing can have changed it, as with a
        persistent connection.
        """
        record: Any = self._spot.take_back()
        if record is None:
            return None
        connection: Any = record.dbapi_connection
        state = connection._django_mysqlpool_state
        managed = self._managed
        now = time.monotonic()
        poller = state.poller
        if (
            # The tests of lifecycle.usable_at_checkout() that can fail a
            # parked connection, inlined for the common case of none
            # failing (this runs at every request): any suspicion goes to
            # usable_at_checkout() itself. A pool stops parking once
            # disposed; take_back_ping_after is 0 with pre_ping.
            # test_queue_pool.py checks that the two agree for a parked
            # connection killed, recycled, idle past ping_after_idle, and
            # under pre_ping.
            not managed.parking
            or now >= state.expires_at
            or now - state.returned_at >= managed.take_back_ping_after
            or (poller is not None and poller.poll_now())
        ):
            try:
                usable = not managed.disposed and lifecycle.usable_at_checkout(
                    connection, now, managed.pre_ping
                )
            except BaseException as error:  # an interrupted ping: the slot must come back
                record._checkin_failed(error, _fairy_was_created=False)
                raise
            if not usable:
                if managed.disposed:
                    lifecycle.give_back(record, connection, managed)  # closes it, if this process may
                else:
                    managed.count_unusable(connection, now)
                    lifecycle.close_and_free(record)
                return None
        managed.stats.parked_reclaims += 1
        if managed.leak_threshold is not None or managed.telemetry is not None:
            self._note_checkout(managed, now, parked=True)
        state.lease += 1
        self._released_state = None
        self._driver_connection = connection
        self.detached = False
        self._last_used = now
        self._record.append(record)  # last: from here on close() gives it back
        return connection

    def give_back_parked(self) -> None:
        """Give the parked connection, if any, back to the pool for anyone."""
        record, connection = self._pop_parked()
        if record is not None:
            lifecycle.give_back(record, connection, self._managed)

    def _pop_parked(self) -> tuple[Any, Any]:
        record = self._spot.take_back()
        return record, (record.dbapi_connection if record is not None else None)

    def close(self) -> None:
        """Give the connection back: cleaned and pooled, or closed if it cannot be."""
        record, connection = self._claim()
        self._forget()
        if record is not None:
            self._note_give_back()
            lifecycle.give_back(record, connection, self._managed)

    def close_parking(self, autocommit: bool) -> "ClosedParking | None":
        """Close this handle as close() does, but park a clean connection for its owner's next connect().

        The connection parks as at detach() (autocommit: the mode that
        next connect() sets), where any other checkout may take it, and a
        waiting one is handed it at once; otherwise it is given back. The
        spot goes to the returned ClosedParking, for the owner's next handle
        (take_over()), and this handle refuses every use from now on, as
        after close(). Only for a handle tied to its thread: the thread's
        end gives back what is still parked. None (and closed as close()
        does) for a handle that is not.
        """
        if self._holdings() is None:
            self.close()
            return None
        self.detach(autocommit)
        parking = ClosedParking(self._spot, self._managed, self._holdings, type(self))
        self._spot = _NO_SPOT
        self._forget(successor=parking)
        return parking

    def discard(self) -> None:
        """Close the physical connection instead of pooling it (it had an error)."""
        record, connection = self._claim()
        self._forget()
        if record is not None and ownership.owned_here(connection):
            self._note_give_back()
            self._managed.stats.returns_bad += 1
            lifecycle.close_and_free(record)

    def _note_checkout(self, managed: Any, now: float, parked: bool) -> None:
        # For leak detection and OpenTelemetry, when the pool has either on
        # (callers test that first: off, neither costs a call).
        if managed.leak_threshold is not None:
            managed.note_checkout(self)
        if managed.telemetry is not None:
            if parked:
                managed.telemetry.record_wait(0.0)  # no wait: it was parked with this handle
            self._checked_out_at = now

    def _note_give_back(self) -> None:
        managed = self._managed
        if managed is None:
            return
        if managed.leak_threshold is not None:
            managed.note_give_back(self)
        if managed.telemetry is not None:
            managed.telemetry.record_use(time.monotonic() - self._checked_out_at)

    def orphan(self) -> None:
        """Drop everything without a word to the server: the connection is not ours.

        For a forked child, whose copy of this handle holds (or parked) its
        parent's connection: afterwards it can neither use nor check out one.
        """
        self._record.clear()
        self._spot.abandon()
        self._reattach = None
        self._driver_connection = _given_back_as(driver_interface_error())
        self.detached = False

    def _forget(self, successor: "ClosedParking | None" = None) -> None:
        # successor: what takes this handle's place among what its thread holds.
        connection = self._driver_connection
        if isinstance(connection, _GivenBack):
            return  # closed already
        # MySQLdb and PyMySQL connections both carry their error classes as
        # attributes (PEP 249's optional extension).
        interface_error = (
            getattr(connection, "InterfaceError", None) or self._interface_error or driver_interface_error()
        )
        self._driver_connection = _given_back_as(interface_error)
        self.detached = False
        self._reattach = None
        self._released_state = None
        self._spot.leave()
        holdings = self._holdings()
        self._holdings = no_holdings
        if holdings is not None:
            held = holdings.held
            try:
                if successor is None:
                    held.remove(self)
                else:
                    held[held.index(self)] = successor
            except ValueError:
                if successor is not None:
                    held.append(successor)

    def __del__(self) -> None:
        if self._record or self._spot.in_use:
            try:
                self.close()
            except Exception:  # at interpreter exit, or a dead server: nothing to tell
                pass

    def __repr__(self) -> str:
        if self._record:
            state = "checked out"
        elif self._spot.parked:
            state = "parked"
        elif self._driver_connection is None:
            state = "detached"
        else:
            state = "closed"
        return f"<PooledConnection {state} from {self._managed!r}>"


class ClosedParking:
    """A connection close_parking() parked for its owner's next connect(), and its spot.

    The owner's thread keeps it with what it holds, so the thread's end
    gives the connection back (close()); until then any other checkout may
    take it from the spot, which stays listed in its pool.
    """

    __slots__ = ("spot", "managed", "holdings", "handle_class")

    def __init__(
        self, spot: ParkingSpot, managed: Any, holdings: Callable[[], ThreadHoldings | None],
        handle_class: type[PooledConnection],
    ) -> None:
        self.spot = spot
        self.managed = managed
        self.holdings = holdings  # a weak reference: the holdings hold this object
        # The closed handle's class (its driver's, see _passing_through()): the next handle's.
        self.handle_class = handle_class

    def close(self) -> None:
        """Give the parked connection, if any is still there, back to the pool for anyone."""
        holdings = self.holdings()
        if holdings is not None:
            try:
                holdings.held.remove(self)
            except ValueError:  # the thread's end is giving it back
                pass
        record = self.spot.take_back()
        if record is not None:
            lifecycle.give_back(record, record.dbapi_connection, self.managed)
        self.spot.leave()


# What a closed handle keeps instead of its spot, which went to its owner.
_NO_SPOT = ParkingSpot()


_passing_through_classes: dict[type, type] = {}


def _passing_through(connection: Any) -> type:
    """The subclass of PooledConnection that passes connection's attributes through.

    Spelled out as one property per name, and not as a __getattr__(): on
    Python 3.11, a class with a __getattr__ makes every attribute read on
    its instances take the slow, unspecialised path, and a request's cycle
    reads the handle's own attributes many times (benchmarks/instructions.py
    shows the cost). The names are those of the first connection of its
    driver class, as it is once open; an attribute a driver adds to a
    connection later is reached through driver_connection.
    """
    driver_class = type(connection)
    passing = _passing_through_classes.get(driver_class)
    if passing is not None:
        return passing
    own = set(dir(PooledConnection))
    names = [name for name in dir(connection) if not name.startswith("__") and name not in own]
    passing = type(
        "PooledConnection",
        (PooledConnection,),
        {"__slots__": (), "__module__": __name__, "_interface_error": getattr(connection, "InterfaceError", None),
         **{name: _passed_through(name) for name in names}},
    )
    return _passing_through_classes.setdefault(driver_class, passing)


def _passed_through(name: str) -> property:
    reason = _UNRESETTABLE_METHODS.get(name)
    changes_session = name in _SESSION_METHODS

    def read(handle: PooledConnection) -> Any:
        connection: Any = handle._attached_connection()
        state = state_of(connection)
        if reason is not None:
            must_close(connection, reason)
        elif changes_session:
            # These bypass the cursors that watch the SQL: assume the worst
            # (a reset at give-back).
            state.dirty = True
        value = getattr(connection, name)
        interface_error = connection.InterfaceError
        if getattr(value, "__self__", None) is connection:
            # A method of the driver connection: kept past close(), it must
            # not act on the next user's session.
            return _for_this_lease(value, state, interface_error)
        return value

    return property(read, doc=f"The driver connection's {name}.")


def _for_this_lease(method: Any, state: ConnectionState, interface_error: type[Exception]) -> Any:
    lease = state.lease

    def call(*args: Any, **kwargs: Any) -> Any:
        if state.lease != lease:
            raise given_back(interface_error, "this method's connection was given back to the pool")
        return method(*args, **kwargs)

    call.__name__ = call.__qualname__ = method.__name__
    call.__doc__ = method.__doc__
    return call
