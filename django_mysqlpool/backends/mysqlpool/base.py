"""Django's MySQL backend, with connect() and close() routed through a pool."""


from django.db.backends.mysql.base import Database
from django.db.backends.mysql.base import DatabaseWrapper as MySQLDatabaseWrapper
from django.utils.asyncio import async_unsafe

from django_mysqlpool import pools
from django_mysqlpool.checkout import PooledConnection

from .creation import DatabaseCreation


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
    return MySQLDatabaseWrapper.get_new_connection(None, conn_params)


class DatabaseWrapper(MySQLDatabaseWrapper):
    creation_class = DatabaseCreation
    _just_checked_out = False
    # (what the parameters were built from, the parameters, their pool)
    _connection_cache = (None, None, None)

    def _settings_fingerprint(self):
        settings = self.settings_dict
        return (
            pools.generation,
            settings["NAME"],
            settings["USER"],
            settings["PASSWORD"],
            settings["HOST"],
            settings["PORT"],
            settings["OPTIONS"],
        )

    def get_connection_params(self):
        # Django rebuilds the parameters at every connect, and finding their
        # pool means hashing them; with a pool a connect is otherwise a few
        # microseconds, so both are reused while their sources are unchanged
        # (the test runner renames NAME in place; override_settings bumps
        # pools.generation).
        fingerprint = self._settings_fingerprint()
        cached_fingerprint, params, _ = self._connection_cache
        if params is not None and fingerprint == cached_fingerprint:
            return params
        params = super().get_connection_params()
        # Pool arguments are ours; the driver must never see them.
        params.pop("pool", None)
        snapshot = fingerprint[:-1] + (_snapshot(fingerprint[-1]),)
        self._connection_cache = (snapshot, params, None)
        return params

    @async_unsafe
    def get_new_connection(self, conn_params):
        fingerprint, params, managed = self._connection_cache
        if managed is None or managed.disposed or params is not conn_params:
            managed = pools.pool_for_connection(
                self.alias,
                conn_params,
                self.settings_dict["OPTIONS"].get("pool"),
                _open_physical_connection,
            )
            if params is conn_params:
                self._connection_cache = (fingerprint, params, managed)
        connection = pools.checkout(
            self.alias, managed, Database.OperationalError,
            tie_to_thread=not self.allow_thread_sharing,
        )
        self._just_checked_out = True
        return connection

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
        state = connection.state
        # Everything Django's setup depends on, besides the server (fixed per
        # pool): the isolation level.
        token = ("isolation", self.isolation_level)
        if self._just_checked_out:
            self._just_checked_out = False
            if state.session_token == token:
                # This pooled session already had Django's setup and nobody
                # changed it since (a change triggers a full reset, which
                # clears the token). An explicit call still runs in full.
                return
        was_dirty = state.dirty
        super().init_connection_state()
        # Django's own SET statements are the session's baseline, not a
        # change a later user needs protecting from.
        state.dirty = was_dirty
        state.session_token = token

    def close_if_health_check_failed(self):
        super().close_if_health_check_failed()
        connection = self.connection
        if (
            isinstance(connection, PooledConnection)
            and not connection.given_back
            and not self.in_atomic_block
            and connection.stale()
        ):
            # A connection this thread kept (CONN_MAX_AGE, a daemon) that the
            # server closed while it sat idle: replace it before the query.
            connection.discard()
            self.connection = None

    def _close(self):
        connection = self.connection
        if (
            self.errors_occurred
            and isinstance(connection, PooledConnection)
            and not connection.given_back
            and not self.is_usable()
        ):
            # A connection-level error (lost connection, server gone) must
            # not be handed to the next user.
            connection.discard()
            return
        return super()._close()

    @property
    def pool(self):
        """The pool this alias checks connections out of (None before first use)."""
        params = dict(super().get_connection_params())
        params.pop("pool", None)
        return pools.pool_for(self.alias, params, self.settings_dict["OPTIONS"].get("pool"))

    def close_pool(self):
        """Dispose this alias's pool, as Django's PostgreSQL backend offers (Celery calls it)."""
        managed = self.pool
        if managed is not None:
            pools.dispose_pool(managed)
