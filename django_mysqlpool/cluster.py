"""Several servers behind one alias: which node a new connection goes to, and each node's health.

HOST may name several servers, ``"db1:3306,db2:3306,db3"``: MariaDB
Connector/C's own syntax, so the stock engine accepts the same setting (it
tries the hosts in order at each connect, and no more). Here each pooled
connection remembers its node, and the pool keeps each node's health:

- a node that refuses a new connection or loses it while it is set up
  (2002, 2003, 2005, 2006, 2013), is full (1040, 1203), is shutting down
  (1053), or says it cannot serve (1047 from any statement, or, when a
  connection opens, ``wsrep_ready`` not ON or ``wsrep_reject_queries`` set:
  a Galera node without quorum, still joining, or in maintenance) is *down*
  for ``host_retry_after`` seconds; its idle connections are closed, and a
  connection of it given back is closed, not pooled;
- new connections go only to nodes that are up, in the order of
  ``host_policy``: ``"failover"`` (the first node that is up: the safe
  choice for Galera writes), ``"round_robin"`` (the node with the fewest
  of this pool's connections, in turn); a checkout whose
  node fails moves on to the next node inside the same checkout;
- once its back-off is over, the idle sweeper (registry.py) probes a down
  node with a connection of its own (and ``wsrep_ready``): no request pays
  for trying a dead node. A node that answers is up again, and traffic
  moves back as connections are given back: under ``failover``, a
  connection to a node ranked below one that is up is closed at give-back;
  under ``round_robin``, one whose node holds two or more connections
  more than the node that holds fewest.

``wsrep_ready`` is read when a connection is opened and when a node is
probed, never at checkout. With one host none of this exists: the pool's
``cluster`` is None.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Callable

logger = logging.getLogger("django_mysqlpool")

POLICIES = ("failover", "round_robin")

# Error numbers of a statement that say its node, not the statement, is at
# fault. Not 2006 or 2013: one session can be lost (KILL, read_timeout)
# on a healthy node; if the node is gone, the next connect says so.
STATEMENT_NODE_ERRORS = frozenset({
    1047,  # ER_UNKNOWN_COM_ERROR: a Galera node that cannot serve (no quorum, joining, maintenance)
    1053,  # ER_SERVER_SHUTDOWN
})
# Error numbers of a connect (or of the readiness check just after it) that
# make the connect move on to the next node.
NODE_ERRORS = STATEMENT_NODE_ERRORS | frozenset({
    1040,  # ER_CON_COUNT_ERROR: the node is at max_connections
    1203,  # ER_TOO_MANY_USER_CONNECTIONS: at the user's max_user_connections there
    2002,  # CR_CONNECTION_ERROR (a socket that refused)
    2003,  # CR_CONN_HOST_ERROR (a TCP connection refused or timed out)
    2005,  # CR_UNKNOWN_HOST
    2006,  # CR_SERVER_GONE_ERROR
    2013,  # CR_SERVER_LOST
})


def parse_hosts(host: Any, default_port: Any) -> list[tuple[str, int]] | None:
    """The servers of a HOST value naming several ("db1:3306,db2"), or None for one server.

    A server without a port takes default_port (PORT, or 3306). An IPv6
    address takes brackets: "[::1]:3306". Raises ValueError for a value
    that cannot be read, saying why.
    """
    if not isinstance(host, str) or "," not in host:
        return None
    port = int(default_port) if default_port else 3306
    servers = []
    for entry in host.split(","):
        entry = entry.strip()
        if not entry:
            raise ValueError(f"an empty server name in {host!r}")
        if entry.startswith("/"):
            raise ValueError(f"{entry!r} is a unix socket; a list of servers takes host:port entries only")
        if entry.startswith("["):
            name, _, rest = entry[1:].partition("]")
            number = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") == 1:
            name, _, number = entry.partition(":")
        else:
            name, number = entry, ""
        try:
            servers.append((name, int(number) if number else port))
        except ValueError:
            raise ValueError(f"{entry!r} has a port that is not a number") from None
    if len(set(servers)) != len(servers):
        raise ValueError(f"{host!r} names a server twice")
    return servers


def error_number(error: BaseException) -> int | None:
    """The driver's error number of error, if it has one."""
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


class Node:
    """One server of a cluster and what the pool knows of its health."""

    __slots__ = ("host", "port", "label", "rank", "down_until", "reason", "open")

    def __init__(self, host: str, port: int, rank: int) -> None:
        self.host = host
        self.port = port
        self.label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.rank = rank  # its place in HOST: failover prefers the lowest
        self.down_until = 0.0  # 0: up; otherwise when its back-off ends (time.monotonic())
        self.reason = ""  # why it is down
        self.open = 0  # this pool's open connections to it

    def describe(self, now: float) -> str:
        if not self.down_until:
            return f"{self.label} up"
        if now < self.down_until:
            return f"{self.label} down ({self.reason}; retried in {self.down_until - now:.1f} s)"
        return f"{self.label} down ({self.reason}; being retried)"


