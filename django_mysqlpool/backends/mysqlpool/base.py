"""Django's MySQL backend, with connect() and close() routed through a pool."""


import _thread
import operator
from asyncio import get_running_loop
import time
import weakref

from django.db.backends.mysql.base import Database  # type: ignore[attr-defined]
from django.db.backends.mysql.base import DatabaseWrapper as MySQLDatabaseWrapper
from django.db.backends.signals import connection_created
from django.utils.asyncio import async_unsafe

from django_mysqlpool import registry
from django_mysqlpool.errors import given_back
from django_mysqlpool.handle import PooledConnection

from .creation import DatabaseCreation


# What the connection parameters are built from, besides registry.generation:
# one C call that reads them all, as a tuple to compare with a cached one.
_connection_settings = operator.itemgetter("NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")


# Per alias, for the wrappers of every thread: (what the parameters were
# built from, the parameters, their pool, the isolation level Django's
# get_connection_params() set with them). Never changed in place: a new
# tuple replaces the old one, so a reader sees one or the other.
_shared_connection_caches: dict = {}


def _snapshot(value):
    """A copy of OPTIONS to compare with later: containers copied, the rest kept.

    Not deepcopy(): OPTIONS may hold objects that cannot be copied, such as
    an ssl.SSLContext.
    """
    if isinstance(value, dict):
        return {key: _snapshot(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_snapshot(item) for item in value]
    return value


def _open_physical_connection(conn_params):
    # The stock get_new_connection() uses no instance state, so calling it
    # unbound keeps Django's own connect-time fixes without copying them,
    # and the pool does not keep any wrapper (or its thread's data) alive.
    return MySQLDatabaseWrapper.get_new_connection(None, conn_params)  # type: ignore[arg-type]


def _reattach_through(wrapper):
    # A weak reference: the handle outlives nothing, and the thread's record
    # of its handles must not keep Django's wrapper (and its cycles) alive.
    wrapper_ref = weakref.ref(wrapper)

    def reattach(handle):
        wrapper = wrapper_ref()
        if wrapper is None:
            raise given_back(Database.InterfaceError, "this connection's Django wrapper is gone")
        wrapper._reattach(handle)

    return reattach


class DatabaseWrapper(MySQLDatabaseWrapper):
    """Django's MySQL wrapper whose connections are checked out of a pool and given back to it."""

    creation_class = DatabaseCreation
    _just_checked_out = False
    # What the last close() parked for the next connect() (handle.ClosedParking), or None.
    _closed_parking = None
    # The handles' way back to this wrapper (_reattach_through()), made once.
    _reattach_callback = None
    # (what the parameters were built from, the parameters, their pool)
    _connection_cache: tuple = (None, None, None)

    def _settings_fingerprint(self):
        return (registry.generation, _connection_settings(self.settings_dict))

    def get_connection_params(self):
        # Django rebuilds the parameters at every connect, and finding their
        # pool means hashing them; with a pool a connect is otherwise a few
        # microseconds, so both are reused while their sources are unchanged
        # (the test runner renames NAME in place; override_settings bumps
        # registry.generation).
        fingerprint = self._settings_fingerprint()
        cached_fingerprint, params, _ = self._connection_cache
        if params is not None and fingerprint == cached_fingerprint:
            return params
        # A wrapper new in its thread (under ASGI, every request's) finds
        # them where another thread's wrapper of the alias left them.
        shared = _shared_connection_caches.get(self.alias)
        if shared is not None and shared[0] == fingerprint:
            snapshot, params, managed, self.isolation_level = shared  # (what Django's sets besides)
            self._connection_cache = (snapshot, params, managed)
            return params
        params = super().get_connection_params()
        # Pool arguments are ours; the driver must never see them.
        params.pop("pool", None)
        generation, values = fingerprint
        snapshot = (generation, values[:-1] + (_snapshot(values[-1]),))
        self._connection_cache = (snapshot, params, None)
        return params

    def _checkout(self, conn_params) -> tuple:
        fingerprint, params, managed = self._connection_cache
        if managed is None or managed.disposed or params is not conn_params:
            managed = registry.pool_for_connection(
                self.alias,
                conn_params,
                self.settings_dict["OPTIONS"].get("pool"),
                _open_physical_connection,
            )
            if params is conn_params:
                self._connection_cache = (fingerprint, params, managed)
                _shared_connection_caches[self.alias] = (fingerprint, params, managed, self.isolation_level)
        record, connection = managed.checkout(self.alias, Database.OperationalError)
        return record, connection, managed

    @async_unsafe
    def get_new_connection(self, conn_params):
        # The handle belongs to the thread that checks it out: only the
        # wrapper's own thread may (Django's check would otherwise come
        # only with the setup's first cursor, which a pooled session skips).
        self.validate_thread_sharing()
        reattach = self._reattach_callback
        if reattach is None:
            reattach = self._reattach_callback = _reattach_through(self)
        parking = self._closed_parking
        if parking is None:
            handle = PooledConnection(reattach)
        else:
            # The last close() parked its connection: a new handle takes
            # it back, as a request takes back what the last one parked,
            # if nothing it was checked out with has changed since.
            self._closed_parking = None
            _, params, managed = self._connection_cache
            if params is conn_params and parking.managed is managed and not self.allow_thread_sharing:
                handle = parking.handle_class(reattach, parking.spot)
                if handle.take_over(parking) is not None:
                    # Untouched since close(): Django's setup is done
                    # (init_connection_state() finds its token).
                    self._just_checked_out = True
                    return handle
            else:
                parking.close()
                handle = PooledConnection(reattach)
        record, connection, managed = self._checkout(conn_params)
        handle.attach(record, connection, managed, tie_to_thread=not self.allow_thread_sharing)
        self._just_checked_out = True
        return handle

    def _reattach(self, handle):
        """Check a connection out into a handle detached at the last request's end.

        Called by the handle when it has no parked connection to take back
        (another checkout took it, or it was given back instead of parked).
        Django's state is that of a persistent connection between requests;
        only the session may differ. If it is the one this handle gave back
        and nobody used it since (a LIFO pool makes that the common case),
        it is ready; otherwise it gets what connect() gives a new connection:
        Django's setup unless it already has it, and the connection_created
        signal. Either way the driver's autocommit mode is made the
        wrapper's, and CONN_MAX_AGE counts from now, as after connect().
        """
        if self.connection is not handle:
            # Dropped by its wrapper (a fork, a close); a kept reference must
            # not put Django's setup on some other session.
            raise given_back(Database.InterfaceError, "this connection handle was closed")
        # A handle kept and used from another thread checks out into this
        # wrapper only where Django would let that thread use it.
        self.validate_thread_sharing()
        max_age = self.settings_dict["CONN_MAX_AGE"]
        if self._connection_cache[0] == self._settings_fingerprint():
            connection = handle.take_back()
            if connection is not None:
                # The session this handle parked, untouched since (as with a
                # persistent connection, CONN_MAX_AGE keeps counting from the
                # checkout that took it from the pool).
                return
        else:
            # Settings changed in place (or pools were disposed): the parked
            # connection may belong to another pool, database or login.
            handle.give_back_parked()
        record, connection, managed = self._checkout(self.get_connection_params())
        untouched = handle.attach(
            record, connection, managed, tie_to_thread=not self.allow_thread_sharing
        )
        self.close_at = None if max_age is None else time.monotonic() + max_age
        self.health_check_done = True  # the checkout just checked it
        if connection.get_autocommit() != self.autocommit:
            # Changed through the driver behind Django's back (no round trip
            # to find out: the driver knows).
            connection.autocommit(self.autocommit)
        if untouched:
            return
        self._set_up_session(connection, handle.state)
        connection_created.send(sender=self.__class__, connection=self)

    def _session_token(self):
        # Everything Django's setup depends on, besides the server (fixed per
        # pool): the isolation level.
        return ("isolation", self.isolation_level)

    def _set_up_session(self, connection, state):
        token = self._session_token()
        if state.session_token == token:
            # This pooled session already had Django's setup and nobody
            # changed it since (a change triggers a full reset, which
            # clears the token).
            return
        was_dirty = state.dirty
        super().init_connection_state()
        # Django's own SET statements are the session's baseline, not a
        # change a later user needs protecting from.
        state.dirty = was_dirty
        state.session_token = token

    def inc_thread_sharing(self):
        super().inc_thread_sharing()
        if isinstance(self.connection, PooledConnection):
            # Other threads may now use it: the end of the thread that
            # checked it out must not give it back.
            self.connection.untie_from_thread()

    def set_autocommit(self, autocommit, force_begin_transaction_with_broken_autocommit=False):
        if (
            self._just_checked_out
            and not force_begin_transaction_with_broken_autocommit
            and self.connection.get_autocommit() == autocommit
        ):
            # Inside connect(), on a pooled session already in that mode (the
            # driver knows without asking the server): nothing to change, and
            # the checks Django's version makes were all just done by connect().
            self.autocommit = autocommit
            return
        super().set_autocommit(autocommit, force_begin_transaction_with_broken_autocommit)

    def init_connection_state(self):
        connection = self.connection
        if not isinstance(connection, PooledConnection):
            return super().init_connection_state()
        if self._just_checked_out:
            self._just_checked_out = False
            self._set_up_session(connection, connection.state)
            return
        # An explicit call runs in full.
        state = connection.state
        state.session_token = None
        self._set_up_session(connection, state)

    def close_if_health_check_failed(self):
        # Runs before every cursor: Django's version only when it has work.
        if self.health_check_enabled and not self.health_check_done:
            super().close_if_health_check_failed()
        connection = self.connection
        if not isinstance(connection, PooledConnection):
            return
        if connection.detached:
            # Before the first cursor of a request: the handle may take back
            # its parked connection itself if the settings it was checked
            # out with still hold (changed in place, they need another
            # pool, database or login).
            if self._connection_cache[0] == self._settings_fingerprint():
                connection.settings_checked = True
            else:
                connection.give_back_parked()
        elif not self.in_atomic_block and connection.stale():
            # A connection this thread kept (CONN_MAX_AGE, a daemon) that the
            # server closed while it sat idle: replace it before the query.
            connection.discard()
            self.connection = None

    def is_usable(self):
        connection = self.connection
        if isinstance(connection, PooledConnection) and connection.detached:
            # Nothing is checked out; the next use checks out a live one.
            return True
        return super().is_usable()

    def close_if_unusable_or_obsolete(self):
        # Django's request-end check. When it would close a clean connection
        # only because CONN_MAX_AGE has passed, the connection is detached
        # instead: back to the pool, the handle kept. Any other reason
        # (an error, autocommit left changed) goes to Django's check and
        # its full close.
        connection = self.connection
        if isinstance(connection, PooledConnection):
            if connection.detached:
                # Nothing is checked out, and nothing can have changed since
                # the detach (any use checks a connection out first): Django's
                # checks would all pass, and the close they lead to would do
                # nothing.
                self.health_check_done = False
                return
            now = time.monotonic()
            if (
                not self.errors_occurred
                and not self.in_atomic_block
                and self.autocommit == self.settings_dict["AUTOCOMMIT"]
                and self.close_at is not None
                and now >= self.close_at
            ):
                # The physical connection goes back to the pool; the wrapper
                # keeps the handle and so its state, as between two requests
                # on a persistent connection, and skips connect() next time.
                if self._thread_ident != _thread.get_ident():  # type: ignore[attr-defined]
                    self.validate_thread_sharing()  # as close() would: raises unless shared
                self.health_check_done = False
                if self.run_on_commit:  # as close() would; a new list only if needed
                    self.run_on_commit = []
                connection.detach(self.autocommit, now)
                return
        super().close_if_unusable_or_obsolete()

    def _close(self):
        connection = self.connection
        if isinstance(connection, PooledConnection):
            if self.errors_occurred:
                if not connection.given_back and not self.is_usable():
                    # A connection-level error (lost connection, server gone)
                    # must not be handed to the next user.
                    connection.discard()
                    return
            elif not self.in_atomic_block:
                # (In an atomic block Django keeps the closed handle: the
                # plain close below.)
                self._close_parking(connection)
                return
        return super()._close()  # type: ignore[misc]  # not in django-stubs

    def _close_parking(self, connection):
        # Closed as close() closes it (the handle refuses from now on, the
        # session is cleaned), but a clean connection parks where any other
        # thread may take it, and the next connect() takes it back without
        # the pool: the way a request's end detaches it.
        earlier = self._closed_parking
        if earlier is not None:  # (connect() takes it; a close() with no connect() since)
            self._closed_parking = None
            earlier.close()
        self._closed_parking = connection.close_parking(self.settings_dict["AUTOCOMMIT"])

    def close(self):
        connection = self.connection
        if (
            self._thread_ident == _thread.get_ident()  # type: ignore[attr-defined]  # (validate_thread_sharing() would pass)
            and isinstance(connection, PooledConnection)
            and not self.closed_in_transaction
            and not self.in_atomic_block
            and not self.errors_occurred
        ):
            try:
                get_running_loop()
            except RuntimeError:  # none in this thread: @async_unsafe would let it run
                # Django's close() (BaseDatabaseWrapper.close) for its common
                # case, a pooled connection outside an atomic block with no
                # error, made lean: it ends every unit of work outside
                # requests. test_backend.py checks that the two leave the
                # wrapper alike.
                self.run_on_commit = []
                try:
                    self._close_parking(connection)
                finally:
                    self.connection = None
                return
        super().close()  # @async_unsafe: raises SynchronousOnlyOperation in an event loop

    def connect(self):
        parking = self._closed_parking
        if parking is not None:
            try:
                get_running_loop()
            except RuntimeError:  # none in this thread: @async_unsafe would let it run
                if self._take_over(parking):
                    return
        super().connect()  # @async_unsafe: raises SynchronousOnlyOperation in an event loop

    def _take_over(self, parking):
        """Django's connect() (BaseDatabaseWrapper.connect) onto the connection the last close() parked.

        True if done; False if it must run in full (settings changed, the
        wrapper shared between threads, or the connection taken by another
        checkout, dead or expired). test_backend.py checks that the two
        leave the wrapper alike.
        """
        settings_dict = self.settings_dict
        fingerprint, _, managed = self._connection_cache
        if (
            parking.managed is not managed
            or self._thread_ident != _thread.get_ident()  # type: ignore[attr-defined]  # not in django-stubs
            or self._thread_sharing_count  # type: ignore[attr-defined]
            or not settings_dict["AUTOCOMMIT"]  # close() parked it in autocommit mode
            or fingerprint != self._settings_fingerprint()
        ):
            return False  # get_new_connection() gives it back, or takes it over
        self._closed_parking = None
        self.check_settings()
        handle = parking.handle_class(self._reattach_callback, parking.spot)
        connection = handle.take_over(parking)
        if connection is None:
            handle.close()  # (it holds nothing: this takes its spot off the pool's list)
            return False
        self.in_atomic_block = False
        self.savepoint_ids = []
        self.atomic_blocks = []
        self.needs_rollback = False
        self.health_check_enabled = settings_dict["CONN_HEALTH_CHECKS"]
        max_age = settings_dict["CONN_MAX_AGE"]
        self.close_at = None if max_age is None else time.monotonic() + max_age
        self.closed_in_transaction = False
        self.errors_occurred = False
        self.health_check_done = True
        self.connection = handle
        # What set_autocommit(True) and init_connection_state() come to on
        # a session that close() parked in autocommit mode, set up since.
        self.autocommit = True
        state = connection._django_mysqlpool_state
        if state.session_token != self._session_token():
            self._set_up_session(connection, state)
        connection_created.send(sender=self.__class__, connection=self)
        self.run_on_commit = []
        return True

    @property
    def pool(self):
        """The pool this alias checks connections out of (None before first use)."""
        params = dict(super().get_connection_params())
        params.pop("pool", None)
        return registry.pool_for(self.alias, params, self.settings_dict["OPTIONS"].get("pool"))

    def close_pool(self):
        """Dispose this alias's pool, as Django's PostgreSQL backend offers (Celery calls it)."""
        managed = self.pool
        if managed is not None:
            registry.dispose_pool(managed)
