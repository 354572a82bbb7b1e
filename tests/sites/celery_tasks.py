"""A Celery app for a real prefork worker on the engine (run by test_celery.py).

    celery -A tests.sites.celery_tasks worker --pool prefork --concurrency 2
    python -c "from tests.sites.celery_tasks import send; send(300)"

Django settings: tests.sites.celery_site. The broker is kombu's filesystem://
transport in MYSQLPOOL_CELERY_DIR, so the worker and the sender need no
server but the database. Results are rows: each task inserts
(task, pid, CONNECTION_ID()) into celery_run, which the test creates.
Nothing here closes a connection for Celery: its Django fix-up does that
around every task, as in any project.

The worker's main process uses the pool before it forks its children and
for its whole life: at worker_init its main thread checks out a connection
and keeps it (the children inherit that thread's Django wrapper), a thread
keeps another one and queries it every 20 ms, and a third sits idle in the
pool. At worker_shutdown, after the children have exited, it queries all
three again and writes what it saw to MYSQLPOOL_CELERY_DIR/parent.json.
"""

import json
import os
import threading
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.sites.celery_site")

from celery import Celery, signals  # noqa: E402

DIRECTORY = os.environ["MYSQLPOOL_CELERY_DIR"]
BROKER = os.path.join(DIRECTORY, "broker")
OUTBOX = os.path.join(DIRECTORY, "outbox")
PROCESSED = os.path.join(DIRECTORY, "processed")
CONTROL = os.path.join(DIRECTORY, "control")
for _folder in (BROKER, OUTBOX, PROCESSED, CONTROL):
    os.makedirs(_folder, exist_ok=True)

app = Celery("mysqlpool_celery")  # installs Celery's Django fix-up (DJANGO_SETTINGS_MODULE)
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={
        "data_folder_in": BROKER,
        "data_folder_out": BROKER,
        "control_folder": CONTROL,
        "store_processed": True,
        "processed_folder": PROCESSED,
        "polling_interval": 0.05,
    },
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
)


def _connection_id(wrapper=None):
    from django.db import connection

    with (wrapper or connection).cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return cursor.fetchone()[0]


@app.task(name="mysqlpool.record")
def record(number):
    """Runs in a child: one query and one insert on django.db.connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        (connection_id,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO celery_run (task, pid, connection_id) VALUES (%s, %s, %s)",
            [number, os.getpid(), connection_id],
        )
    return [os.getpid(), connection_id]


def send(count):
    """Enqueue count tasks (from a process of its own).

    kombu's filesystem transport creates a message file, then writes it; a
    worker polling the folder can take the file while it is still empty
    (a JSONDecodeError in the worker). So messages are written to an outbox
    first and then renamed into the worker's folder, which is atomic.
    """
    app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                         "data_folder_out": OUTBOX}
    with app.producer_or_acquire() as producer:
        for number in range(count):
            app.send_task("mysqlpool.record", args=[number], producer=producer)
    for name in sorted(os.listdir(OUTBOX)):  # names start with a timestamp: FIFO
        os.rename(os.path.join(OUTBOX, name), os.path.join(BROKER, name))


# -- the worker's main process ------------------------------------------------


class _Traffic(threading.Thread):
    """A thread of the main process that keeps a connection and queries it all along."""

    def __init__(self):
        super().__init__(name="parent-traffic", daemon=True)
        self.queries = 0
        self.errors = []
        self.ids = set()
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self):
        from django.db import connection

        while not self.stop.is_set():
            try:
                self.ids.add(_connection_id())  # never closed: stays checked out
                self.queries += 1
            except Exception as error:
                self.errors.append(repr(error))
            self.ready.set()
            time.sleep(0.02)
        connection.close()


_parent = {}


def _idle_connection_id():
    """Check out one more connection (the pool's idle one), note its id, give it back."""
    from django.db import connections

    extra = connections.create_connection("default")
    try:
        return _connection_id(extra)
    finally:
        extra.close()


@signals.worker_init.connect
def _parent_opens_connections(sender=None, **kwargs):
    # Connected at import, so it runs after the fix-up's own worker_init
    # handler (which closes the main process's connections).
    from django.db import connections

    _parent["pid"] = os.getpid()
    _parent["thread"] = threading.current_thread().name
    _parent["wrapper"] = connections["default"]
    _parent["main_id"] = _connection_id()  # kept checked out across every fork
    traffic = _parent["traffic"] = _Traffic()
    traffic.start()
    traffic.ready.wait(10)
    _parent["idle_id"] = _idle_connection_id()  # the third: left idle in the pool
    with open(os.path.join(DIRECTORY, "parent_started.json"), "w") as report:
        json.dump({key: _parent[key] for key in ("pid", "main_id", "idle_id")}
                  | {"traffic_ids": sorted(traffic.ids)}, report)


@signals.worker_process_init.connect
def _child_starts(**kwargs):
    # Runs in each child before the fix-up's handler: did the child's copy
    # of the forking thread's wrapper still hold the parent's connection?
    from django.db import connections

    inherited = connections["default"].connection is not None
    line = json.dumps({"pid": os.getpid(), "inherited_connection": inherited}) + "\n"
    descriptor = os.open(os.path.join(DIRECTORY, "children.jsonl"),
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


@signals.worker_shutdown.connect
def _parent_checks_connections(sender=None, **kwargs):
    # Sent after the pool's children have exited.
    if "main_id" not in _parent:
        return
    errors = []
    wrapper = _parent["wrapper"]
    main_id_after = idle_id_after = None
    try:
        if threading.current_thread().name != _parent["thread"]:
            wrapper.inc_thread_sharing()
        main_id_after = _connection_id(wrapper)
    except Exception as error:
        errors.append(f"main thread's connection: {error!r}")
    try:
        # While the traffic thread still holds its own: the pool's only idle
        # connection is the one left there at worker_init, unless it was
        # found dead and replaced (a new id).
        idle_id_after = _idle_connection_id()
    except Exception as error:
        errors.append(f"idle connection: {error!r}")
    traffic = _parent["traffic"]
    traffic.stop.set()
    traffic.join(10)
    if traffic.is_alive():
        errors.append("traffic thread stuck")
    report = {
        "pid": _parent["pid"],
        "main_id": _parent["main_id"],
        "main_id_after": main_id_after,
        "idle_id": _parent["idle_id"],
        "idle_id_after": idle_id_after,
        "traffic_queries": traffic.queries,
        "traffic_errors": traffic.errors,
        "traffic_ids": sorted(traffic.ids),
        "errors": errors,
        "shutdown_thread": threading.current_thread().name,
    }
    with open(os.path.join(DIRECTORY, "parent.json"), "w") as output:
        json.dump(report, output)
