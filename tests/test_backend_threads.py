"""A wrapper new in its thread (under ASGI, every request's) finds its alias's pool without the registry.

The connection parameters, their pool and the isolation level Django's
get_connection_params() sets are shared by the wrappers of an alias in
every thread while the settings they come from are unchanged; a change
in place, or override_settings, makes the next wrapper build them again.
"""

import pytest
from django.db import connections

from django_mysqlpool import registry
from tests.helpers import in_another_thread


def _isolation():
    wrapper = connections["default"]
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT @@SESSION.tx_isolation")
        (level,) = cursor.fetchone()
    return wrapper.isolation_level, level, id(wrapper.pool)


@pytest.fixture
def lookups(monkeypatch):
    calls = []
    real = registry.pool_for_connection

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "pool_for_connection", counted)
    return calls


def test_a_new_threads_wrapper_finds_the_pool_and_isolation_level_without_the_registry(lookups):
    here = _isolation()
    assert here[:2] == ("read committed", "READ-COMMITTED")
    looked_up = len(lookups)
    assert in_another_thread(_isolation) == here  # the same pool, the same session setup
    assert in_another_thread(_isolation) == here
    assert len(lookups) == looked_up  # no registry lookup in either new thread
    connections["default"].close()


def test_options_changed_in_place_reach_a_new_threads_wrapper(lookups):
    wrapper = connections["default"]
    before = _isolation()
    wrapper.close()
    options = wrapper.settings_dict["OPTIONS"]
    wrapper.settings_dict["OPTIONS"] = {**options, "isolation_level": "serializable"}
    try:
        level, session, pool = in_another_thread(_isolation)
        assert (level, session) == ("serializable", "SERIALIZABLE")
        assert pool == before[2]  # (the isolation level is the session's setup, not the pool's key)
        assert lookups  # built again, and looked up
        assert _isolation()[:2] == ("serializable", "SERIALIZABLE")
    finally:
        wrapper.close()
        wrapper.settings_dict["OPTIONS"] = options
    assert in_another_thread(_isolation)[:2] == ("read committed", "READ-COMMITTED")
    connections["default"].close()
