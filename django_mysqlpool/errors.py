"""Every exception django_mysqlpool raises."""

from __future__ import annotations

from django.db.utils import DatabaseError, OperationalError


class PoolTimeout(OperationalError):
    """No connection became free within the pool's timeout.

    A django.db.utils.OperationalError, so code that already catches
    Django's database errors keeps working.
    """


class TooManyRequests(PoolTimeout):
    """As many checkouts as max_waiting already wait: this one fails at once instead of queueing.

    A PoolTimeout (and so Django's OperationalError), as in psycopg_pool.
    """


class WrongThread(DatabaseError):
    """A pooled connection was used from a thread other than the one it belongs to.

    As Django's own check says for its wrappers: a connection belongs to the
    thread that checked it out, unless shared with inc_thread_sharing().
    """


class ConnectionGivenBack(Exception):
    """A connection, a cursor or a handle was used after it was given back to the pool.

    Raised through given_back(), as an instance of a class that is also the
    driver's InterfaceError: Django wraps it as django.db.InterfaceError,
    like any driver error, and code that catches the driver's error keeps
    working. Catch this class to tell a use-after-give-back from other
    interface errors.
    """

    _interface_error: type[Exception] = Exception

    def __reduce__(self) -> tuple:
        # The class is made at run time: pickle (Celery results,
        # multiprocessing) rebuilds it through given_back().
        return (_rebuild, (self._interface_error, self.args))


_given_back_classes: dict[type, type] = {}


def given_back(interface_error: type[Exception], message: str) -> ConnectionGivenBack:
    """A ConnectionGivenBack that is also an interface_error, the driver's InterfaceError."""
    error_class = _given_back_classes.get(interface_error)
    if error_class is None:
        error_class = _given_back_classes.setdefault(
            interface_error,
            type(
                "ConnectionGivenBack",
                (ConnectionGivenBack, interface_error),
                {"__module__": __name__, "_interface_error": interface_error},
            ),
        )
    # The driver's form: (error number, message); 0, as the driver uses for
    # errors of its own.
    return error_class(0, message)


def _rebuild(interface_error: type[Exception], args: tuple) -> ConnectionGivenBack:
    error = given_back(interface_error, "")
    error.args = args
    return error


_driver_interface_error: list[type[Exception]] = []


def driver_interface_error() -> type[Exception]:
    """MySQLdb's InterfaceError, for a handle with no driver connection left to ask."""
    if not _driver_interface_error:  # imported at first use: an import per call costs at every close()
        from MySQLdb import InterfaceError

        _driver_interface_error.append(InterfaceError)
    return _driver_interface_error[0]
