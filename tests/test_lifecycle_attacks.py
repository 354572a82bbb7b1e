"""Ways past a give-back that an attacker's review found, each asserted as the next user observes it.

On a pool of one, so that the next checkout gets the same physical
connection (checked with CONNECTION_ID() where it matters).
"""

import signal
import threading

import pytest
from django.db import close_old_connections, connections
from django.test import override_settings

from django_mysqlpool.errors import ConnectionGivenBack
from tests.helpers import ON_PYMYSQL, connection_id, resets_in_place

SINGLE = {"pool_size": 1, "max_overflow": 0, "timeout": 5}


def _run(*statements, alias="default"):
    with connections[alias].cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
            rows = cursor.fetchall()
    return rows


def _stock(*statements):
    try:
        return _run(*statements, alias="stock")
    finally:
        connections["stock"].close()


@pytest.fixture
def role():
    user, host = _stock("SELECT CURRENT_USER()")[0][0].rsplit("@", 1)
    _stock("CREATE ROLE IF NOT EXISTS mysqlpool_role", f"GRANT mysqlpool_role TO '{user}'@'{host}'")
    _stock("DROP PROCEDURE IF EXISTS set_role_inside",
           "CREATE PROCEDURE set_role_inside() SET ROLE mysqlpool_role")
    yield "mysqlpool_role"
    _stock("DROP PROCEDURE IF EXISTS set_role_inside", "DROP ROLE IF EXISTS mysqlpool_role")


@resets_in_place
@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
@pytest.mark.parametrize("set_role", [
    "SET /**/ ROLE mysqlpool_role",
    "SET -- a comment\n ROLE mysqlpool_role",
    "EXECUTE IMMEDIATE CONCAT('SET R', 'OLE mysqlpool_role')",
    "CALL set_role_inside()",
])
def test_a_role_set_in_any_way_is_gone_for_the_next_user(role, set_role):
    first = connection_id()
    assert _run(set_role, "SELECT CURRENT_ROLE()") == ((role,),)
    connections["default"].close()
    assert connection_id() == first
    assert _run("SELECT CURRENT_ROLE()") == ((None,),)
    connections["default"].close()


@pytest.fixture
def failing_trigger():
    _stock("DROP TABLE IF EXISTS attacked",
           "CREATE TABLE attacked (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
           "CREATE TRIGGER attacked_sets BEFORE INSERT ON attacked FOR EACH ROW "
           "BEGIN SET @from_trigger = NEW.v; SET SESSION wait_timeout = 77; END",
           "INSERT INTO attacked VALUES (1, 0)")
    yield
    _stock("DROP TABLE IF EXISTS attacked")


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_trigger_that_changes_the_session_before_its_statement_fails_is_undone(failing_trigger):
    from django.db import IntegrityError

    baseline = _run("SELECT @from_trigger, @@SESSION.wait_timeout")
    connections["default"].close()
    with pytest.raises(IntegrityError):
        _run("INSERT INTO attacked VALUES (1, 5)")  # duplicate key, after the trigger ran
    connections["default"].close()
    assert _run("SELECT @from_trigger, @@SESSION.wait_timeout") == baseline
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_the_profiling_history_never_reaches_the_next_user():
    _run("SET profiling = 1", "SELECT 'pw=hunter2'", "SET profiling = 0")
    connections["default"].close()
    assert _run("SHOW PROFILES") == ()
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_warnings_never_reach_the_next_users_show_warnings():
    assert _run("SELECT CAST('secret-token' AS INTEGER)") == ((0,),)  # a warning
    connections["default"].close()
    assert _run("SHOW WARNINGS") == ()
    close_old_connections()
    _run("SELECT CAST('secret-token' AS INTEGER)")
    close_old_connections()  # the request's end: not parked with its warning
    assert _run("SHOW WARNINGS") == ()
    connections["default"].close()


