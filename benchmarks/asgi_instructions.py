"""Instructions per ASGI request, counted by valgrind: what each engine costs under ASGI, noise aside.

    python -m tests.server -- .venv/bin/python benchmarks/asgi_instructions.py [ENGINE ...]

benchmarks/asgi_load.py measures throughput, which on a shared 2-core
machine moves by a factor of two between runs. Here Django's ASGI handler
serves requests in this process, one after another, on benchmarks/benchsite
(ENGINE: stock, pool or peer; default all three) under
``valgrind --tool=callgrind``, SHORT and LONG of them; the difference
divided by LONG - SHORT is one request's instructions, in every thread
(each request's synchronous work runs in a thread of its own), with start-up
cancelled out. Views: ``async`` (``await Item.objects.aget(pk=1)``), ``sync``
(the one-row get()) and ``floor`` (an async view that touches no database:
what the request itself costs). Needs valgrind; takes a few minutes.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import instructions  # noqa: E402

SHORT, LONG = 50, 250
VIEWS = {"async": "/async", "sync": "/", "floor": "/floor"}

_RUN_REQUESTS = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.benchsite.settings"
from django.core.asgi import get_asgi_application
application = get_asgi_application()
path = sys.argv[1]


async def request():
    scope = {{"type": "http", "asgi": {{"version": "3.0"}}, "http_version": "1.1", "method": "GET",
              "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
              "root_path": "", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 1),
              "server": ("127.0.0.1", 80)}}
    body_sent, disconnected, statuses = False, asyncio.Event(), []

    async def receive():
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {{"type": "http.request", "body": b"", "more_body": False}}
        await disconnected.wait()  # the client stays: Django cancels this wait at the end

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await application(scope, receive, send)
    assert statuses == [200], statuses


async def requests(count):
    for _ in range(count):
        await request()


asyncio.run(requests(20))  # warm up: imports, the pool, Django's caches
import gc
gc.collect()
gc.disable()  # as instructions.py: no collection falls in one run and not the other
asyncio.run(requests(int(sys.argv[2])))
os._exit(0)
"""


def per_request(engine: str, view: str) -> int:
    def run(count: int) -> int:
        return instructions.instructions(engine, count, _RUN_REQUESTS, {"BENCH_ENGINE": engine}, VIEWS[view])

    with ThreadPoolExecutor(2) as runs:  # one per core
        short, long = runs.map(run, (SHORT, LONG))
    return (long - short) // (LONG - SHORT)


def main(engines: list[str]) -> int:
    if not os.environ.get("MYSQL_HOST"):
        print("MYSQL_HOST is not set: run me through python -m tests.server --", file=sys.stderr)
        return 2
    from benchmarks import http_load
    from benchmarks.bench import DATABASE, create_database_and_users
    from tests.server import ServerAddress

    address = ServerAddress.from_environment()
    create_database_and_users(address)
    http_load.prepare_table(address, DATABASE)
    counts = {(engine, view): per_request(engine, view) for engine in engines for view in VIEWS}
    print(f"{'engine':<8} {'view':<6} {'instructions per request':>25}  {'x stock':>7}  {'above floor':>11}")
    for (engine, view), count in counts.items():
        stock = counts.get(("stock", view))
        floor = counts.get((engine, "floor"))
        ratio = f"{count / stock:.3f}" if stock else "-"
        above = f"{count - floor:,}" if floor is not None and view != "floor" else "-"
        print(f"{engine:<8} {view:<6} {count:>25,}  {ratio:>7}  {above:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["stock", "pool", "peer"]))
