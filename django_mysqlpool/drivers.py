"""What a driver connection can tell us without a round trip, and how to reset its session.

mysqlclient (MySQLdb) built on MariaDB Connector/C lets us read the
server-status flags of the last reply (is a transaction open?) and send
COM_RESET_CONNECTION, through the MYSQL handle it exposes as a capsule.
PyMySQL keeps the flags in connection.server_status. Where neither works,
callers fall back to what is always safe: roll back, or close.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any

logger = logging.getLogger("django_mysqlpool")

SERVER_STATUS_IN_TRANS = 0x0001
SERVER_STATUS_AUTOCOMMIT = 0x0002
# Set in a reply when the statement changed the session's state, if the
# session asked for it (session_track_state_change = ON).
SERVER_SESSION_STATE_CHANGED = 0x4000
_MARIADB_CONNECTION_SERVER_STATUS = 30  # enum mariadb_value in mysql.h
_CAPSULE_NAME = b"_mysql.connection.native_connection"


def descriptor(connection: Any) -> int | None:
    """The connection's socket descriptor, or None if the driver hides it.

    MySQLdb has fileno(); PyMySQL keeps a socket in _sock.
    """
    try:
        if hasattr(connection, "fileno"):
            return connection.fileno()
        sock = getattr(connection, "_sock", None)
        return sock.fileno() if sock is not None else None
    except Exception:  # closed, or a driver with neither
        return None


def ping(connection: Any) -> bool:
    """One round trip: True if the server answered."""
    try:
        if type(connection).__module__.startswith("pymysql"):
            # PyMySQL reconnects by default, which would lose the session
            # behind Django's back. (mysqlclient never does, and warns if
            # asked about it.)
            connection.ping(reconnect=False)
        else:
            connection.ping()
    except Exception:
        return False
    return True


class _ConnectorC:
    """MariaDB Connector/C functions reached through mysqlclient's own library."""

    def __init__(self) -> None:
        import MySQLdb._mysql

        library = ctypes.CDLL(MySQLdb._mysql.__file__)
        # Reading the status flags only copies a field of the MYSQL struct, so
        # it keeps the GIL (PyDLL): releasing it, as CDLL does, lets the 15
        # other threads of a gunicorn worker cut in at every give-back.
        # No argtypes: each connection passes ready-made ctypes objects
        # (SessionControl.read_status), which spares three conversions a call.
        self.get_info = ctypes.PyDLL(MySQLdb._mysql.__file__)["mariadb_get_info"]
        self.get_info.restype = ctypes.c_char
        self.reset_connection = library.mysql_reset_connection
        self.reset_connection.restype = ctypes.c_int
        self.reset_connection.argtypes = [ctypes.c_void_p]
        self.capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        self.capsule_pointer.restype = ctypes.c_void_p
        self.capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

    def handle(self, connection: Any) -> int:
        return self.capsule_pointer(connection._get_native_connection(), _CAPSULE_NAME)


_connector_c: _ConnectorC | None = None
_connector_looked_up = False


def _connector() -> _ConnectorC | None:
    global _connector_c, _connector_looked_up
    if not _connector_looked_up:
        try:
            _connector_c = _ConnectorC()
        except (ImportError, OSError, AttributeError):
            # mysqlclient built on Oracle's libmysqlclient, or not installed.
            _connector_c = None
        _connector_looked_up = True
    return _connector_c


class _FieldsAroundServerStatus(ctypes.Structure):
    """The run of st_mysql's fields around server_status, as Connector/C's mysql.h declares it."""

    _fields_ = [
        ("thread_id", ctypes.c_ulong),
        ("packet_length", ctypes.c_ulong),
        ("port", ctypes.c_uint),
        ("client_flag", ctypes.c_ulong),
        ("server_capabilities", ctypes.c_ulong),
        ("protocol_version", ctypes.c_uint),
        ("field_count", ctypes.c_uint),
        ("server_status", ctypes.c_uint),
        ("server_language", ctypes.c_uint),
        ("warning_count", ctypes.c_uint),
    ]


# Where the fields above sit in a MYSQL struct of this process's Connector/C:
# found once, checked for every connection. None: not looked for yet.
_fields_offset: int | None = None


def _fields_match(fields: _FieldsAroundServerStatus, connection: Any, status: int) -> bool:
    return (
        fields.thread_id == connection.thread_id()
        and fields.protocol_version == 10
        and fields.server_status == status
        and fields.field_count == connection.field_count()
        and fields.warning_count == connection.warning_count()
    )


