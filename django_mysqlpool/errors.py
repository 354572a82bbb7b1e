"""The exceptions django_mysqlpool raises."""

from django.db.utils import OperationalError


class PoolTimeout(OperationalError):
    """No connection became free within the pool's timeout.

    A django.db.utils.OperationalError, so code that already catches
    Django's database errors keeps working.
    """
