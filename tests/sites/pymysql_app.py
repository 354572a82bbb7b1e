"""The engine on PyMySQL (pymysql.install_as_MySQLdb()), run by test_lifecycle_liveness.py.

    python tests/sites/pymysql_app.py DATABASE

Prints one JSON line: how many connection ids 20 cycles used, what happens
after the server kills the pooled connection, and whether a user variable
survives a give-back.
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
    except Exception as error:
        errors.append(repr(error))
    report["errors"] = errors
    print(json.dumps(report))


if __name__ == "__main__":
    main()
