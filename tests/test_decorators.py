"""auto_close_db gives every alias's connection back and changes nothing else."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from django_mysqlpool import auto_close_db
from tests.helpers import connection_id


class Boom(Exception):
    pass


def test_returns_the_value_and_gives_back_every_alias():
    @auto_close_db
    def work(x):
        connection_id("default")
        connection_id("other_db")
        connection_id("stock")
        return x * 2

    assert work(21) == 42
    assert all(connections[alias].connection is None for alias in ("default", "other_db", "stock"))


def test_passes_the_exception_through_unchanged_and_still_gives_back():
    error = Boom("kept")

    @auto_close_db
    def work():
        connection_id()
        raise error

    with pytest.raises(Boom) as caught:
        work()
    assert caught.value is error
    assert connections["default"].connection is None


def test_keeps_the_function_name_and_docstring():
    @auto_close_db
    def documented():
        """Docstring."""

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Docstring."


def test_decorates_coroutine_functions():
    seen = {}

    def query():
        seen["id"] = connection_id()
        seen["wrapper"] = connections["default"]

    @auto_close_db
    async def handler():
        await sync_to_async(query)()
        return "done"

    assert asyncio.iscoroutinefunction(handler)
    assert asyncio.run(handler()) == "done"
    assert seen["wrapper"].connection is None
