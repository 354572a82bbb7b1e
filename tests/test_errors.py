"""The package's exceptions: what they are, and that they travel like the driver's own."""

import pickle

import MySQLdb
from django.db.utils import OperationalError

from django_mysqlpool.errors import ConnectionGivenBack, PoolTimeout, given_back


def test_the_error_for_a_use_after_give_back_is_the_drivers_and_survives_pickling():
    # Celery's result backend and multiprocessing pickle exceptions.
    error = pickle.loads(pickle.dumps(given_back(MySQLdb.InterfaceError, "given back")))
    assert isinstance(error, ConnectionGivenBack) and isinstance(error, MySQLdb.InterfaceError)
    assert error.args == (0, "given back")
    assert type(error) is type(given_back(MySQLdb.InterfaceError, "again"))  # one class per driver


def test_a_pool_timeout_is_djangos_operational_error():
    assert issubclass(PoolTimeout, OperationalError)
