"""What a driver connection tells without a round trip: its server-status flags, read in place."""

import pytest

from django_mysqlpool import drivers
from tests.helpers import address, reads_server_flags


@pytest.fixture
def raw():
    connection = address().connect()
    yield connection
    connection.close()


def _asked(control):
    control.read_status()  # Connector/C's own answer
    return control.status.value


@reads_server_flags
def test_the_flags_read_in_place_are_those_connector_c_reports_in_every_state(raw):
    control = drivers.SessionControl(raw)
    assert control.live_status is not None, "the server_status field was not found"
    cursor = raw.cursor()
    seen = []

    def agree():
        seen.append(control.live_status.value)
        assert control.live_status.value == _asked(control)

    agree()
    raw.autocommit(True)
    agree()
    cursor.execute("START TRANSACTION")
    agree()
    assert control.in_transaction(raw) is True
    raw.rollback()
    agree()
    assert control.in_transaction(raw) is False
    raw.autocommit(False)
    cursor.execute("SELECT 1")
    cursor.fetchall()
    agree()
    assert len(set(seen)) >= 3  # the states differed: a stale or wrong field would show


@reads_server_flags
def test_a_connection_whose_fields_do_not_match_is_asked_through_connector_c(raw, monkeypatch):
    drivers.SessionControl(raw)  # the place is found
    monkeypatch.setattr(drivers, "_fields_offset", drivers._fields_offset + 8)  # a layout that moved
    control = drivers.SessionControl(raw)
    assert control.live_status is None
    raw.cursor().execute("START TRANSACTION")
    assert control.in_transaction(raw) is True
    raw.rollback()
    assert control.in_transaction(raw) is False