@pytest.fixture
def two_results():
    _stock("DROP PROCEDURE IF EXISTS two_results",
           "CREATE PROCEDURE two_results() BEGIN SELECT 'first'; SELECT 'victim-secret'; END")
    yield
    _stock("DROP PROCEDURE IF EXISTS two_results")


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_cursor_kept_past_close_never_reads_or_discards_the_next_users_results(two_results):
    wrapper = connections["default"]
    kept = wrapper.cursor()
    kept.execute("SELECT 1")
    wrapper.close()
    victim = wrapper.cursor()
    victim.execute("CALL two_results()")
    assert victim.fetchall() == (("first",),)
    with pytest.raises(ConnectionGivenBack):
        kept.cursor.nextset()
    kept.close()  # must not throw the victim's pending results away
    assert victim.nextset()
    assert victim.fetchall() == (("victim-secret",),)
    victim.close()
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_method_kept_from_the_handle_refuses_once_given_back():
    wrapper = connections["default"]
    wrapper.ensure_connection()
    query, autocommit = wrapper.connection.query, wrapper.connection.autocommit
    wrapper.close()
    connection_id()  # the next user
    for kept, argument in ((query, "SET @left = 'prev user'"), (autocommit, False)):
        with pytest.raises(ConnectionGivenBack):
            kept(argument)
    assert _run("SELECT @left, @@autocommit") == ((None, 1),)
    wrapper.close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_handle_kept_past_the_request_end_is_refused_in_another_thread():
    from django.db import DatabaseError

    connection_id()
    handle = connections["default"].connection
    close_old_connections()  # detached: the handle stays with this thread's wrapper
    errors = []

    def elsewhere():
        try:
            handle.cursor().execute("SET @x = 'from another thread'")
        except Exception as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=elsewhere, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DatabaseError)
    assert _run("SELECT @x") == ((None,),)
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
@pytest.mark.parametrize("end", ["close", "request end"])
def test_a_statement_interrupted_before_its_reply_never_leaves_the_next_user_out_of_step(end):
    class Interrupted(BaseException):
        pass

    def interrupt(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Interrupted):
            _run("SELECT SLEEP(0.3)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if end == "close":
        connections["default"].close()
    else:
        close_old_connections()
    assert _run("SELECT 424242") == ((424242,),)
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_handle_kept_and_used_in_another_thread_never_reaches_the_owners_next_request():
    from django_mysqlpool.errors import WrongThread

    connection_id()
    kept = connections["default"].connection
    close_old_connections()
    _run("SET @victim_token = 'req2-secret'")  # the owner's next request, same connection
    seen = []

    def elsewhere():
        try:
            with kept.cursor() as cursor:
                cursor.execute("SELECT @victim_token")
                seen.append(cursor.fetchone())
        except Exception as error:  # reported below
            seen.append(error)

    thread = threading.Thread(target=elsewhere, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert len(seen) == 1 and isinstance(seen[0], WrongThread), seen
    connections["default"].close()


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_warnings_left_behind_by_a_later_tableless_statement_still_never_reach_the_next_user():
    from django.db import transaction

    _stock("DROP TABLE IF EXISTS warned", "CREATE TABLE warned (id INT PRIMARY KEY, v DECIMAL(10,2))",
           "INSERT INTO warned VALUES (1, 1.5)")
    try:
        with transaction.atomic():
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT id FROM warned WHERE v = %s", ["card-4111111111111111"])
                cursor.execute("SHOW COUNT(*) WARNINGS")
                assert cursor.fetchone() == (1,)  # the statement above left one
                cursor.execute("SELECT 1")  # touches no table: the warning stays
        close_old_connections()
        assert _run("SHOW WARNINGS") == ()
    finally:
        connections["default"].close()
        _stock("DROP TABLE IF EXISTS warned")


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_manual_transaction_whose_connection_was_lost_fails_instead_of_autocommitting(monkeypatch):
    import time

    from django.db import DatabaseError, transaction

    from tests.helpers import admin_connection

    _stock("DROP TABLE IF EXISTS manual", "CREATE TABLE manual (id INT PRIMARY KEY) ENGINE=InnoDB")
    try:
        with override_settings(MYSQLPOOL_ARGUMENTS={**SINGLE, "ping_after_idle": 0.1}):
            killed = connection_id()
            transaction.set_autocommit(False)
            try:
                with admin_connection() as admin:
                    admin.cursor().execute(f"KILL {killed}")
                time.sleep(0.3)
                with pytest.raises(DatabaseError):
                    _run("INSERT INTO manual VALUES (1)")
            finally:
                connections["default"].close()  # the lost one: discarded
                transaction.set_autocommit(True)
                connections["default"].close()
        assert _stock("SELECT COUNT(*) FROM manual") == ((0,),)
    finally:
        _stock("DROP TABLE IF EXISTS manual")


@pytest.mark.skipif(ON_PYMYSQL, reason="PyMySQL ignores init-command in an option file")
def test_an_option_files_settings_survive_a_dirty_session(tmp_path):
    option_file = tmp_path / "my.cnf"
    option_file.write_text("[client]\ninit-command=SET SESSION time_zone='+03:00'\n")
    wrapper = connections["default"]
    wrapper.close()
    wrapper.settings_dict["OPTIONS"] = {"read_default_file": str(option_file)}
    try:
        with override_settings(MYSQLPOOL_ARGUMENTS=SINGLE):
            assert _run("SELECT @@SESSION.time_zone") == (("+03:00",),)
            _run("SET @dirty = 1")
            wrapper.close()  # closed, not reset: a reset would not know the file's init-command
            assert _run("SELECT @@SESSION.time_zone, @dirty") == (("+03:00", None),)
    finally:
        wrapper.close()
        wrapper.settings_dict["OPTIONS"] = {}


@override_settings(MYSQLPOOL_ARGUMENTS=SINGLE)
def test_a_connect_from_another_thread_is_refused_and_leaves_the_owner_working():
    from django.db import DatabaseError

    connection_id()
    connections["default"].close()  # Django's server facts cached: its setup needs no cursor now
    errors = []
    wrapper = connections["default"]  # the main thread's

    def on_the_owners_wrapper():
        try:
            wrapper.ensure_connection()
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connections["default"].close()

    thread = threading.Thread(target=on_the_owners_wrapper, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DatabaseError), errors
    assert connection_id() == connection_id()  # the owner works, on its one connection
    connections["default"].close()