class Cluster:
    """The nodes of one pool: choosing one for a new connection, health, and probing."""

    def __init__(self, alias: str, servers: list[tuple[str, int]], policy: str, retry_after: float) -> None:
        self.alias = alias
        self.nodes = [Node(host, port, rank) for rank, (host, port) in enumerate(servers)]
        self.policy = policy
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._turn = 0
        # Set by the registry: close this pool's idle connections to a node
        # (when it goes down), and open and close a bare connection to it
        # (a probe, returning what open_connection() would say of it).
        self.discard_idle: Callable[[Node], Any] = lambda node: None
        self.probe_connection: Callable[[Node], Any] | None = None
        self._prober: threading.Thread | None = None

    # -- choosing a node ----------------------------------------------------

    def _reserve(self, tried: list[Node]) -> Node | None:
        """The best node not yet tried for this connection, counted as holding it from now on.

        Only nodes that are up; if none is and nothing was tried yet, the
        one whose back-off ends first, as a last try (a fault that hit every
        node for a moment must not keep the pool down for a whole back-off).
        Chosen and counted under the lock: connections being opened at the
        same moment must see each other, or round_robin would send them all
        to the node that looked least used.
        """
        with self._lock:
            up = [node for node in self.nodes if not node.down_until and node not in tried]
            if up:
                if self.policy == "round_robin":
                    self._turn += 1
                    turn, count = self._turn, len(self.nodes)
                    chosen = min(up, key=lambda node: (node.open, (node.rank - turn) % count))
                else:
                    chosen = up[0]
            elif not tried:
                chosen = min(self.nodes, key=lambda node: node.down_until)
            else:
                return None
            chosen.open += 1
            return chosen

    def connect(self, params: dict[str, Any], open_connection: Callable[[dict[str, Any]], Any]) -> tuple[Any, Node]:
        """A new connection to the best node that is up, moving on past nodes that fail.

        Raises the driver's error for an error that is not the node's (a
        wrong password), and, when every node failed, the last node error's
        class with its number and a sentence on every node.
        """
        failures: list[BaseException] = []
        tried: list[Node] = []
        while True:
            node = self._reserve(tried)
            if node is None:
                raise self._all_down_error(failures)
            tried.append(node)
            connection = None
            try:
                connection = open_connection({**params, "host": node.host, "port": node.port})
                not_ready = self._not_ready(connection)
            except Exception as error:
                self.closed(node)
                if connection is not None:
                    _close_quietly(connection)
                if error_number(error) not in NODE_ERRORS:
                    # Not the node's fault (a wrong password, an unknown
                    # database): the caller's. The pool's message names
                    # this node, not every server of HOST.
                    error.mysqlpool_node = node.label  # type: ignore[attr-defined]
                    raise
                self.mark_down(node, _short(error))
                failures.append(error)
                continue
            except BaseException:
                self.closed(node)
                if connection is not None:
                    _close_quietly(connection)
                raise
            if not_ready:
                self.closed(node)
                _close_quietly(connection)
                self.mark_down(node, not_ready)
                continue
            self.mark_up(node)
            return connection, node

    def _not_ready(self, connection: Any) -> str | None:
        """Why a Galera node cannot serve (wsrep_ready not ON), or None (ready, or not Galera)."""
        try:
            value = wsrep_ready(connection)
        except Exception as error:
            if error_number(error) in NODE_ERRORS:
                return _short(error)
            raise
        if value is None:
            return None
        if value != "ON":
            return f"wsrep_ready={value}"
        rejecting = wsrep_reject_queries(connection)
        if rejecting not in (None, "NONE"):
            return f"wsrep_reject_queries={rejecting}"
        return None

    def _all_down_error(self, failures: list[BaseException]) -> BaseException:
        now = time.monotonic()
        states = "; ".join(node.describe(now) for node in self.nodes)
        message = (
            f"no node can serve ({states}); connections resume once a node is up and "
            "ready (for Galera: SHOW STATUS LIKE 'wsrep_%' on each node)"
        )
        if failures:
            last = failures[-1]
            return type(last)(error_number(last) or 2003, message)
        return _not_ready_error(message)

    # -- health -------------------------------------------------------------

    def mark_down(self, node: Node, reason: str) -> None:
        """The node failed: no new connection goes there for retry_after seconds; close its idle ones."""
        with self._lock:
            was_up = not node.down_until
            node.down_until = time.monotonic() + self.retry_after
            node.reason = reason
        if was_up:
            logger.warning(
                "database alias %r: node %s is down (%s); its idle connections are closed and "
                "it is retried in %.1f s", self.alias, node.label, reason, self.retry_after,
            )
            self.discard_idle(node)
        else:
            logger.debug("database alias %r: node %s is still down (%s)", self.alias, node.label, reason)

    def mark_up(self, node: Node) -> None:
        if node.down_until:
            with self._lock:
                node.down_until = 0.0
                node.reason = ""
            logger.warning("database alias %r: node %s is up again", self.alias, node.label)

    def failed(self, node: Node, error: BaseException) -> None:
        """A statement on a connection to node raised error: mark the node down if the error is the node's."""
        if error_number(error) in STATEMENT_NODE_ERRORS:
            self.mark_down(node, _short(error))

    def closed(self, node: Node) -> None:
        """One of this pool's connections to node was closed."""
        with self._lock:
            node.open -= 1

    def should_leave(self, node: Node) -> bool:
        """At give-back: close this connection to node rather than pool it?

        Yes if node is down; under failover, if a node ranked before it is
        up; under round_robin, if node holds two or more connections more
        than the node that is up and holds fewest (moving one evens them;
        a difference of one is as even as the count allows).
        """
        if node.down_until:
            return True
        if self.policy == "failover":
            return any(not other.down_until for other in self.nodes[: node.rank])
        fewest = min(other.open for other in self.nodes if not other.down_until)
        return node.open - fewest >= 2

    def probe_due(self) -> None:
        """Probe, in a thread of their own, the down nodes whose back-off is over.

        The idle sweeper calls this every second; a probe of a node that
        vanished waits up to connect_timeout, and must hold up neither the
        sweeper nor a second probe of this cluster.
        """
        if self.probe_connection is None:
            return
        now = time.monotonic()
        if not any(node.down_until and now >= node.down_until for node in self.nodes):
            return
        running = self._prober
        if running is not None and running.is_alive():
            return
        self._prober = threading.Thread(
            target=self._probe, name=f"django_mysqlpool node probe ({self.alias})", daemon=True)
        self._prober.start()

    def _probe(self) -> None:
        probe = self.probe_connection
        if probe is None:
            return
        now = time.monotonic()
        for node in self.nodes:
            if not node.down_until or now < node.down_until:
                continue
            try:
                connection = probe(node)
            except Exception as error:
                self.mark_down(node, _short(error))
                continue
            try:
                not_ready = self._not_ready(connection)
            except Exception as error:
                not_ready = _short(error)
            finally:
                _close_quietly(connection)
            if not_ready:
                self.mark_down(node, not_ready)
            else:
                self.mark_up(node)

    def describe(self) -> str:
        """Each node's state, on one line."""
        now = time.monotonic()
        return "; ".join(node.describe(now) for node in self.nodes)

    def servers(self) -> str:
        return ",".join(node.label for node in self.nodes)


