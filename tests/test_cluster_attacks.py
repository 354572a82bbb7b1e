"""Attacks on several servers in HOST: cases the cluster tests do not write, against real servers.

Two private MariaDB servers (plain, no Galera) play the nodes of a host
list, with the worker's own server as a third where one is needed; a
Galera cluster is used only for what needs wsrep. Each test states the
promise it attacks; those written as the promise the engine used to break
describe that bug, fixed since.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import MySQLdb
import pytest
from django.db.utils import ConnectionHandler, OperationalError

from django_mysqlpool import forks
from django_mysqlpool.registry import dispose_pools
from tests.cluster import PrivateCluster, why_unavailable
from tests.helpers import ON_PYMYSQL, address, database_name, greeting_bounded_by_connect_timeout, hold_at_once
from tests.server import PrivateServer, free_port

USER = "cluster_app"
PASSWORD = "cluster-app-secret-3b9f"
WRONG_PASSWORD = "not-the-app-secret-77c1"
JOIN = 60.0  # seconds any thread of these tests may take


# -- the nodes ----------------------------------------------------------------


def _grant(server_address, password=PASSWORD, table=True):
    """The test database and an unprivileged login (no SUPER: max_connections holds for it)."""
    admin = server_address.connect()
    try:
        cursor = admin.cursor()
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database_name()}`")
        cursor.execute(f"CREATE USER IF NOT EXISTS '{USER}'@'%%' IDENTIFIED BY %s", [password])
        cursor.execute(f"ALTER USER '{USER}'@'%%' IDENTIFIED BY %s", [password])
        cursor.execute(f"GRANT ALL ON `{database_name()}`.* TO '{USER}'@'%%'", [])
        if not table:
            return
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS `{database_name()}`.attack (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"
        )
        cursor.execute(f"INSERT IGNORE INTO `{database_name()}`.attack VALUES (1, 0)")
    finally:
        admin.close()


@pytest.fixture(scope="module")
def private_servers():
    made = [PrivateServer(), PrivateServer()]
    try:
        for server in made:
            server.start()
            _grant(server.address)
        yield made
    finally:
        for server in made:
            server.destroy()


@pytest.fixture
def nodes(private_servers):
    """Two private servers, running and granted, whatever the test before did to them."""
    for server in private_servers:
        if server.pid is not None:
            try:
                os.kill(server.pid, signal.SIGCONT)  # a test that SIGSTOPped it and failed
            except ProcessLookupError:
                pass
        if not server.running():
            server.start()
        _grant(server.address)
    _grant(address(), table=False)  # the worker's own server, a third node that is never stopped
    yield private_servers
    for server in private_servers:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)


@pytest.fixture(autouse=True)
def leaves_nothing_open(nodes, handlers):
    """Once the test's handlers are closed and its pools disposed, no app connection stays open on a node."""
    yield
    for handler in handlers.made:
        handler.close_all()
    dispose_pools()

    def left():
        return {label(server): app_connections(server) for server in nodes if server.running()}

    assert wait_for(lambda: not any(left().values()), timeout=10), f"connections left open: {left()}"


def label(server) -> str:
    return f"127.0.0.1:{server.port}"


def hosts(*servers) -> str:
    return ",".join(server if isinstance(server, str) else label(server) for server in servers)


def on_server(server_address, sql, args=None):
    admin = server_address.connect()
    try:
        cursor = admin.cursor()
        cursor.execute(sql, args)
        return cursor.fetchall()
    finally:
        admin.close()


def app_connections(server) -> int:
    """The app login's connections the server has open now (the admin's excluded)."""
    server_address = server if not hasattr(server, "address") else server.address
    return on_server(
        server_address, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", [USER]
    )[0][0]


