"""The engine on PyMySQL (pymysql.install_as_MySQLdb()), run by test_lifecycle_liveness.py.

    python tests/sites/pymysql_app.py DATABASE

Prints one JSON line: how many connection ids 20 cycles used, what happens
after the server kills the pooled connection, and whether a user variable
survives a give-back, and whether a row lock taken inside atomic() outlives
a close there.
"""

import json
import os
import sys
import time

import pymysql

pymysql.install_as_MySQLdb()

import django  # noqa: E402
from django.conf import settings  # noqa: E402

from tests.helpers import connection_id  # noqa: E402
from tests.server import ServerAddress  # noqa: E402


def _admin():
    return pymysql.connect(host=os.environ["MYSQL_HOST"], port=int(os.environ["MYSQL_PORT"]),
                           user=os.environ["MYSQL_USER"], password=os.environ["MYSQL_PASSWORD"],
                           database=sys.argv[1], autocommit=True)


def _lock_left_by_a_close_inside_atomic(connection):
    """None, or the error another session meets on a row locked before a close inside atomic().

    PyMySQL reads the server's status flags from OK packets only: after a
    SELECT ... FOR UPDATE it still says "no transaction".
    """
    from django.db import transaction

    admin = _admin()
    try:
        admin.cursor().execute("CREATE TABLE IF NOT EXISTS pymysql_lock (id INT PRIMARY KEY) ENGINE=InnoDB")
        admin.cursor().execute("REPLACE INTO pymysql_lock VALUES (1)")
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT id FROM pymysql_lock WHERE id = 1 FOR UPDATE")
                    cursor.fetchall()
                connection.close()
        except Exception:  # leaving atomic() after a close raises: expected here
            pass
        cursor = admin.cursor()
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
        try:
            cursor.execute("UPDATE pymysql_lock SET id = 1 WHERE id = 1")
        except pymysql.MySQLError as error:
            return repr(error)
        return None
    finally:
        connection.close()
        admin.close()


def main():
    settings.configure(
        DATABASES={"default": ServerAddress.from_environment().django_database(sys.argv[1])},
        MYSQLPOOL_ARGUMENTS={"pool_size": 1, "max_overflow": 0, "timeout": 5},
        USE_TZ=True,
    )
    django.setup()
    from django.db import connection

    errors, ids = [], set()
    report = {"driver": connection.Database.__name__}
    try:
        for _ in range(20):
            ids.add(connection_id())
            connection.close()
        report["reused_ids"] = len(ids)
        report["first"] = first = ids.pop()
        admin = pymysql.connect(host=os.environ["MYSQL_HOST"], port=int(os.environ["MYSQL_PORT"]),
                                user=os.environ["MYSQL_USER"], password=os.environ["MYSQL_PASSWORD"])
        admin.cursor().execute(f"KILL {first}")
        admin.close()
        time.sleep(0.2)
        report["after_kill"] = connection_id()
        with connection.cursor() as cursor:
            cursor.execute("SET @left_behind = 1")
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute("SELECT @left_behind")
            report["after_dirty"] = {"user_variable": cursor.fetchone()[0]}
        connection.close()
        report["lock_left_by_atomic"] = _lock_left_by_a_close_inside_atomic(connection)
    except Exception as error:
        errors.append(repr(error))
    report["errors"] = errors
    print(json.dumps(report))


if __name__ == "__main__":
    main()
