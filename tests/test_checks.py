"""System checks: each configuration mistake is found at start-up, with an id, the alias and the fix."""

from django.core.checks import run_checks
from django.test import override_settings


def _ids(**kwargs):
    """The package's messages by id (of the 'default' alias, where several aliases have one)."""
    found = {}
    for message in run_checks(**kwargs):
        if message.id.startswith("mysqlpool.") and (message.id not in found or "'default'" in message.msg):
            found[message.id] = message
    return found


def test_the_test_settings_pass():
    assert _ids() == {}
    assert _ids(databases=["default"]) == {}


@override_settings(MYSQLPOOL_BACKEND="NoSuchPool")
def test_an_unknown_pool_class_is_e001():
    message = _ids()["mysqlpool.E001"]
    assert "MYSQLPOOL_BACKEND 'NoSuchPool'" in message.msg and "QueuePool" in message.msg


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_timeout": 5})
def test_a_wrong_argument_is_e002_naming_the_alias_and_the_right_name():
    message = _ids()["mysqlpool.E002"]
    assert "'default'" in message.msg and "'pool_timeout'" in message.msg and "'timeout'" in message.msg


@override_settings(MYSQLPOOL_ARGUMENTS={"max_lifetime": "long"})
def test_a_value_of_the_wrong_type_is_e002():
    assert "'max_lifetime' must be a number of seconds" in _ids()["mysqlpool.E002"].msg


def test_conn_max_age_none_is_w001():
    from django.conf import settings

    database = settings.DATABASES["default"]
    before = database["CONN_MAX_AGE"]
    database["CONN_MAX_AGE"] = None  # in place: override_settings(DATABASES=...) warns
    try:
        message = _ids()["mysqlpool.W001"]
    finally:
        database["CONN_MAX_AGE"] = before
    assert "DATABASES['default']['CONN_MAX_AGE'] is None" in message.msg and "0" in message.hint


@override_settings(MYSQLPOOL_ARGUMENTS={"max_lifetime": 10**9})
def test_a_lifetime_beyond_the_servers_wait_timeout_is_w002():
    message = _ids(databases=["default"])["mysqlpool.W002"]
    assert "'default'" in message.msg and "wait_timeout" in message.msg
    assert "mysqlpool.W002" not in _ids()  # it needs the server: only with databases


@override_settings(MYSQLPOOL_PROCESSES=100_000)
def test_a_bound_beyond_max_connections_is_w003():
    message = _ids(databases=["default"])["mysqlpool.W003"]
    assert "100000 process(es) x (pool_size + max_overflow = 15) = 1500000" in message.msg
    assert "max_connections" in message.msg
