"""A physical connection's way out of the pool and back: liveness, lifetime, give-back, session reset.

This is the hot path. When nothing happened to a connection, checking it
out costs a zero-timeout poll of its socket and giving it back costs a read
of the server-status flags the driver already has: no round trip.

The words, used with one meaning each throughout the package:

record
    SQLAlchemy's entry for one physical connection in its pool
    (ConnectionPoolEntry). Whoever holds a record must give it back.
managed pool
    A SQLAlchemy pool with what the registry knows of it (ManagedPool:
    alias, server, options, whether it was disposed); variables holding
    one are named ``managed``.
handle
    The Django-facing object (handle.PooledConnection) that Django's
    wrapper holds as its ``connection``.
checked out
    A record taken from the pool (idle, or newly opened) into a handle,
    after usable_at_checkout() found it alive and unexpired.
given back
    Returned to the pool's idle records by give_back(), the session
    cleaned first (rolled back, or reset); closed instead if it could not
    be cleaned, had expired, or its pool was disposed. Any checkout may
    take it next.
detached
    A handle with no connection checked out, kept by its Django wrapper
    between requests (handle.detach()): its next use checks one out again.
parked
    At detach, a clean connection stays in its handle's parking spot
    (queue_pool.ParkingSpot) instead of being given back. It counts as
    idle: another checkout may take it from the spot, and then it is
    *unparked*; otherwise its own handle *takes it back* at its next use,
    with no pool lock and no setup.
closed (a handle)
    close() gave its connection back and the handle is done: every use
    raises errors.ConnectionGivenBack.
discarded
    Closed instead of given back: it had a connection-level error.
orphaned
    In a forked child, a handle whose connection is the parent's: dropped
    without a word to the server (forks.py).
dirty
    The session may hold state that a rollback does not clear; the
    give-back resets it (COM_RESET_CONNECTION) or closes it.
lease
    A counter on the connection, bumped at every checkout and give-back; a
    cursor from an earlier lease refuses to run.
expired
    Past its lifetime (max_lifetime, less jitter; or recycle): closed
    instead of checked out or given back.
retired
    Closed by the idle sweep (registry.py) after idle_timeout.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import cursors, drivers, ownership
from .conf import PoolOptions
from .state import ConnectionState, attach_state, state_of, track_session_changes

logger = logging.getLogger("django_mysqlpool")


def prepare(connection: Any, options: PoolOptions, params: dict[str, Any], recycle: float = -1) -> Any:
    """Fit a physical connection just opened with params for the pool; returns it."""
    state = ConnectionState(connection, options, params, recycle)
    attach_state(connection, state)
    track_session_changes(connection, state)
    if state.control.can_reset:
        state.role = _role_of_a_new_session(connection)
    if state.sync_wait is not None:
        _set_sync_wait(connection, state.sync_wait)
    state.cursor_class = cursors.lean_watching(connection.cursorclass)
    connection.cursorclass = cursors.watching(connection.cursorclass)
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


def give_back(record: Any, connection: Any, managed: Any) -> bool:
    """Clean the session, then return the connection to its pool (or close it).

    True if the session went back as it was (at most rolled back); False if
    it was reset or the connection closed.

    Nothing is sent to the server when nothing happened: the transaction
    flag comes from the last reply the driver already read. Whatever goes
    wrong, even an interruption (gevent.Timeout, KeyboardInterrupt), the
    record goes back to the pool, closed if it could not be cleaned, so the
    pool never loses a slot.
    """
    if not ownership.owned_here(connection):
        return False  # a parent's connection, neutralised after the fork: leave it be
    state = state_of(connection)
    state.lease += 1  # cursors kept from now on refuse to run
    intact = False
    node = state.node
    try:
        if managed.disposed:
            record.invalidate()
        elif node is not None and state.cluster.should_leave(node):
            # Its node is down, or traffic is moving to a better one
            # (cluster.py): closed at once, with no round trip to clean a
            # session nobody will use (the server rolls back what it holds);
            # the next checkout opens a connection where it should.
            record.invalidate()
        elif time.monotonic() >= state.expires_at:
            managed.stats.closed_expired += 1
            logger.debug("closing a connection of %r past its lifetime", managed)
            record.invalidate()
        elif (
            state.dirty
            or state.options.reset_session == "always"
            # The last reply's warnings (the watching cursors see those of
            # their own statements). Not its state-change flag: the driver's
            # own autocommit() (Django's atomic()) sets it at every
            # transaction, and would make each such request pay a reset.
            or state.control.warning_count(connection)
        ):
            if state.close_reason is not None:
                logger.info("closing a connection of %r: %s", managed, state.close_reason)
                managed.stats.returns_bad += 1
                record.invalidate()
            elif state.control.can_reset and state.database and state.resettable:
                reset_session(connection, state)
                managed.stats.resets += 1
                logger.debug("reset a session of %r at give-back", managed)
            else:
                record.invalidate()  # closing is the only reset available
        elif not connection.get_autocommit() or state.control.in_transaction(connection) is not False:
            # Open, or it may be: ROLLBACK also ends a transaction begun with
            # a raw START TRANSACTION under autocommit. The flag is read even
            # then, not guessed from the SQL seen: a cursor of a class of the
            # user's own would go unseen. With autocommit off a transaction
            # may be open that the flag cannot show: an error reply carries
            # no status flags, so a first statement that failed after taking
            # a lock leaves the last flags read saying "none" (and PyMySQL
            # reads them from OK packets only).
            connection.rollback()
            managed.stats.rollbacks += 1
            intact = True
            if state.control.warning_count(connection):
                # The ROLLBACK's own warning (a table that could not roll
                # back) would reach the next user's SHOW WARNINGS.
                intact = False
                if state.control.can_reset and state.database and state.resettable:
                    reset_session(connection, state)
                    managed.stats.resets += 1
                else:
                    record.invalidate()
        else:
            intact = True
    except BaseException as error:
        intact = False
        managed.stats.returns_bad += 1
        logger.info("closing a connection that could not be cleaned: %r", error)
        record.invalidate(e=error)
        if not isinstance(error, Exception):
            record.checkin(_fairy_was_created=False)
            raise
    state.returned_at = time.monotonic()
    managed.return_record(record)
    managed.retire_idle()
    return intact


def _role_of_a_new_session(connection: Any) -> str | None:
    """What SET ROLE takes to give a session the role it had when it opened; None without roles."""
    cursor = connection.cursor()  # the driver's own class: prepare() has not replaced it yet
    try:
        cursor.execute("SELECT CURRENT_ROLE()")
        (role,) = cursor.fetchone()
    except connection.Error:  # a server without roles
        return None
    finally:
        cursor.close()
    if role is None or role == "NONE":
        return "NONE"
    if isinstance(role, bytes):
        role = role.decode()
    if role.startswith("`"):  # MySQL 8 names its roles quoted already: `r`@`%`
        return role
    return "`" + role.replace("`", "``") + "`"  # MariaDB: the bare name


def _set_sync_wait(connection: Any, value: int) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute(f"SET SESSION wsrep_sync_wait = {int(value)}")
    finally:
        cursor.close()


def close_and_free(record: Any) -> None:
    """Close a checked-out record's connection and give its slot back to the pool."""
    record.invalidate()
    record.checkin(_fairy_was_created=False)


def reset_session(connection: Any, state: ConnectionState) -> None:
    """Reset everything a user left in the session, as a new connection has it."""
    state.control.reset(connection)
    # COM_RESET_CONNECTION keeps the current database, which USE may have
    # changed: back to the one the connection was opened for.
    connection.select_db(state.database)
    # It also puts the character set back to the handshake's, dropping the
    # collation the driver set at connect, and leaves the driver's own
    # encoding as a user may have changed it: what the driver did at
    # connect is done again.
    if state.collation:
        connection.set_character_set(state.charset, state.collation)
    elif state.charset:
        connection.set_character_set(state.charset)
    if state.sql_mode:
        connection.set_sql_mode(state.sql_mode)
    if state.role is not None:  # COM_RESET_CONNECTION keeps the active role
        connection.query(f"SET ROLE {state.role}")
    if state.reply_status is state.control.live_status:  # the reset turned tracking off
        track_session_changes(connection, state)
    state.session_token = None  # Django's session setup must run again
    if state.sync_wait is not None:
        _set_sync_wait(connection, state.sync_wait)
    if state.init_command:
        cursor = connection.cursor()
        try:
            cursor.execute(state.init_command)
        finally:
            cursor.close()
    state.dirty = False
