from django.db import connection
from django.test import TestCase, TransactionTestCase

from django_mysqlpool.handle import PooledConnection

from .models import Item


class PooledTestCase(TestCase):
    def test_runs_on_the_test_database_through_the_pool(self):
        Item.objects.create(name="a")
        self.assertEqual(Item.objects.count(), 1)
        self.assertTrue(connection.settings_dict["NAME"].startswith("test_"))
        self.assertIsInstance(connection.connection, PooledConnection)


class PooledTransactionTestCase(TransactionTestCase):
    def test_commits_are_visible_and_flushed_afterwards(self):
        Item.objects.create(name="b")
        connection.close()  # give back, check out again: the row was committed
        self.assertEqual(list(Item.objects.values_list("name", flat=True)), ["b"])

    def test_flush_left_an_empty_table(self):
        self.assertEqual(Item.objects.count(), 0)
