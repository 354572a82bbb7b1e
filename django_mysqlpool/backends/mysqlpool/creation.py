"""Test database creation, with the pools that hold a test database closed first."""

from django.db.backends.mysql.creation import DatabaseCreation as MySQLDatabaseCreation

from django_mysqlpool import registry


class DatabaseCreation(MySQLDatabaseCreation):
    def _clone_test_db(self, suffix, verbosity, keepdb=False):
        # A pooled connection left inside a transaction could hold locks the
        # dump of the source database waits for.
        registry.dispose_pools(database=self.connection.settings_dict["NAME"])
        super()._clone_test_db(suffix, verbosity, keepdb)  # type: ignore[misc]  # not in django-stubs

    def _destroy_test_db(self, test_database_name, verbosity):
        # Idle pooled connections still have the test database selected and
        # may hold metadata locks that DROP DATABASE would wait for.
        registry.dispose_pools(database=test_database_name)
        super()._destroy_test_db(test_database_name, verbosity)  # type: ignore[misc]  # not in django-stubs
