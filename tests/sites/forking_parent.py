"""A parent process that forks while it holds pooled connections (run by test_forks.py).

    python tests/sites/forking_parent.py MODE CHILDREN DATABASE

MODE is "fork" (os.fork, children end with a normal interpreter exit, which
garbage-collects everything they inherited) or "multiprocessing" (the fork
start method). While the children run, the parent holds checked-out
connections in four threads and idle ones in its pool, and after each child
it queries every one of them. Prints one JSON line: errors on each side and
the connection ids each side used.
"""

import gc
import json
import multiprocessing
import os
import sys
import threading

import django
from django.conf import settings

from tests.helpers import connection_id
from tests.server import ServerAddress

HOLDERS = 3


def configure(database):
    settings.configure(
        DATABASES={"default": ServerAddress.from_environment().django_database(database)},
        MYSQLPOOL_ARGUMENTS={"pool_size": 6, "max_overflow": 4, "timeout": 10},
        USE_TZ=True,
    )
    django.setup()


def child_work(report_fd):
    """What a child does: its own queries, a close, a full garbage collection."""
    from django.db import connection

    errors, ids = [], set()
    try:
        for _ in range(3):
            ids.add(connection_id())
        connection.close()
        ids.add(connection_id())
        connection.close()
    except Exception as error:
        errors.append(repr(error))
    gc.collect()
    os.write(report_fd, (json.dumps({"errors": errors, "ids": sorted(ids)}) + "\n").encode())


def _in_transaction(connection):
    # Asked of the server: PyMySQL's status flags miss a transaction that a
    # SELECT ... FOR UPDATE began (they come from OK packets only).
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@in_transaction")
        return cursor.fetchone()[0] == 1


class Holder(threading.Thread):
    """A parent thread that keeps a connection checked out and queries on request.

    With in_transaction, it holds an open transaction with a row lock the
    whole time: a child must not roll it back behind the parent's back.
    """

    def __init__(self, in_transaction=False):
        super().__init__(daemon=True)
        self.in_transaction = in_transaction
        self.requests = [threading.Event(), threading.Event()]
        self.answers = []
        self.ready = threading.Event()
        self.stop = False

    def run(self):
        from django.db import connection

        if self.in_transaction:
            connection.set_autocommit(False)
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM forked FOR UPDATE")
        self.answers.append(connection_id())
        self.ready.set()
        while True:
            ask, done = self.requests
            ask.wait(30)
            ask.clear()
            if self.stop:
                if self.in_transaction:
                    connection.rollback()
                    connection.set_autocommit(True)
                connection.close()
                done.set()
                return
            try:
                self.answers.append(connection_id())
                if self.in_transaction and not _in_transaction(connection):
                    self.answers.append("the parent's transaction was ended by someone else")
            except Exception as error:
                self.answers.append(repr(error))
            done.set()

    def query(self):
        ask, done = self.requests
        done.clear()
        ask.set()
        assert done.wait(30), "holder thread stuck"
        return self.answers[-1]


def main():
    mode, children, database = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    configure(database)
    from django.db import connection, connections

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS forked (id INT PRIMARY KEY) ENGINE=InnoDB")
        cursor.execute("INSERT IGNORE INTO forked VALUES (1)")
    connection.close()
    holders = [Holder(in_transaction=(n == 0)) for n in range(HOLDERS)]
    for holder in holders:
        holder.start()
        assert holder.ready.wait(30)
    # Two idle connections in the pool, and one checked out by this thread.
    idle_ids = set()
    for _ in range(2):
        extra = connections.create_connection("default")
        extra.ensure_connection()
        idle_ids.add(extra.connection.thread_id())
        extra.close()
    main_id = connection_id()
    parent_ids = {main_id, *idle_ids, *(holder.answers[0] for holder in holders)}

    read_end, write_end = os.pipe()
    parent_errors = []
    context = multiprocessing.get_context("fork")
    for _ in range(children):
        if mode == "fork":
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                child_work(write_end)
                sys.exit(0)  # a normal exit: module teardown collects what was inherited
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                parent_errors.append(f"child exit status {status}")
        else:
            process = context.Process(target=child_work, args=(write_end,))
            process.start()
            process.join(60)
            if process.exitcode != 0:
                parent_errors.append(f"child exit code {process.exitcode}")
        # The parent's connections, held and idle, must all still work.
        try:
            if connection_id() != main_id:
                parent_errors.append("main thread lost its connection")
            for holder in holders:
                answer = holder.query()
                if answer != holder.answers[0]:
                    parent_errors.append(f"holder saw {answer}")
        except Exception as error:
            parent_errors.append(repr(error))
    os.close(write_end)
    with os.fdopen(read_end) as reports:
        child_reports = [json.loads(line) for line in reports]

    # Idle pooled connections too: check out enough to use every pooled one.
    extras = []
    try:
        for _ in range(2):
            extra = connections.create_connection("default")
            with extra.cursor() as cursor:
                cursor.execute("SELECT 1")
            extras.append(extra)
    except Exception as error:
        parent_errors.append(f"idle connection: {error!r}")
    for extra in extras:
        extra.close()
    for holder in holders:
        holder.stop = True
        holder.query()
        holder.join(10)
    connection.close()
    print(json.dumps({
        "parent_errors": parent_errors,
        "parent_ids": sorted(parent_ids),
        "children": len(child_reports),
        "child_errors": [e for report in child_reports for e in report["errors"]],
        "child_ids": [i for report in child_reports for i in report["ids"]],
    }))


if __name__ == "__main__":
    main()
