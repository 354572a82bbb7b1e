"""A physical connection's way out of the pool and back: liveness, lifetime, session reset.

This is the hot path. When nothing happened to a connection, checking it
out costs a zero-timeout poll of its socket and giving it back costs a read
of the server-status flags the driver already has: no round trip.
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

from . import drivers, forks
from .conf import PoolOptions
from .drivers import SERVER_STATUS_IN_TRANS
from .queue_pool import ParkingSpot
from .socket_watch import SocketWatch

logger = logging.getLogger("django_mysqlpool")

_STATE = "_django_mysqlpool_state"  # hot paths spell it out: an attribute read beats getattr()

# A statement may leave state in the session that ROLLBACK does not clear
# (user and session variables, named, table and global locks, temporary
# tables, prepared statements, handlers, another default database, whatever a
# procedure does) unless, after any leading comments, it starts with one of
# these words and contains none of the markers below. Matched on the text
# before parameters are bound; a false positive costs one reset round trip.
_PLAIN_START = re.compile(
    r"\s*(?:(?:/\*(?!!).*?\*/|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$))\s*)*"
    r"(?:SELECT|INSERT|UPDATE|DELETE|REPLACE|WITH|BEGIN|START|COMMIT|ROLLBACK|SAVEPOINT|"
    r"RELEASE|SHOW|EXPLAIN|DESCRIBE|DESC|CREATE|ALTER|DROP|TRUNCATE|RENAME|ANALYZE|"
    r"OPTIMIZE|CHECK|CHECKSUM)\b",
    re.IGNORECASE | re.DOTALL,
)
_SESSION_MARKERS = re.compile(
    r"(?<!@)@(?!@)|;|/\*!|\bNOT\s+ATOMIC\b|"
    r"\b(?:GET_LOCK|TEMPORARY|HANDLER|PREPARE|FLUSH|BACKUP|LOCK)\b",
    re.IGNORECASE,
)
# Substrings every marker contains. Searching an ORM query for the markers
# themselves costs about 18 us per 350 characters (the regex tries each
# alternative at each position); these plain substring tests cost about 1.5
# us and let the regex run only on the rare query that has one.
_MARKER_HINTS = (
    "@", ";", "/*!", "ATOMIC", "LOCK", "TEMPORARY", "HANDLER", "PREPARE", "FLUSH", "BACKUP",
)


class ConnectionState:
    """What the pool knows of one physical connection, kept on the connection."""

    __slots__ = ("options", "expires_at", "returned_at", "poller", "control", "dirty",
                 "init_command", "database", "session_token", "lease", "cursor_class")

    def __init__(
        self, connection: Any, options: PoolOptions, init_command: str | None, database: str | None,
        recycle: float = -1,
    ) -> None:
        now = time.monotonic()
        self.options = options
        lifetime = options.max_lifetime
        # Up to 10% less, so connections opened in one burst expire apart.
        # Infinity, not None, for no limit: one comparison on the hot path.
        self.expires_at = math.inf if lifetime is None else now + lifetime * (1 - 0.1 * random.random())
        if recycle is not None and recycle > -1:
            # SQLAlchemy's recycle, applied as an expiry like max_lifetime:
            # a connection taken back from its parking spot never passes
            # through record.get_connection(), which would apply it.
            self.expires_at = min(self.expires_at, now + recycle)
        self.returned_at: float | None = None  # None: never given back, fresh
        self.poller = None
        fd = drivers.descriptor(connection)
        if fd is not None and fd >= 0:
            self.poller = SocketWatch(fd)
        self.control = drivers.SessionControl(connection)
        self.dirty = False
        self.init_command = init_command
        self.database = database
        # What Django's init_connection_state() last set up on this session.
        self.session_token: Any = None
        # Bumped at every checkout and give-back: a cursor from an earlier
        # checkout must not run on a session that is no longer its user's.
        self.lease = 0
        # The watching cursor class PooledConnection.cursor() makes (set by
        # prepare()).
        self.cursor_class: Any = None


def state_of(connection: Any) -> ConnectionState:
    return getattr(connection, _STATE)


def prepare(
    connection: Any, options: PoolOptions, init_command: str | None, database: str | None,
    recycle: float = -1,
) -> Any:
    """Fit a newly opened physical connection for the pool; returns it."""
    state = ConnectionState(connection, options, init_command, database, recycle)
    setattr(connection, _STATE, state)
    state.cursor_class = _lean_watching(connection.cursorclass)
    connection.cursorclass = _session_watching(connection.cursorclass)
    return connection


def usable_at_checkout(connection: Any, now: float, pre_ping: bool = False) -> bool:
    """False if this idle connection must be replaced: expired, or found dead."""
    state = state_of(connection)
    if state.returned_at is None:
        return True  # just opened
    if now >= state.expires_at:
        return False
    if pre_ping:
        return drivers.ping(connection)
    ping_after = state.options.ping_after_idle
    if ping_after is not None and now - state.returned_at >= ping_after:
        # Idle long enough for a peer to have vanished without a trace.
        return drivers.ping(connection)
    if state.poller is not None and state.poller.signalled():
        # The server closed it (KILL, restart, wait_timeout) or sent
        # something unasked; buffered TLS records can look the same, so
        # confirm before throwing it away.
        return drivers.ping(connection)
    return True


def give_back(record: Any, connection: Any, origin: Any) -> bool:
    """Clean the session, then return the connection to its pool (or close it).

    True if the session went back as it was (at most rolled back); False if
    it was reset or the connection closed.

    Nothing is sent to the server when nothing happened: the transaction
    flag comes from the last reply the driver already read. Whatever goes
    wrong, even an interruption (gevent.Timeout, KeyboardInterrupt), the
    record goes back to the pool, closed if it could not be cleaned, so the
    pool never loses a slot.
    """
    if not forks.owned_here(connection):
        return False  # a parent's connection, neutralised by forks.py: leave it be
    state = state_of(connection)
    state.lease += 1  # cursors kept from now on refuse to run
    intact = False
    try:
        if origin.disposed or time.monotonic() >= state.expires_at:
            record.invalidate()
        elif state.dirty or state.options.reset_session == "always":
            if state.control.can_reset and state.database:
                reset_session(connection, state)
            else:
                record.invalidate()  # closing is the only reset available
        elif state.control.in_transaction(connection) is not False:
            # Open, or the driver cannot tell: ROLLBACK also ends a transaction
            # begun with a raw START TRANSACTION under autocommit. The flag is
            # read even then, not guessed from the SQL seen: a cursor of a
            # class of the user's own, or the bare driver connection, would
            # go unseen.
            connection.rollback()
            intact = True
        else:
            intact = True
    except BaseException as error:
        intact = False
        logger.info("closing a connection that could not be cleaned: %r", error)
        record.invalidate(e=error)
        if not isinstance(error, Exception):
            record.checkin(_fairy_was_created=False)
            raise
    state.returned_at = time.monotonic()
    origin.return_record(record)
    origin.retire_idle()
    return intact


def _replace(record: Any) -> None:
    # A dead or expired connection: closed, its slot back in the pool.
    record.invalidate()
    record.checkin(_fairy_was_created=False)


def reset_session(connection: Any, state: ConnectionState) -> None:
    """Reset everything a user left in the session, as a new connection has it."""
    state.control.reset(connection)
    # COM_RESET_CONNECTION keeps the current database, which USE may have
    # changed: back to the one the connection was opened for.
    connection.select_db(state.database)
    state.session_token = None  # Django's session setup must run again
    if state.init_command:
        cursor = connection.cursor()
        try:
            cursor.execute(state.init_command)
        finally:
            cursor.close()
    state.dirty = False


_watching_classes: dict[type, type] = {}
_lean_classes: dict[type, type] = {}


def _session_watching(cursor_class: type) -> type:
    """A subclass of the driver's cursor class that notes session-changing SQL.

    Its cursors note the lease of their connection as they are made, and
    refuse to run once it was given back. This is the class of cursors
    made on the bare driver connection.
    """
    watching = _watching_classes.get(cursor_class)
    if watching is not None:
        return watching
    lean = _lean_watching(cursor_class)

    def __init__(self, connection, *args, **kwargs):
        cursor_class.__init__(self, connection, *args, **kwargs)
        self._mysqlpool_lease = state_of(connection).lease

    watching = type(lean.__name__, (lean,), {"__init__": __init__, "__module__": __name__})
    _watching_classes[cursor_class] = watching
    return watching


def _lean_watching(cursor_class: type) -> type:
    """_session_watching(cursor_class) without its __init__ (one Python call less).

    For PooledConnection.cursor(), which sets the lease itself; until it
    does, the cursor refuses to run.
    """
    lean = _lean_classes.get(cursor_class)
    if lean is not None:
        return lean

    def _watch(self, query):
        connection = self.connection
        if connection is None:
            return  # a closed cursor: the driver raises its own error
        state = getattr(connection, _STATE)
        if self._mysqlpool_lease != state.lease:
            # Kept past close(): the session now belongs to someone else.
            raise connection.InterfaceError(
                0, "this cursor's connection was given back to the pool"
            )
        if query is None or _changes_session(query):
            state.dirty = True

    def execute(self, query, args=None):
        # _watch(self, query), inlined: it runs for every statement.
        connection = self.connection
        if connection is not None:
            try:
                plain = (
                    self._mysqlpool_lease == connection._django_mysqlpool_state.lease
                    and _verdicts[query] is False
                )
            except (KeyError, TypeError):  # a new text, or an unhashable bytearray
                plain = False
            if not plain:
                _watch(self, query)
        return cursor_class.execute(self, query, args)

    def executemany(self, query, args):
        _watch(self, query)
        return cursor_class.executemany(self, query, args)

    def callproc(self, procname, args=()):
        _watch(self, None)
        return cursor_class.callproc(self, procname, args)

    lean = type(
        "SessionWatching" + cursor_class.__name__,
        (cursor_class,),
        {"execute": execute, "executemany": executemany, "callproc": callproc,
         "_mysqlpool_lease": -1, "__module__": __name__},
    )
    _lean_classes[cursor_class] = lean
    return lean


# Verdicts on recent statement texts. The ORM sends the same few texts over
# and over (parameters are bound later), so most statements cost a lookup.
_verdicts: dict[Any, bool] = {}
_MAX_VERDICTS = 2048
_MAX_CACHED_LENGTH = 4096


def _changes_session(query: Any) -> bool:
    """False if the statement leaves no state in the session that a rollback would not clear."""
    try:
        return _verdicts[query]
    except (KeyError, TypeError):  # TypeError: a bytearray, which cannot be a key
        pass
    verdict = _classify(query)
    # Long texts (a bulk INSERT's) are rarely sent twice and would make the
    # cache large: at most 2048 texts of up to 4096 characters.
    if len(query) <= _MAX_CACHED_LENGTH and not isinstance(query, bytearray):
        if len(_verdicts) >= _MAX_VERDICTS:
            _verdicts.clear()  # simpler than an LRU, and a miss costs only microseconds
        _verdicts[query] = verdict
    return verdict


def _classify(query: Any) -> bool:
    if isinstance(query, (bytes, bytearray)):
        query = bytes(query).decode("utf-8", "replace")
    if _PLAIN_START.match(query) is None:
        return True
    upper = query.upper()
    for hint in _MARKER_HINTS:
        if hint in upper:
            return _SESSION_MARKERS.search(query) is not None
    return False


class _GivenBack:
    """Stands in for a physical connection once it has been given back.

    Django may still touch its wrapper's connection after _close() (for
    instance is_usable() in its own tests); the answer must be the driver's
    own "connection is closed" error, never someone else's live socket.
    """

    __slots__ = ("_error_class",)

    def __init__(self, error_class: type[Exception]) -> None:
        self._error_class = error_class

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise self._error_class(0, "the connection was given back to the pool")

        if name == _STATE:  # PooledConnection.cursor() looks for it first
            refuse()
        return refuse


class _ThreadHoldings:
    """What one thread has checked out; gives it back when the thread ends.

    Django's connection wrapper sits in reference cycles, so a thread that
    ends holding a connection would release it only at the next cyclic
    garbage collection, which may be long in coming. This object has no
    cycles: the thread's local storage frees it as the thread ends, and its
    __del__ gives back whatever is still out.
    """

    __slots__ = ("held", "__weakref__")

    def __init__(self) -> None:
        self.held: list[PooledConnection] = []

    def __del__(self) -> None:
        for connection in self.held[:]:
            try:
                connection.close()
            except Exception:  # a dead server: nothing to tell anyone
                pass


_thread_local = threading.local()


def _NO_HOLDINGS() -> None:
    return None


def _holdings_of_this_thread() -> "weakref.ref[_ThreadHoldings]":
    try:
        return _thread_local.holdings_ref
    except AttributeError:
        holdings = _thread_local.holdings = _ThreadHoldings()
        _thread_local.holdings_ref = weakref.ref(holdings)
        return _thread_local.holdings_ref


# Driver connection methods that change the session without a cursor.
_SESSION_METHODS = frozenset((
    "query", "send_query", "select_db", "change_user", "set_character_set", "set_sql_mode",
    "set_server_option", "begin",
))


class PooledConnection:
    """A Django wrapper's handle on a pooled physical connection; close() gives it back.

    Every attribute the driver's connections have once open, but cursor()
    and close(), is passed to the driver connection (see _passing_through()),
    so Django's MySQL backend uses it exactly as it would use MySQLdb's
    connection. If
    its thread ends while it is checked out, or it is garbage-collected,
    it gives the connection back then.

    At a request's end the handle may instead be detached: the physical
    connection goes back to the pool, and the handle stays with its Django
    wrapper, which then looks just like a persistent connection between
    requests. The next use of the handle checks a connection out again,
    through the wrapper's reattach callback, so a request pays neither
    Django's connect() nor its close().
    """

    __slots__ = ("_record", "_driver_connection", "_origin", "_last_used", "_holdings",
                 "_reattach", "_released_state", "_released_lease", "_reattaching", "_spot",
                 "settings_checked")

    def __init__(self, reattach: Callable[["PooledConnection"], None] | None = None) -> None:
        # One element while checked out: deque.pop() is atomic, so two
        # threads closing a shared connection (or a close racing a thread's
        # end) can never both give it back. A deque, not a list: a list
        # emptied by pop() frees its storage, and the next append at the
        # next request allocates it again.
        self._record: deque[Any] = deque()
        self._driver_connection: Any = None  # None: detached
        # The registry's record of the pool: tells whether it was disposed
        # while this connection was out, and retires idle connections.
        self._origin: Any = None
        self._last_used = 0.0
        self._holdings = _NO_HOLDINGS
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
        # Where detach() parks a clean connection, when the pool allows it.
        self._spot = ParkingSpot()
        # Set by the owner when it found its settings unchanged since the
        # parked connection was checked out: cursor() may then take it back
        # without asking the owner (the reattach callback).
        self.settings_checked = False

    def attach(self, record: Any, connection: Any, origin: Any, tie_to_thread: bool = True) -> bool:
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
        self._origin = origin
        self._last_used = time.monotonic()
        if tie_to_thread:
            if self._holdings() is None:
                # A weak reference, so the thread's holdings are in no cycle.
                self._holdings = _holdings_of_this_thread()
                self._holdings().held.append(self)
        elif self._holdings is not _NO_HOLDINGS:
            self.untie_from_thread()
        self._record.append(record)  # last: from here on close() gives it back
        return untouched

    def untie_from_thread(self) -> None:
        """Keep this connection out when the thread that checked it out ends.

        For a connection Django lets several threads share
        (inc_thread_sharing()): another thread may still be using it.
        """
        holdings = self._holdings()
        self._holdings = _NO_HOLDINGS
        if holdings is not None and self in holdings.held:
            holdings.held.remove(self)

    def _attached_connection(self) -> Any:
        connection = self._driver_connection
        if connection is None:
            with self._reattaching:
                connection = self._driver_connection
                if connection is None:
                    reattach = self._reattach
                    if reattach is None:
                        raise RuntimeError("a closed PooledConnection has no way back to its pool")
                    reattach(self)
                    connection = self._driver_connection
        return connection

    def cursor(self, cursorclass: Any = None) -> Any:
        connection = self._driver_connection
        if connection is None:
            if self.settings_checked:
                # _attached_connection(), inlined for its common case: taking
                # back the connection parked at the last request's end, once
                # the owner has found its settings unchanged (under the lock
                # only if threads may share this handle, as in detach()).
                if self._holdings is _NO_HOLDINGS:
                    with self._reattaching:
                        connection = self._driver_connection
                        if connection is None:
                            connection = self._reclaim()
                else:
                    connection = self._reclaim()
            if connection is None:
                connection = self._attached_connection()
        else:
            self._last_used = time.monotonic()  # (a checkout sets it too)
        state = connection._django_mysqlpool_state
        # What the driver's cursor(cls) does (MySQLdb's and PyMySQL's alike),
        # minus its Python call: cls(connection).
        if cursorclass is None:
            cursor = state.cursor_class(connection)
        else:
            # A class of the caller's own (SSCursor, DictCursor, ...) is watched too.
            cursor = _lean_watching(cursorclass)(connection)
        cursor._mysqlpool_lease = state.lease
        return cursor

    @property
    def driver_connection(self) -> Any:
        """The driver's own connection object (MySQLdb's, or PyMySQL's).

        Whatever is done with it goes unseen, so the session is reset when it
        is given back.
        """
        connection = self._attached_connection()
        state_of(connection).dirty = True
        return connection

    @property
    def given_back(self) -> bool:
        """True when no physical connection is checked out: detached or closed."""
        return not self._record

    @property
    def detached(self) -> bool:
        return self._driver_connection is None

    def _claim(self) -> tuple[Any, Any]:
        """Take the record this handle holds, checked out or parked, and its
        connection; (None, None) if it holds none. deque.pop() is atomic:
        two threads closing a shared handle never both get it."""
        try:
            return self._record.pop(), self._driver_connection
        except IndexError:
            return self._take_back_parked()

    @property
    def state(self) -> ConnectionState:
        return state_of(self._attached_connection())

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
        if state.control.in_transaction(connection) is not False:
            return False
        alive = drivers.ping(connection)
        self._last_used = time.monotonic()
        return not alive

    def detach(self, autocommit: bool | None = None, now: float | None = None) -> None:
        """Give the connection back, keeping this handle ready to check one out again.

        A clean connection of a pool that allows it is parked instead: it
        stays in this handle's spot, and this handle's next use takes it back
        with no pool lock, no queue and no settings lookup, unless another
        checkout took it first (it counts as idle, and anyone may).
        autocommit is the mode the owner expects at that next use: a
        connection in another mode is given back instead, and set right at
        its next checkout. now: time.monotonic(), if the caller has it.
        """
        # Threads may share this handle (inc_thread_sharing()): one must not
        # attach a connection while another is half way through parking, so
        # then this runs under the lock that taking back and checking out
        # take. A handle tied to its thread needs no lock. (No with-block,
        # nor a second method: this runs at every request's end, which is
        # kept to plain attribute reads and C calls.)
        shared = self._holdings is _NO_HOLDINGS
        if shared:
            self._reattaching.acquire()
        try:
            try:
                record = self._record.pop()
            except IndexError:
                return
            connection = self._driver_connection
            self._driver_connection = None
            state = connection._django_mysqlpool_state
            origin = self._origin
            if now is None:
                now = time.monotonic()
            try:
                # The transaction flag, as give_back() reads it: a raw START
                # TRANSACTION must not stay open into the next request either.
                live_status = state.control.live_status
                if live_status is not None:
                    in_transaction = live_status.value & SERVER_STATUS_IN_TRANS
                else:
                    in_transaction = state.control.in_transaction(connection) is not False
                parkable = (
                    # False once the pool is disposed, and for a pool that
                    # resets every session (ManagedPool.parking).
                    origin.parking
                    and not state.dirty
                    and now < state.expires_at
                    and connection.get_autocommit() == autocommit
                    and not in_transaction
                    # No forks.owned_here(): in a forked child every inherited
                    # pool is marked disposed, which origin.parking reflects.
                )
            except Exception:  # a connection closed under us: give_back() copes
                parkable = False
            except BaseException:  # an interrupt: the slot must come back all the same
                give_back(record, connection, origin)
                raise
            if parkable:
                # What give_back() does to a clean connection, minus the pool.
                state.lease += 1  # cursors kept from now on refuse to run
                state.returned_at = now
                self._released_state = state
                self._released_lease = state.lease
                spot = self._spot
                pool = origin.pool
                listed_in = spot.listed_in
                if listed_in is not None and listed_in is not pool:
                    listed_in.unlist(spot)  # moved to another pool since the last park
                # The order BurstKeepingQueuePool.park() explains: park first,
                # then read the listing, the waiters and whether the pool was
                # disposed since origin.parking was read (then it closes).
                spot.parked.append(record)
                if spot.listed_in is not pool or pool._waiting or pool._disposed:
                    pool.park(spot)
                self.settings_checked = False
                return
            if give_back(record, connection, origin):
                # Pooled with its session as this wrapper left it (not reset).
                self._released_state = state
                self._released_lease = state.lease
        finally:
            if shared:
                self._reattaching.release()

    def _reclaim(self) -> Any:
        """Take back the connection detach() parked; None if there is none to take.

        None also when it was found dead or expired, or its pool disposed:
        it is then replaced through a full checkout. Nothing else is checked
        or set up: between requests nothing can have changed it, as with a
        persistent connection.
        """
        try:
            record = self._spot.parked.pop()  # ParkingSpot.take_back(), inlined
        except IndexError:
            return None
        connection = record.dbapi_connection
        state = connection._django_mysqlpool_state
        origin = self._origin
        now = time.monotonic()
        poller = state.poller
        if (
            # usable_at_checkout() for a parked connection, inlined: this
            # runs at every request. A pool stops parking once disposed;
            # reclaim_ping_after is 0 with pre_ping.
            not origin.parking
            or now >= state.expires_at
            or now - state.returned_at >= origin.reclaim_ping_after
            or (poller is not None and poller.poll_now())
        ):
            try:
                usable = not origin.disposed and usable_at_checkout(connection, now, origin.pre_ping)
            except BaseException as error:  # an interrupted ping: the slot must come back
                record._checkin_failed(error, _fairy_was_created=False)
                raise
            if not usable:
                if origin.disposed:
                    give_back(record, connection, origin)  # closes it, if this process may
                else:
                    _replace(record)
                return None
        state.lease += 1
        self._released_state = None
        self._driver_connection = connection
        self._last_used = now
        self._record.append(record)  # last: from here on close() gives it back
        return connection

    def give_back_parked(self) -> None:
        """Give the parked connection, if any, back to the pool for anyone."""
        record, connection = self._take_back_parked()
        if record is not None:
            give_back(record, connection, self._origin)

    def _take_back_parked(self) -> tuple[Any, Any]:
        record = self._spot.take_back()
        return record, (record.dbapi_connection if record is not None else None)

    def close(self) -> None:
        """Give the connection back: cleaned and pooled, or closed if it cannot be."""
        record, connection = self._claim()
        self._forget()
        if record is not None:
            give_back(record, connection, self._origin)

    def discard(self) -> None:
        """Close the physical connection instead of pooling it (it had an error)."""
        record, connection = self._claim()
        self._forget()
        if record is not None and forks.owned_here(connection):
            record.invalidate()
            record.checkin(_fairy_was_created=False)

    def orphan(self) -> None:
        """Drop everything without a word to the server: the connection is not ours.

        For a forked child, whose copy of this handle holds (or parked) its
        parent's connection: afterwards it can neither use nor check out one.
        """
        self._record.clear()
        self._spot.parked.clear()
        self._spot.listed_in = None  # the parent's pool: no lock of it is taken here
        self._reattach = None
        self._driver_connection = _GivenBack(_interface_error())

    def _forget(self) -> None:
        connection = self._driver_connection
        if isinstance(connection, _GivenBack):
            return  # closed already
        # MySQLdb and PyMySQL connections both carry their error classes as
        # attributes (PEP 249's optional extension).
        error_class = getattr(connection, "InterfaceError", None) or _interface_error()
        self._driver_connection = _GivenBack(error_class)
        self._reattach = None
        self._released_state = None
        listed_in = self._spot.listed_in
        if listed_in is not None:
            listed_in.unlist(self._spot)
        holdings = self._holdings()
        self._holdings = _NO_HOLDINGS
        if holdings is not None:
            try:
                holdings.held.remove(self)
            except ValueError:
                pass

    def __del__(self) -> None:
        if self._record or self._spot.parked or self._spot.listed_in is not None:
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
        return f"<PooledConnection {state} from {self._origin!r}>"


_passing_through_classes: dict[type, type] = {}


def _passing_through(connection: Any) -> type:
    """The subclass of PooledConnection that passes connection's attributes through.

    Spelled out as one property per name, and not as a __getattr__(): on
    Python 3.11, a class with a __getattr__ makes every attribute read on
    its instances take the slow, unspecialised path, about 300 machine
    instructions each, and a request's cycle reads the handle's own
    attributes about 16 times (4% of the cycle). The names are those of the
    first connection of its driver class, as it is once open; an attribute
    a driver adds to a connection later is reached through
    driver_connection.
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
        {"__slots__": (), "__module__": __name__, **{name: _passed_through(name) for name in names}},
    )
    return _passing_through_classes.setdefault(driver_class, passing)


def _passed_through(name: str) -> property:
    if name in _SESSION_METHODS:
        def read(handle: PooledConnection) -> Any:
            connection = handle._attached_connection()
            # These bypass the cursors that watch the SQL: assume the worst
            # (a reset at give-back).
            state_of(connection).dirty = True
            return getattr(connection, name)
    else:
        def read(handle: PooledConnection) -> Any:
            return getattr(handle._attached_connection(), name)
    return property(read, doc=f"The driver connection's {name}.")


def _interface_error() -> type[Exception]:
    # A handle closed while detached has no driver connection to ask.
    from MySQLdb import InterfaceError

    return InterfaceError