def _server_status_field(connection: Any, handle: int, status: int) -> Any:
    """The connection's server_status field itself, as a ctypes c_uint; None if not found.

    Reading it is reading memory: no call through ctypes at every request's
    end (benchmarks/instructions.py measures what that call costs).
    mysqlclient reads the same field directly for get_autocommit(). Its
    place is found by a fingerprint (the connection's thread id, protocol
    version 10, the status Connector/C just reported, its field and warning
    counts, in the order mysql.h declares them), searched for within the
    driver's connection object only, and checked again on every connection;
    a mismatch falls back to asking Connector/C.
    """
    global _fields_offset
    if _fields_offset is None:
        # The MYSQL struct is part of the connection object (id() is its
        # address): search no further than the object's end.
        end = id(connection) + type(connection).__basicsize__ - ctypes.sizeof(_FieldsAroundServerStatus)
        step = ctypes.alignment(_FieldsAroundServerStatus)
        found = [
            address - handle
            for address in range(handle, end, step)
            if _fields_match(_FieldsAroundServerStatus.from_address(address), connection, status)
        ]
        _fields_offset = found[0] if len(found) == 1 else -1
    if _fields_offset < 0:
        return None
    fields = _FieldsAroundServerStatus.from_address(handle + _fields_offset)
    if not _fields_match(fields, connection, status):
        return None
    return ctypes.c_uint.from_address(
        handle + _fields_offset + _FieldsAroundServerStatus.server_status.offset
    )


def _no_warnings(connection: Any) -> int:
    result = getattr(connection, "_result", None)  # PyMySQL keeps the last result's count there
    return getattr(result, "warning_count", 0) or 0


class SessionControl:
    """The cheapest ways a connection offers to see and to reset its session.

    Holds no reference to the connection (the connection holds this), so
    dropping a connection frees it at once instead of at the next cyclic
    garbage collection.
    """

    __slots__ = ("_handle", "_pymysql", "read_status", "status", "live_status", "warning_count")

    def __init__(self, connection: Any) -> None:
        self._handle: int | None = None
        self.status = ctypes.c_uint()
        # With Connector/C: read_status() copies the last reply's status
        # flags into status, with no Python frame of its own (a partial of
        # the C function, with ready-made ctypes arguments).
        self.read_status: Any = None
        # Better still, the flags in place, in the connection's MYSQL struct:
        # live_status.value is always the last reply's (None if unknown).
        self.live_status: Any = None
        self._pymysql = False
        # warning_count(connection): warnings of the last statement, from its
        # reply (no round trip). The driver's own method, unbound, so that
        # this object holds no reference to the connection.
        self.warning_count: Any = _no_warnings
        if hasattr(type(connection), "warning_count") and callable(type(connection).warning_count):
            self.warning_count = type(connection).warning_count
        if hasattr(connection, "_get_native_connection"):
            self._use_connector_c(connection)
        elif isinstance(getattr(connection, "server_status", None), int):
            self._pymysql = True

    def _use_connector_c(self, connection: Any) -> None:
        library = _connector()
        if library is None:
            return
        handle = library.handle(connection)
        # from_param() gives each argument converted once, ready to pass
        # (what ctypes would otherwise redo at every call).
        read_status = functools.partial(
            library.get_info,
            ctypes.c_void_p.from_param(handle),
            ctypes.c_int.from_param(_MARIADB_CONNECTION_SERVER_STATUS),
            ctypes.byref(self.status),
        )
        read_status()
        # The enum position is part of Connector/C's ABI; still, trust it only
        # if the autocommit flag it reports matches the driver's own view.
        if bool(self.status.value & SERVER_STATUS_AUTOCOMMIT) != bool(connection.get_autocommit()):
            logger.warning("cannot read server status flags; every give-back will roll back")
            return
        self._handle = handle
        self.read_status = read_status
        try:
            self.live_status = _server_status_field(connection, handle, self.status.value)
        except Exception:  # a driver answering differently: ask Connector/C instead
            logger.debug("reading the server status flags through Connector/C", exc_info=True)

    def in_transaction(self, connection: Any) -> bool | None:
        """Whether the server said a transaction is open; None if unknown."""
        if self.live_status is not None:
            return bool(self.live_status.value & SERVER_STATUS_IN_TRANS)
        if self.read_status is not None:
            self.read_status()
            return bool(self.status.value & SERVER_STATUS_IN_TRANS)
        if self._pymysql:
            return bool(connection.server_status & SERVER_STATUS_IN_TRANS)
        return None

    def track_state_changes(self, connection: Any) -> Any:
        """Ask the server to flag replies that change the session; returns where to read the flags.

        The flags are read in place (live_status), so reading them costs no
        call. None if they cannot be read so, or the server has no
        session_track_state_change (MariaDB before 10.2, MySQL before 5.7).
        One round trip; a session reset turns it off again.
        """
        if self.live_status is None:
            return None
        try:
            connection.query("SET SESSION session_track_state_change = ON")
        except connection.Error:
            logger.debug("the server does not track session state changes", exc_info=True)
            return None
        return self.live_status

    @property
    def can_reset(self) -> bool:
        return self._handle is not None

    def reset(self, connection: Any) -> bool:
        """COM_RESET_CONNECTION (one round trip); False if the driver cannot send it."""
        library = _connector()
        if self._handle is None or library is None:
            return False
        if library.reset_connection(self._handle) != 0:
            raise connection.OperationalError(connection.errno(), connection.error())
        return True
