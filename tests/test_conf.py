"""Settings: read when used, merged per alias, and every mistake named at first connection."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import override_settings
from sqlalchemy.pool import NullPool, QueuePool

from django_mysqlpool import conf
from tests.helpers import connection_id

BAD_BACKENDS = [
    ("Nope", ["'Nope'", "MYSQLPOOL_BACKEND", "QueuePool, NullPool"]),
    ("os.path.join", ["'os.path.join'", "not a subclass of sqlalchemy.pool.Pool"]),
    ("no_such_module.Pool", ["'no_such_module.Pool'", "cannot be imported"]),
    (42, ["42", "MYSQLPOOL_BACKEND"]),
]

BAD_ARGUMENTS = [
    ({"use_threadlocal": True}, ["'use_threadlocal'", "removed in SQLAlchemy 2.0", "delete it"]),
    ({"sa_pool_key": "x"}, ["'sa_pool_key'", "pool.manage()", "removed in SQLAlchemy 2.0"]),
    ({"poolclass": "QueuePool"}, ["'poolclass'", "MYSQLPOOL_BACKEND"]),
    ({"pool_timeout": 3}, ["'pool_timeout'", "'timeout'", "accepted:"]),
    ({"no_such_argument": 1}, ["'no_such_argument'", "QueuePool", "max_overflow"]),
    ({"pool_size": "ten"}, ["'pool_size'", "'ten'", "number"]),
    ({"max_overflow": True}, ["'max_overflow'", "True"]),
    ({"reset_on_return": None}, ["reset_on_return=None", "rolls back"]),
    ({"pool_size": -1}, ["'pool_size'", "0 or more"]),
    (["pool_size", 5], ["MYSQLPOOL_ARGUMENTS must be a dict", "['pool_size', 5]"]),
]


def _first_connection_error():
    with pytest.raises(ImproperlyConfigured) as caught:
        connection_id()
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("backend, expected", BAD_BACKENDS, ids=[str(b) for b, _ in BAD_BACKENDS])
def test_bad_backend_fails_at_first_connection_with_a_clear_sentence(backend, expected):
    with override_settings(MYSQLPOOL_BACKEND=backend):
        message = _first_connection_error()
    for fragment in expected:
        assert fragment in message
    assert connection_id() > 0  # fixed settings: nothing was lost


@pytest.mark.parametrize("arguments, expected", BAD_ARGUMENTS, ids=[str(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_fail_at_first_connection_with_a_clear_sentence(arguments, expected):
    with override_settings(MYSQLPOOL_ARGUMENTS=arguments):
        message = _first_connection_error()
    for fragment in expected:
        assert fragment in message
    assert connection_id() > 0


def test_bad_per_alias_pool_option_names_the_alias():
    wrapper = connections["default"]
    wrapper.settings_dict["OPTIONS"] = {"pool": {"use_threadlocal": False}}
    try:
        message = _first_connection_error()
    finally:
        wrapper.settings_dict["OPTIONS"] = {}
    assert "DATABASES['default']['OPTIONS']['pool']" in message
    assert "'use_threadlocal'" in message


@override_settings(MYSQLPOOL_ARGUMENTS={"pool_size": 3, "max_overflow": 1})
def test_per_alias_options_merge_over_the_global_arguments_and_never_reach_the_driver():
    wrapper = connections["default"]
    wrapper.settings_dict["OPTIONS"] = {"pool": {"pool_size": 7}}
    try:
        connection_id()  # MySQLdb would refuse an unknown 'pool' keyword
        pool = wrapper.pool.pool
    finally:
        wrapper.close()
        wrapper.settings_dict["OPTIONS"] = {}
    assert isinstance(pool, QueuePool)
    assert pool.size() == 7
    assert pool._max_overflow == 1


def test_settings_are_read_when_used():
    connection_id()
    assert isinstance(connections["default"].pool.pool, QueuePool)
    connections["default"].close()
    with override_settings(MYSQLPOOL_BACKEND="NullPool", MYSQLPOOL_ARGUMENTS={}):
        connection_id()
        assert isinstance(connections["default"].pool.pool, NullPool)


def test_dotted_path_to_a_pool_subclass_is_accepted():
    with override_settings(MYSQLPOOL_BACKEND="sqlalchemy.pool.QueuePool"):
        connection_id()
        assert isinstance(connections["default"].pool.pool, QueuePool)


def test_accepted_arguments_walk_up_to_pool():
    assert {"pool_size", "max_overflow", "timeout", "recycle", "pre_ping"} <= conf.accepted_arguments(QueuePool)
    assert "pool_size" not in conf.accepted_arguments(NullPool)
    assert "creator" not in conf.accepted_arguments(QueuePool)


@override_settings(MYSQLPOOL_ARGUMENTS={"pre_ping": True})
def test_pre_ping_works_on_a_bare_pool():
    first = connection_id()
    connections["default"].close()
    assert connection_id() == first