def wait_for(condition, timeout=20.0, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


@pytest.fixture
def handlers():
    made = []

    def make(host, password=PASSWORD, options=None, port="", user=USER, **pool):
        handler = ConnectionHandler({"default": {
            "ENGINE": "django_mysqlpool.backends.mysqlpool", "HOST": host, "PORT": port,
            "USER": user, "PASSWORD": password, "NAME": database_name(),
            "OPTIONS": {
                **({"connect_timeout": 2} if options is None else options),
                "pool": {"host_retry_after": 0.5, **pool},
            },
        }})
        made.append(handler)
        return handler

    make.made = made
    yield make
    for handler in made:
        handler.close_all()
    dispose_pools()


def served(handler, sql="SELECT @@port, CONNECTION_ID()"):
    """Run one request on the handler's alias: (port, connection id) of the node that served it."""
    connection = handler["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()
    finally:
        connection.close()


def in_thread(function, timeout=JOIN):
    """function() in a thread of its own, joined within timeout: ("ok", result), ("raised", error) or ("hung", None)."""
    outcome = []

    def run():
        try:
            outcome.append(("ok", function()))
        except BaseException as error:  # reported to the caller
            outcome.append(("raised", error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return "hung", None
    return outcome[0]


def node_of(handler, server):
    return next(node for node in handler["default"].pool.cluster.nodes if node.port == server.port)


def counts_agree(handler, servers) -> bool:
    """node.open is what each server sees, and their sum what the pool holds open.

    The pool's slots (open_count()) also count a record whose connection was closed at
    give-back and not yet reopened (SQLAlchemy reconnects it at its next checkout): the
    physical connections are the records with a driver connection.
    """
    pool = handler["default"].pool
    nodes = {node.port: node for node in pool.cluster.nodes}
    on_servers = {server.port: app_connections(server) for server in servers}
    with pool.pool._lock:
        idle_open = sum(1 for record in pool.pool._idle if record.dbapi_connection is not None)
    checked_out = pool.pool.checkedout()
    return (
        all(nodes[port].open == count for port, count in on_servers.items())
        and idle_open <= sum(node.open for node in nodes.values()) <= idle_open + checked_out
    )


def describe_counts(handler, servers) -> str:
    pool = handler["default"].pool
    return (
        f"node.open={[(node.label, node.open) for node in pool.cluster.nodes]} "
        f"servers={[(label(server), app_connections(server)) for server in servers]} "
        f"pool open_count={pool.pool.open_count()} checked out={pool.pool.checkedout()}"
    )


class BlackHole:
    """A port whose listener completes TCP connections and never says a word (a hung host)."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)  # never accept(): the kernel queues them, silent
        self.port = self.listener.getsockname()[1]

    def close(self):
        self.listener.close()  # resets the queued connections: a hung client wakes


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


# -- a healthy node taken out by one connection's error -------------------------


def _kill_during_query(server, handler_connection_id, delay=0.5):
    def kill():
        time.sleep(delay)
        on_server(server.address, f"KILL {int(handler_connection_id)}")

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("how", ["read_timeout", "kill"])
def test_one_lost_query_on_the_only_live_node_does_not_make_the_alias_unavailable(nodes, handlers, how):
    """A query that outlives read_timeout, or a DBA's KILL of one session, loses that
    connection (2013). The node is fine; the other node is dead. The next request must be
    served by the live node, not fail with "no node can serve"."""
    live, dead = nodes
    dead.kill()
    options = {"connect_timeout": 2, "read_timeout": 2}
    handler = handlers(hosts(dead, live), options=options, host_retry_after=30)
    assert served(handler)[0] == live.port  # the dead node is tried first, marked down, passed over
    connection = handler["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            (session,) = cursor.fetchone()
            killer = _kill_during_query(live, session) if how == "kill" else None
            with pytest.raises(OperationalError):
                cursor.execute("SELECT SLEEP(5)")  # 2013 after read_timeout, or at the KILL
            if killer is not None:
                killer.join(JOIN)
                assert not killer.is_alive()
    finally:
        connection.close()
    outcome = in_thread(lambda: served(handler))
    assert outcome[0] == "ok", f"{outcome[1]!r}; nodes: {handler['default'].pool.cluster.describe()}"
    assert outcome[1][0] == live.port


def test_one_killed_session_does_not_move_traffic_off_a_healthy_preferred_node(nodes, handlers):
    """failover: the preferred node stays preferred when one of its sessions is killed
    (a runaway query killed by a DBA); its other idle connections stay open."""
    first, second = nodes
    handler = handlers(hosts(first, second), host_retry_after=30)
    hold_at_once(lambda: handler["default"], 3, timeout=JOIN)
    assert wait_for(lambda: app_connections(first) == 3), app_connections(first)
    connection = handler["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            (session,) = cursor.fetchone()
            killer = _kill_during_query(first, session)
            with pytest.raises(OperationalError):
                cursor.execute("SELECT SLEEP(5)")
            killer.join(JOIN)
    finally:
        connection.close()
    port, _ = served(handler)
    assert port == first.port, f"moved to the second node: {handler['default'].pool.cluster.describe()}"


# -- a node that cannot take one more connection --------------------------------


@pytest.mark.parametrize("policy", ["failover", "round_robin"])
def test_a_node_at_max_connections_is_passed_over_for_one_that_can_serve(nodes, handlers, policy):
    """1040 Too many connections: this node cannot take a connection now, the next one can."""
    full, spare = nodes
    on_server(full.address, "SET GLOBAL max_connections = 10")
    held = []
    try:
        for _ in range(20):
            try:
                held.append(MySQLdb.connect(host="127.0.0.1", port=full.port, user=USER,
                                            password=PASSWORD, database=database_name()))
            except MySQLdb.OperationalError as error:
                assert error.args[0] == 1040
                break
        handler = handlers(hosts(full, spare), host_policy=policy)

        def two_at_once():
            # Two connections open at once: round robin sends one of them to each node.
            wrappers = [handler.create_connection("default") for _ in range(2)]
            try:
                ports = []
                for wrapper in wrappers:
                    with wrapper.cursor() as cursor:
                        cursor.execute("SELECT @@port")
                        ports.append(cursor.fetchone()[0])
                return ports
            finally:
                for wrapper in wrappers:
                    wrapper.close()

        outcome = in_thread(two_at_once)
        assert outcome[0] == "ok", repr(outcome[1])
        assert outcome[1] == [spare.port, spare.port]
    finally:
        for connection in held:
            connection.close()
        on_server(full.address, "SET GLOBAL max_connections = 1000")


# -- wrong passwords ------------------------------------------------------------


def _refused(handler):
    outcome = in_thread(lambda: served(handler))
    assert outcome[0] == "raised", outcome
    return outcome[1]


def test_a_wrong_password_on_one_node_is_a_clear_error_and_not_a_node_down(nodes, handlers):
    wrong, right = nodes
    _grant(wrong.address, password=WRONG_PASSWORD)  # that node knows the login by another password
    try:
        handler = handlers(hosts(wrong, right))
        error = _refused(handler)
        message = str(error)
        assert isinstance(error, OperationalError), repr(error)
        assert error.args[0] == 1045
        assert "database alias 'default'" in message and "\n" not in message
        assert PASSWORD not in message and WRONG_PASSWORD not in message
        assert " down" not in handler["default"].pool.cluster.describe()  # a login, not a node, is wrong
    finally:
        _grant(wrong.address)


def test_a_wrong_password_on_one_node_names_that_node(nodes, handlers):
    """With several servers, "cannot connect to h1,h2: Access denied" does not say which refused."""
    wrong, right = nodes
    _grant(wrong.address, password=WRONG_PASSWORD)
    try:
        handler = handlers(hosts(right, wrong), host_policy="round_robin")
        # Round robin: some checkout goes to the wrong node; hold connections so that new ones open.
        errors, held = [], []
        for _ in range(4):
            connection = handler.create_connection("default")
            held.append(connection)
            try:
                connection.ensure_connection()
            except OperationalError as error:
                errors.append(error)
        for connection in held:
            connection.close()
        assert errors, "no checkout reached the node with the other password"
        message = str(errors[0])
        assert label(wrong) in message
        assert label(right) not in message, f"names the node that accepted the login too: {message}"
    finally:
        _grant(wrong.address)


def test_a_wrong_password_everywhere_is_one_clear_error(nodes, handlers):
    first, second = nodes
    handler = handlers(hosts(first, second), password=WRONG_PASSWORD)
    error = _refused(handler)
    message = str(error)
    assert isinstance(error, OperationalError) and error.args[0] == 1045
    assert "database alias 'default'" in message and "\n" not in message
    assert WRONG_PASSWORD not in message and PASSWORD not in message
    assert " down" not in handler["default"].pool.cluster.describe()


# -- nodes that vanish without refusing -------------------------------------------


@greeting_bounded_by_connect_timeout
def test_a_node_that_accepts_and_never_answers_costs_at_most_connect_timeout(nodes, handlers, black_hole):
    server, _ = nodes
    handler = handlers(hosts(f"127.0.0.1:{black_hole.port}", server))
    outcome = in_thread(lambda: served(handler), timeout=30)
    assert outcome[0] == "ok", outcome
    assert outcome[1][0] == server.port
    assert f"127.0.0.1:{black_hole.port} down" in handler["default"].pool.status()


@greeting_bounded_by_connect_timeout
def test_a_node_that_never_answers_does_not_hang_a_checkout_without_connect_timeout(nodes, handlers, black_hole):
    """No connect_timeout in OPTIONS (the driver's default: wait for ever). The probes get a
    default connect timeout (registry.PROBE_CONNECT_TIMEOUT); a checkout moving on to the
    next node needs one just as much, or failover never happens."""
    server, _ = nodes
    handler = handlers(hosts(f"127.0.0.1:{black_hole.port}", server), options={})
    outcome = in_thread(lambda: served(handler), timeout=15)
    black_hole.close()  # wakes a hung checkout, so that no thread outlives the test
    assert outcome[0] == "ok", f"{outcome}: the checkout waits for the silent node's greeting"
    assert outcome[1][0] == server.port


@pytest.mark.parametrize("down_node", ["refusing", pytest.param("silent", marks=greeting_bounded_by_connect_timeout)])
def test_the_idle_sweeper_is_not_held_up_by_probing_a_down_node(nodes, handlers, black_hole, down_node):
    """Probes run in the one sweeper thread: while it waits connect_timeout on a silent
    node, no pool of the process retires idle connections or reports leaks. ("refusing":
    the same with a node that refuses at once, the control.)"""
    server, _ = nodes
    down = black_hole.port if down_node == "silent" else free_port()
    cluster_handler = handlers(hosts(f"127.0.0.1:{down}", server),
                               options={"connect_timeout": 20}, host_retry_after=0.1)
    single_handler = handlers("127.0.0.1", port=str(address().port), idle_timeout=1, min_idle=0)
    outcome = in_thread(lambda: served(cluster_handler), timeout=60)
    assert outcome[0] == "ok", outcome  # the down node is marked down: the sweeper probes it
    time.sleep(1.5)  # a probe under way
    served(single_handler)
    pool = single_handler["default"].pool
    assert pool.pool.open_count() == 1
    retired = wait_for(lambda: pool.pool.open_count() == 0, timeout=10)
    black_hole.close()
    assert retired, "an idle connection of another pool outlived idle_timeout=1 by 10 s"


def test_a_stopped_server_is_left_within_bounded_time_and_rejoined_after(nodes, handlers):
    """SIGSTOP: connections to it neither refuse nor answer. With connect_timeout and
    read_timeout set, requests move to the next node; after SIGCONT traffic comes back."""
    first, second = nodes
    handler = handlers(hosts(first, second), options={"connect_timeout": 2, "read_timeout": 2})
    for _ in range(3):
        assert served(handler)[0] == first.port
    os.kill(first.pid, signal.SIGSTOP)
    try:
        ports, errors = [], []

        def traffic():
            for _ in range(6):
                try:
                    ports.append(served(handler)[0])
                except OperationalError as error:
                    errors.append(error)

        outcome = in_thread(traffic, timeout=90)
        assert outcome[0] == "ok", outcome
        assert ports and ports[-1] == second.port, (ports, errors)
        assert len(errors) <= 1, errors  # at most the request on the idle connection to the stopped node
        assert f"{label(first)} down" in handler["default"].pool.status()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    back = wait_for(lambda: served(handler)[0] == first.port, timeout=30)
    assert back, handler["default"].pool.status()


@greeting_bounded_by_connect_timeout
def test_giving_back_a_connection_to_a_node_known_down_does_not_wait_on_it(nodes, handlers):
    """A connection to a stopped node (SIGSTOP), in a transaction, given back after the pool
    marked that node down: it is going to be closed (lifecycle.give_back: should_leave), so
    the ROLLBACK sent first can only wait, for ever without read_timeout (the default)."""
    first, second = nodes
    handler = handlers(hosts(first, second), options={"connect_timeout": 2}, host_retry_after=30)
    in_transaction, give_back, given_back = threading.Event(), threading.Event(), threading.Event()
    problems = []

    def hold_then_give_back():
        holder = handler["default"]
        try:
            holder.set_autocommit(False)
            with holder.cursor() as cursor:
                cursor.execute("SELECT @@port")
                problems.extend([] if cursor.fetchone()[0] == first.port else ["not on the first node"])
                cursor.execute("UPDATE attack SET v = v + 1 WHERE id = 1")
            in_transaction.set()
            give_back.wait(JOIN)
        except Exception as error:
            problems.append(error)
        finally:
            holder.close()
            given_back.set()

    thread = threading.Thread(target=hold_then_give_back, daemon=True)
    thread.start()
    assert in_transaction.wait(JOIN) and not problems, problems
    os.kill(first.pid, signal.SIGSTOP)
    try:
        # Another request opens a connection (none is idle): the stopped node times out at
        # connect and is marked down; the request is served by the second node.
        other = in_thread(lambda: served(handler))
        assert other[0] == "ok" and other[1][0] == second.port, other
        assert f"{label(first)} down" in handler["default"].pool.status()
        give_back.set()
        closed = given_back.wait(10)
        assert closed, "the give-back waits on the stopped node (ROLLBACK before the close)"
    finally:
        give_back.set()
        os.kill(first.pid, signal.SIGCONT)
        thread.join(JOIN)
    assert not thread.is_alive()


def test_a_node_whose_name_does_not_resolve_is_passed_over(nodes, handlers):
    server, _ = nodes
    handler = handlers(hosts("db-node-7.mysqlpool.invalid:3306", server))
    outcome = in_thread(lambda: served(handler))
    assert outcome[0] == "ok" and outcome[1][0] == server.port, outcome
    status = handler["default"].pool.status()
    # mysqlclient says 2005 (unknown host); PyMySQL says 2003 for any failed connect.
    assert "db-node-7.mysqlpool.invalid:3306 down (2005" in status or (
        ON_PYMYSQL and "db-node-7.mysqlpool.invalid:3306 down (2003" in status), status


# -- counts --------------------------------------------------------------------


def test_a_connection_whose_setup_fails_is_closed_not_left_open(nodes, handlers):
    """lifecycle.prepare() fails after the connect (here: the login's query quota runs out at
    SET SESSION wsrep_sync_wait). The checkout fails; the physical connection must not
    stay open on the server, outside every pool and count."""
    first, second = nodes
    quota_user = "cluster_quota"
    admin = first.address.connect()
    try:
        cursor = admin.cursor()
        cursor.execute(f"DROP USER IF EXISTS '{quota_user}'@'%%'", [])
        # The connect sends 2 statements, the pool's setup 1 (SELECT CURRENT_ROLE()): the 4th fails.
        cursor.execute(f"CREATE USER '{quota_user}'@'%%' IDENTIFIED BY %s WITH MAX_QUERIES_PER_HOUR 3", [PASSWORD])
        cursor.execute(f"GRANT ALL ON `{database_name()}`.* TO '{quota_user}'@'%%'", [])
    finally:
        admin.close()
    try:
        handler = handlers(hosts(first, second), wsrep_sync_wait=1)
        handler["default"].settings_dict["USER"] = quota_user
        outcome = in_thread(lambda: served(handler))
        assert outcome[0] == "raised" and outcome[1].args[0] == 1226, outcome
        assert [node.open for node in handler["default"].pool.cluster.nodes] == [0, 0]
        handler.close_all()
        dispose_pools()

        def quota_connections():
            return on_server(first.address, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s",
                             [quota_user])[0][0]

        assert wait_for(lambda: quota_connections() == 0, timeout=5), (
            f"{quota_connections()} connection(s) of the failed setup still open on the server"
        )
    finally:
        on_server(first.address, f"KILL USER {quota_user}")
        on_server(first.address, f"DROP USER IF EXISTS '{quota_user}'@'%%'", [])


def test_node_counts_match_the_servers_through_kills_restarts_retirement_and_dispose(nodes, handlers):
    first, second = nodes
    bound = 3 + 2
    handler = handlers(hosts(first, second), pool_size=3, max_overflow=2, timeout=20,
                       idle_timeout=0.3, min_idle=1, host_retry_after=0.2)
    stop = threading.Event()
    errors, peak = [], [0]

    def traffic():
        while not stop.is_set():
            connection = handler["default"]
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                    if threading.get_ident() % 2:
                        cursor.execute("BEGIN")
                        cursor.execute("SELECT v FROM attack WHERE id = 1 FOR UPDATE")
                        cursor.execute("SET @x = 1")  # dirty: a reset at give-back
            except Exception as error:
                errors.append(error)
            finally:
                connection.close()
            time.sleep(0.005)

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], sum(app_connections(server) for server in (first, second)))
            except MySQLdb.OperationalError:  # the server being killed
                pass
            time.sleep(0.05)

    threads = [threading.Thread(target=traffic, daemon=True) for _ in range(8)]
    sampler = threading.Thread(target=sample, daemon=True)
    for thread in threads + [sampler]:
        thread.start()
    try:
        time.sleep(1.5)
        first.kill()
        time.sleep(1.5)
        first.start()
        _grant(first.address)
        time.sleep(3)
        dispose_pools()  # with connections out
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads + [sampler]:
            thread.join(JOIN)
    assert not any(thread.is_alive() for thread in threads + [sampler])
    assert all(isinstance(error, OperationalError) for error in errors), errors[:3]
    # The pool the traffic used last (dispose_pools() made a new one) settles with its counts true.
    assert wait_for(lambda: counts_agree(handler, (first, second)), timeout=15), describe_counts(handler, (first, second))
    assert peak[0] <= bound, f"{peak[0]} connections seen on the servers at once, bound {bound}"
    # Idle retirement (min_idle=1) also counts down.
    assert wait_for(lambda: handler["default"].pool.pool.open_count() <= 1, timeout=15)
    assert counts_agree(handler, (first, second)), describe_counts(handler, (first, second))


def test_round_robin_in_a_steady_state_does_not_churn(nodes, handlers):
    first, second = nodes
    handler = handlers(hosts(first, second, label(address())), host_policy="round_robin",
                       pool_size=5, max_overflow=0, timeout=20)
    warm, steady = threading.Barrier(6, timeout=JOIN), threading.Barrier(6, timeout=JOIN)

    def work():
        for _ in range(20):  # warm-up: connections opened at once may land unevenly (see below)
            served(handler)
        warm.wait()
        steady.wait()
        for _ in range(60):
            served(handler)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(5)]
    for thread in threads:
        thread.start()
    warm.wait()
    before = handler["default"].pool.get_stats()["connections_num"]
    steady.wait()
    for thread in threads:
        thread.join(JOIN)
    assert not any(thread.is_alive() for thread in threads)
    opened = handler["default"].pool.get_stats()["connections_num"] - before
    # 300 requests on the five connections the warm-up left: at most a last move or two.
    assert opened <= 2, f"{opened} connections opened for 300 requests: {describe_counts(handler, (first, second))}"
    assert counts_agree(handler, (first, second))


def test_round_robin_spreads_connections_opened_at_once(nodes, handlers):
    """The second node holds two connections; four requests then open one each at the same
    time (a connect takes a moment: init_command sleeps 0.5 s). Round robin must end 3/3,
    not send all four to the node that had fewest when they started, which then holds two
    more than the other and closes connections at every give-back."""
    first, second = nodes
    first.kill()
    handler = handlers(hosts(first, second), host_policy="round_robin", pool_size=6, max_overflow=0,
                       options={"connect_timeout": 5, "init_command": "DO SLEEP(0.5)"}, host_retry_after=0.3)
    held, release = threading.Barrier(3, timeout=JOIN), threading.Event()
    opened = threading.Barrier(5, timeout=JOIN)

    def hold(barrier):
        def run():
            connection = handler["default"]
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                    barrier.wait()
                    release.wait(JOIN)
            finally:
                connection.close()
        return threading.Thread(target=run, daemon=True)

    threads = [hold(held) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        held.wait()  # two connections to the second node (the first is down)
        first.start()
        _grant(first.address)
        assert wait_for(lambda: " down" not in handler["default"].pool.cluster.describe(), timeout=30)
        burst = [hold(opened) for _ in range(4)]
        threads += burst
        for thread in burst:
            thread.start()
        opened.wait()  # six connections open
        spread = sorted([app_connections(first), app_connections(second)])
    finally:
        release.set()
        for thread in threads:
            thread.join(JOIN)
    assert not any(thread.is_alive() for thread in threads)
    assert spread == [3, 3], f"connections per node: {spread}"


def test_round_robin_rebalances_after_a_node_returns_and_then_stops_churning(nodes, handlers):
    first, second = nodes
    handler = handlers(hosts(first, second), host_policy="round_robin", pool_size=4, max_overflow=0, timeout=20)
    second.kill()
    stop = threading.Event()
    ports = []

    def work():
        while not stop.is_set():
            try:
                ports.append(served(handler, "SELECT @@port, SLEEP(0.01)")[0])
            except OperationalError:
                pass

    threads = [threading.Thread(target=work, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        second.start()
        _grant(second.address)
        time.sleep(4)  # probed up, rebalanced
        before = handler["default"].pool.get_stats()["connections_num"]
        count_before = len(ports)
        time.sleep(3)
        opened = handler["default"].pool.get_stats()["connections_num"] - before
        requests = len(ports) - count_before
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN)
    assert not any(thread.is_alive() for thread in threads)
    assert requests > 20
    assert opened <= 2, f"{opened} connections opened in {requests} requests of a steady state"
    assert {node.open for node in handler["default"].pool.cluster.nodes} == {2}
    assert counts_agree(handler, (first, second)), describe_counts(handler, (first, second))


# -- the close-at-give-back path ------------------------------------------------------


def test_failover_hands_out_no_idle_connection_to_a_lower_node_once_the_first_is_up(nodes, handlers):
    """failover exists so that one node takes the writes (Galera: no certification conflicts
    between nodes). Once the first node is up again, an idle connection to the second one
    is closed at give-back (cluster.should_leave), but it is still handed out first: requests
    keep writing on the second node while others write on the first."""
    first, second = nodes
    first.kill()
    handler = handlers(hosts(first, second), pool_size=4, max_overflow=0, host_retry_after=0.3)
    hold_at_once(lambda: handler["default"], 4, timeout=JOIN)  # four connections to the second node, then idle
    first.start()
    _grant(first.address)
    assert wait_for(lambda: " down" not in handler["default"].pool.cluster.describe(), timeout=30)
    ports = [served(handler)[0] for _ in range(4)]
    assert ports == [first.port] * 4, f"served by {ports} after {label(first)} was up again"



def test_a_connection_closed_at_give_back_leaves_no_lock_or_transaction_behind(nodes, handlers):
    """failover: a connection to the second node given back once the first is up again is
    closed, not pooled. What its session held must be gone, and an uncommitted write too."""
    first, second = nodes
    first.kill()
    handler = handlers(hosts(first, second), host_retry_after=0.3)
    connection = handler["default"]
    try:
        connection.set_autocommit(False)
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@port")
            assert cursor.fetchone()[0] == second.port
            cursor.execute("UPDATE attack SET v = v + 1 WHERE id = 1")  # a row lock, uncommitted
            cursor.execute("SELECT GET_LOCK('mysqlpool_attack', 0)")
            assert cursor.fetchone()[0] == 1
            cursor.execute("CREATE TEMPORARY TABLE scratch (x INT)")
        first.start()
        _grant(first.address)
        up = wait_for(lambda: " down" not in handler["default"].pool.cluster.describe(), timeout=30)
        assert up, handler["default"].pool.status()
    finally:
        connection.close()
    assert on_server(second.address, "SELECT IS_FREE_LOCK('mysqlpool_attack')")[0][0] == 1
    assert on_server(second.address, f"SELECT v FROM `{database_name()}`.attack WHERE id = 1")[0][0] == 0
    admin = second.address.connect()
    try:
        cursor = admin.cursor()
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
        cursor.execute(f"UPDATE `{database_name()}`.attack SET v = v WHERE id = 1")  # no lock wait timeout
    finally:
        admin.close()
    port, _ = served(handler)
    assert port == first.port
    assert wait_for(lambda: app_connections(second) == 0, timeout=10)


# -- recovery ----------------------------------------------------------------------


def test_every_node_down_then_one_back(nodes, handlers):
    first, second = nodes
    handler = handlers(hosts(first, second), host_retry_after=0.5)
    assert served(handler)[0] == first.port
    first.kill()
    second.kill()
    error = _refused(handler)
    message = str(error)
    assert isinstance(error, OperationalError)
    assert "database alias 'default'" in message and "\n" not in message
    assert f"{label(first)} down (" in message and f"{label(second)} down (" in message
    assert PASSWORD not in message
    second.start()
    _grant(second.address)

    def serves_second():
        try:
            return served(handler)[0] == second.port
        except OperationalError:
            return False

    assert wait_for(serves_second, timeout=30), handler["default"].pool.status()


def test_a_tiny_host_retry_after_makes_no_request_pay_for_the_dead_node(nodes, handlers):
    first, second = nodes
    first.kill()
    handler = handlers(hosts(first, second), host_retry_after=0.001)
    for _ in range(200):
        assert served(handler)[0] == second.port
    # Only the first checkout tried the dead node; later tries are the sweeper's probes.
    assert handler["default"].pool.get_stats()["connections_errors"] <= 1


def test_a_thundering_herd_returns_to_the_preferred_node_within_the_bound(nodes, handlers):
    first, second = nodes
    handler = handlers(hosts(first, second), pool_size=4, max_overflow=4, timeout=30, host_retry_after=0.3)
    first.kill()
    stop = threading.Event()
    errors, peak, over_bound = [], [0], []

    def traffic():
        while not stop.is_set():
            try:
                served(handler)
            except Exception as error:
                errors.append(error)

    threads = [threading.Thread(target=traffic, daemon=True) for _ in range(20)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        first.start()
        _grant(first.address)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = app_connections(first) + app_connections(second)
            if seen > 8:
                # A connection the pool closed may still be listed while the server ends its
                # thread: count again; a real excess is still there.
                over_bound.append(seen)
                time.sleep(0.2)
                seen = min(seen, app_connections(first) + app_connections(second))
            peak[0] = max(peak[0], seen)
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors[:3]
    assert peak[0] <= 8, (peak[0], over_bound)
    assert wait_for(lambda: app_connections(second) == 0, timeout=10)
    assert counts_agree(handler, (first, second)), describe_counts(handler, (first, second))


def test_settings_changed_while_a_node_is_down_keep_every_request_served(nodes, handlers):
    """MYSQLPOOL_ARGUMENTS changes (override_settings) make a new pool, with its own idea of
    each node's health; the pool before it comes back when the change is undone."""
    from django.test import override_settings

    first, second = nodes
    first.kill()
    handler = handlers(hosts(first, second))
    assert served(handler)[0] == second.port
    before = handler["default"].pool
    with override_settings(MYSQLPOOL_ARGUMENTS={"max_overflow": 3}):
        assert served(handler)[0] == second.port
        during = handler["default"].pool
        assert during is not before and f"{label(first)} down" in during.status()
    assert served(handler)[0] == second.port
    assert handler["default"].pool is before
    first.start()
    _grant(first.address)
    assert wait_for(lambda: served(handler)[0] == first.port, timeout=30), handler["default"].pool.status()


# -- fork -------------------------------------------------------------------------


def _in_child(function, timeout=JOIN) -> int:
    """function() in a forked child; its exit status (0: it returned True)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if function() else 3
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


@pytest.mark.parametrize("close_first", [True, False])
def test_a_forked_child_uses_the_cluster_and_the_parents_counts_stay_true(nodes, handlers, close_first):
    first, second = nodes
    first.kill()
    handler = handlers(hosts(first, second))
    for _ in range(3):
        assert served(handler)[0] == second.port
    first.start()
    _grant(first.address)
    if close_first:
        forks.close_pool()
    assert _in_child(lambda: served(handler)[0] in (first.port, second.port)) == 0
    assert served(handler)[0] in (first.port, second.port)
    assert wait_for(lambda: counts_agree(handler, (first, second)), timeout=15), describe_counts(handler, (first, second))


# -- one server --------------------------------------------------------------------


def test_one_server_with_its_port_in_port_is_no_cluster(nodes, handlers):
    server = address()
    handler = handlers("127.0.0.1", port=str(server.port))
    assert served(handler)[0] == server.port
    pool = handler["default"].pool
    assert pool.cluster is None and pool.parking
    assert pool.server == f"127.0.0.1:{server.port}"


# -- Galera ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def galera_hosts():
    """A Galera cluster's HOST value: MYSQL_CLUSTER_HOSTS (python -m tests.cluster), or a private one."""
    given = os.environ.get("MYSQL_CLUSTER_HOSTS")
    cluster = None
    if not given:
        cluster = PrivateCluster().start()
        given = cluster.hosts
    try:
        node_ports = [int(entry.rsplit(":", 1)[1]) for entry in given.split(",")]
        for port in node_ports:
            on_galera(port, f"CREATE DATABASE IF NOT EXISTS `{database_name()}`")
            on_galera(port, f"CREATE USER IF NOT EXISTS '{USER}'@'%%' IDENTIFIED BY %s", [PASSWORD])
            on_galera(port, f"GRANT ALL ON `{database_name()}`.* TO '{USER}'@'%%'", [])
        on_galera(node_ports[0], f"CREATE TABLE IF NOT EXISTS `{database_name()}`.galera_attack "
                                 "(id INT PRIMARY KEY, note VARCHAR(40)) ENGINE=InnoDB")
        on_galera(node_ports[0], f"DELETE FROM `{database_name()}`.galera_attack")
        yield given, node_ports
    finally:
        if cluster is not None:
            cluster.destroy()


def on_galera(port, sql, args=None):
    admin = MySQLdb.connect(host="127.0.0.1", port=port, user="root", password="", autocommit=True)
    try:
        cursor = admin.cursor()
        cursor.execute(sql, args)
        return cursor.fetchall()
    finally:
        admin.close()


@pytest.mark.skipif(why_unavailable() is not None, reason="no Galera")
@pytest.mark.galera
@pytest.mark.xdist_group("galera")
def test_galera_a_session_that_turned_replication_off_is_not_handed_on(galera_hosts, handlers):
    """SET SESSION wsrep_on = OFF (a SUPER user's bulk load, say) must not reach the next
    user: their writes would silently stay on one node."""
    host, ports = galera_hosts
    handler = handlers(host, user="root", password="", pool_size=1, max_overflow=0, wsrep_sync_wait=1)
    _, first_id = served(handler, "SELECT @@port, CONNECTION_ID()")
    connection = handler["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION wsrep_on = OFF")
            cursor.execute("SET SESSION wsrep_sync_wait = 0")
            cursor.execute("INSERT INTO galera_attack VALUES (1, 'local only')")
    finally:
        connection.close()
    connection = handler["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID(), @@session.wsrep_on, @@session.wsrep_sync_wait")
            second_id, wsrep_on, sync_wait = cursor.fetchone()
            cursor.execute("INSERT INTO galera_attack VALUES (2, 'replicated')")
    finally:
        connection.close()
    if not ON_PYMYSQL:  # PyMySQL closes a session that needs a reset: a new one comes
        assert second_id == first_id  # the same pooled connection, reset
    assert (wsrep_on, sync_wait) == (1, 1)
    replicated = wait_for(lambda: on_galera(ports[1], f"SELECT COUNT(*) FROM `{database_name()}`.galera_attack "
                                                      "WHERE id = 2")[0][0] == 1, timeout=10)
    assert replicated


@pytest.mark.skipif(why_unavailable() is not None, reason="no Galera")
@pytest.mark.galera
@pytest.mark.xdist_group("galera")
def test_galera_a_node_in_maintenance_is_not_taken_back_at_every_probe(galera_hosts, handlers):
    """wsrep_reject_queries = ALL: the operator's way to drain a node. wsrep_ready stays ON and
    SHOW STATUS still answers, but every query on a table fails with 1047. The node must
    stay out of use: not probed "up" again and handed a failing request every few seconds."""
    host, ports = galera_hosts
    handler = handlers(host, host_retry_after=0.3)
    sql = "SELECT @@port, COUNT(*) FROM galera_attack"
    assert served(handler, sql)[0] == ports[0]
    on_galera(ports[0], "SET GLOBAL wsrep_reject_queries = ALL")
    errors, served_by = [], []
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                served_by.append(served(handler, sql)[0])
            except OperationalError as error:
                errors.append(error)
            time.sleep(0.05)
    finally:
        on_galera(ports[0], "SET GLOBAL wsrep_reject_queries = NONE")
    assert served_by and served_by[-1] == ports[1]
    # The request on the connection already open to the drained node may fail; no more.
    assert len(errors) <= 1, f"{len(errors)} requests failed: {[str(e)[:80] for e in errors[:3]]}"


def _galera_status(port, name):
    rows = on_galera(port, "SHOW GLOBAL STATUS LIKE %s", [name])
    return rows[0][1] if rows else None


@pytest.mark.skipif(why_unavailable() is not None, reason="no Galera")
@pytest.mark.galera
@pytest.mark.xdist_group("galera")
def test_galera_connections_to_a_node_that_is_not_ready_are_not_kept_for_ever(galera_hosts, handlers):
    """A connection opened to a node whose wsrep_ready is OFF is closed at once (cluster.py),
    but it was adopted first (ownership.adopt) and never released: the process keeps every
    one of them, a memory leak for as long as the outage lasts."""
    from django_mysqlpool import ownership

    host, ports = galera_hosts
    handler = handlers(f"127.0.0.1:{ports[0]},127.0.0.1:{free_port()}", user="root", password="",
                       host_retry_after=30)
    on_galera(ports[0], "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'")
    try:
        assert wait_for(lambda: _galera_status(ports[0], "wsrep_ready") == "OFF", timeout=30)
        before = len(ownership._adopted)
        failures = []
        for _ in range(30):
            outcome = in_thread(lambda: served(handler))
            assert outcome[0] == "raised", outcome
            failures.append(outcome[1])
        message = str(failures[-1])
        assert isinstance(failures[-1], OperationalError) and "no node can serve" in message
        assert "wsrep_ready=OFF" in message and "\n" not in message
        kept = len(ownership._adopted) - before
        assert kept == 0, f"{kept} closed connections still referenced by ownership._adopted after 30 failed checkouts"
    finally:
        on_galera(ports[0], "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'")
        wait_for(lambda: _galera_status(ports[0], "wsrep_ready") == "ON"
                 and _galera_status(ports[0], "wsrep_cluster_size") == str(len(ports)), timeout=60)