def wsrep_ready(connection: Any) -> str | None:
    """The node's wsrep_ready status ("ON", "OFF"), or None where it has none (not a Galera node).

    MariaDB without Galera reports wsrep_ready OFF too: a node counts as
    Galera only when a provider is loaded. MySQL has neither (no rows).
    """
    cursor = connection.cursor()
    try:
        cursor.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_provider_name')"
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    status = {_text(name): _text(value) for name, value in rows}
    if not status.get("wsrep_provider_name") or "wsrep_ready" not in status:
        return None
    return status["wsrep_ready"]


def wsrep_reject_queries(connection: Any) -> str | None:
    """A Galera node's wsrep_reject_queries ("NONE", "ALL", "ALL_KILL"), None if it has none."""
    cursor = connection.cursor()
    try:
        cursor.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_reject_queries'")
        row = cursor.fetchone()
    finally:
        cursor.close()
    return None if row is None else _text(row[1])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _short(error: BaseException) -> str:
    number = error_number(error)
    args: tuple = getattr(error, "args", ())
    text = str(args[1]) if len(args) >= 2 else str(error)
    text = " ".join(text.split())  # one line
    return f"{number}: {text}" if number is not None else text


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:
        pass


def _not_ready_error(message: str) -> BaseException:
    # Every node answered but none was ready: the driver's OperationalError,
    # as a connect failure would be (the pool turns it into Django's).
    for module in ("MySQLdb", "pymysql"):
        driver = sys.modules.get(module)
        if driver is not None:
            return driver.OperationalError(1047, message)
    return ConnectionError(message)
