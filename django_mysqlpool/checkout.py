"""A checked-out physical connection, and how it goes back to its pool."""

from __future__ import annotations

from typing import Any


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

        return refuse


class PooledConnection:
    """A driver connection checked out of a pool; close() gives it back.

    Everything but close() is passed to the driver connection, so Django's
    MySQL backend uses it exactly as it would use MySQLdb's connection.
    """

    __slots__ = ("_fairy", "_driver_connection", "_origin")

    def __init__(self, fairy: Any, origin: Any) -> None:
        self._fairy = fairy
        self._driver_connection = fairy.dbapi_connection
        # The registry's record of the pool: tells whether it was disposed
        # while this connection was out.
        self._origin = origin

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver_connection, name)

    def cursor(self, *args: Any) -> Any:
        return self._driver_connection.cursor(*args)

    @property
    def driver_connection(self) -> Any:
        """The driver's own connection object (MySQLdb's, or PyMySQL's)."""
        return self._driver_connection

    @property
    def given_back(self) -> bool:
        return self._fairy is None

    def close(self) -> None:
        """Give the connection back: rolled back and pooled, or closed if its pool is gone."""
        fairy = self._fairy
        if fairy is None:
            return
        self._forget()
        if self._origin.disposed:
            fairy.invalidate()
        else:
            # SQLAlchemy rolls back (reset_on_return="rollback") before the
            # connection can be checked out again; a failed rollback makes it
            # discard the connection instead of pooling it.
            fairy.close()

    def discard(self) -> None:
        """Close the physical connection instead of pooling it (it had an error)."""
        fairy = self._fairy
        if fairy is None:
            return
        self._forget()
        fairy.invalidate()

    def _forget(self) -> None:
        error_class = _interface_error(self._driver_connection)
        self._fairy = None
        self._driver_connection = _GivenBack(error_class)

    def __repr__(self) -> str:
        state = "given back" if self._fairy is None else "checked out"
        return f"<PooledConnection {state} from {self._origin!r}>"


def _interface_error(driver_connection: Any) -> type[Exception]:
    # MySQLdb and PyMySQL connections both carry their error classes as
    # attributes (PEP 249's optional extension).
    return getattr(driver_connection, "InterfaceError", RuntimeError)
