"""Under ASGI (uvicorn, async views, the async ORM) the pool stays bounded and nothing leaks.

Each test serves tests/sites/asgi_site.py with uvicorn in a subprocess, on a
database of its own, and drives it with a small HTTP/1.1 client on asyncio
while a thread counts the server's connections to that database from an
admin connection outside every pool.
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.helpers import admin_connection
from tests.server import free_port

pytest.importorskip("uvicorn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POOL_SIZE, MAX_OVERFLOW = 5, 5  # tests/sites/asgi_site.py's MYSQLPOOL_ARGUMENTS
REQUESTS, CONCURRENCY = 2000, 64
REQUEST_TIMEOUT = 30.0  # seconds, one request (the pool's own timeout is 10)
LOAD_TIMEOUT = 150.0  # seconds, a whole load (about 10 s when healthy)


# -- the server -------------------------------------------------------------


@pytest.fixture
def asgi_database():
    name = os.environ["MYSQLPOOL_TEST_DATABASE"] + "_asgi"
    with admin_connection() as admin:
        cursor = admin.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}`")
    yield name
    with admin_connection() as admin:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


class Uvicorn:
    """uvicorn serving tests.sites.asgi_site in a subprocess; its output goes to a file."""

    def __init__(self, database):
        self.port = free_port()
        self.log = tempfile.TemporaryFile(mode="a+")  # O_APPEND: reading never moves uvicorn's writes
        environment = {**os.environ, "MYSQLPOOL_ASGI_DATABASE": database}
        environment.pop("DJANGO_SETTINGS_MODULE", None)
        environment["PYTHONPATH"] = os.pathsep.join([ROOT, environment.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.sites.asgi_site:application",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--lifespan", "off", "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=environment, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_until_listening(self, timeout=60.0):
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"uvicorn exited with {self.process.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"uvicorn not listening after {timeout} s:\n{self.output()}")

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


@pytest.fixture
def server(asgi_database):
    uvicorn = Uvicorn(asgi_database)
    try:
        uvicorn.wait_until_listening()
        uvicorn.database = asgi_database
        yield uvicorn
        assert uvicorn.process.poll() is None, f"uvicorn died:\n{uvicorn.output()}"
        output = uvicorn.output()
        assert "Traceback" not in output, output
        assert "ERROR" not in output, output
    finally:
        uvicorn.stop()


# -- the client -------------------------------------------------------------


class Response:
    def __init__(self, status, body):
        self.status = status
        self.body = body

    def json(self):
        return json.loads(self.body)


class Client:
    """One keep-alive HTTP/1.1 connection; every wait is bounded."""

    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None

    async def get(self, path, timeout=REQUEST_TIMEOUT):
        return await asyncio.wait_for(self._get(path), timeout)

    async def _get(self, path):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            self.writer.write(
                f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n".encode()
            )
            await self.writer.drain()
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                body = await self.reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                body = await self._chunked_body()
            else:
                raise AssertionError(f"response without a length: {head!r}")
            if headers.get("connection", "").lower() == "close":
                await self.close()
            return Response(status, body)
        except BaseException:
            await self.close()  # the stream is in an unknown state: never reuse it
            raise

    async def _chunked_body(self):
        # Django sets no Content-Length on an ASGI response; uvicorn chunks it.
        chunks = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers are sent
                return b"".join(chunks)
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self):
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (OSError, asyncio.TimeoutError):
                pass


async def _one(port, path):
    client = Client(port)
    try:
        return await client.get(path)
    finally:
        await client.close()


def get(port, path):
    return asyncio.run(_one(port, path))


async def _load(port, path, requests, concurrency):
    statuses, errors, bodies, latencies = {}, [], [], []
    remaining = iter(range(requests))

    async def worker():
        client = Client(port)
        try:
            for _ in remaining:
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                except Exception as error:
                    errors.append(repr(error))
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status == 200:
                    bodies.append(response.json())
                else:
                    errors.append(f"HTTP {response.status}: {response.body[:300]!r}")
        finally:
            await client.close()

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    done, pending = await asyncio.wait(workers, timeout=LOAD_TIMEOUT)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    assert not pending, f"load still running after {LOAD_TIMEOUT} s"
    for task in done:
        task.result()
    return statuses, errors, bodies, latencies


# -- the server's view of connections ----------------------------------------


def server_connection_count(cursor, database):
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
        [database],
    )
    return cursor.fetchone()[0]


class Sampler(threading.Thread):
    """Counts the server's connections to one database until stopped; keeps the peak."""

    def __init__(self, database, limit=POOL_SIZE + MAX_OVERFLOW):
        super().__init__(daemon=True, name="processlist-sampler")
        self.database = database
        self.limit = limit
        self.stop = threading.Event()
        self.peak = 0
        self.samples = 0
        self.over_limit = None  # the server's rows the first time the limit was passed
        self.error = None

    def run(self):
        try:
            with admin_connection() as admin:
                cursor = admin.cursor()
                while True:
                    count = server_connection_count(cursor, self.database)
                    self.peak = max(self.peak, count)
                    self.samples += 1
                    if count > self.limit and self.over_limit is None:
                        cursor.execute(
                            "SELECT ID, COMMAND, TIME, STATE FROM information_schema.PROCESSLIST "
                            "WHERE DB = %s AND ID <> CONNECTION_ID()",
                            [self.database],
                        )
                        self.over_limit = cursor.fetchall()
                    if self.stop.wait(0.002):
                        return
        except Exception as error:
            self.error = error

    def finish(self):
        self.stop.set()
        self.join(10)
        assert not self.is_alive(), "sampler thread still running"
        assert self.error is None, self.error


def run_load(server, path, requests=REQUESTS, concurrency=CONCURRENCY):
    """The load, with the server's connections sampled throughout."""
    sampler = Sampler(server.database)
    sampler.start()
    started = time.perf_counter()
    try:
        statuses, errors, bodies, latencies = asyncio.run(_load(server.port, path, requests, concurrency))
    finally:
        sampler.finish()
    elapsed = time.perf_counter() - started
    latencies.sort()
    report = {
        "path": "/" + path,
        "requests": requests,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(requests / elapsed),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
        "max_ms": round(1000 * latencies[-1], 1) if latencies else None,
        "peak_server_connections": sampler.peak,
        "samples": sampler.samples,
        "distinct_connection_ids": len({body["connection_id"] for body in bodies}),
        "rows_when_over_limit": sampler.over_limit,
    }
    print(f"\nASGI load: {json.dumps(report)}")
    return statuses, errors, bodies, report


def settled(probe, expected, timeout=10.0):
    """probe() once it equals expected, or its last value after timeout seconds.

    Django gives a request's connection back in response.close(), after the
    client has the response: the last few may still be on their way back.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value == expected or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


def pool_stats(server):
    response = get(server.port, "stats")
    assert response.status == 200, response.body
    stats = response.json()
    assert stats["pool"], stats
    return stats


def checked_out(server):
    return pool_stats(server)["checkedout"]


def server_connections_settled(server, expected):
    with admin_connection() as admin:
        return settled(lambda: server_connection_count(admin.cursor(), server.database), expected)


# -- the tests ---------------------------------------------------------------


def test_two_thousand_async_orm_requests_at_64_concurrent_stay_within_the_pool(server):
    statuses, errors, bodies, report = run_load(server, "")

    assert errors == []
    assert statuses == {200: REQUESTS}
    assert all(body["name"] == "one" for body in bodies)
    assert 0 < report["peak_server_connections"] <= POOL_SIZE + MAX_OVERFLOW, report
    assert report["samples"] > 10, report  # the sampler really watched the load
    assert settled(lambda: checked_out(server), 0) == 0
    # What the burst opened stays open until idle_timeout, within the bound,
    # and every connection the server sees is one idle in the pool.
    idle = pool_stats(server)["checkedin"]
    assert 0 < idle <= POOL_SIZE + MAX_OVERFLOW
    assert server_connections_settled(server, idle) == idle


def test_auto_close_db_on_an_async_function_gives_back_before_the_response(server):
    statuses, errors, bodies, report = run_load(server, "decorated", requests=500)

    assert errors == []
    assert statuses == {200: 500}
    held = [body for body in bodies if body["held_after"]]
    assert held == [], f"{len(held)} requests still held a connection after the decorated call"
    assert 0 < report["peak_server_connections"] <= POOL_SIZE + MAX_OVERFLOW, report
    assert settled(lambda: checked_out(server), 0) == 0

    # Without the decorator the request's thread still holds its connection
    # at that point (Django gives it back only at request_finished).
    response = get(server.port, "undecorated")
    assert response.status == 200, response.body
    assert response.json()["held_after"] is True


def test_a_connection_left_checked_out_is_seen(server):
    """The canary: the checks above do see a connection nobody gave back.

    sync_to_async(thread_sensitive=False) runs on the event loop's executor,
    whose threads outlive the request: Django's request_finished closes the
    request's own thread's connections, not that one's.
    """
    response = get(server.port, "leak")
    assert response.status == 200, response.body
    leaked = response.json()["connection_id"]
    time.sleep(0.5)  # what was going back has gone back
    assert checked_out(server) == 1
    with admin_connection() as admin:
        cursor = admin.cursor()
        cursor.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            [server.database],
        )
        assert [row[0] for row in cursor.fetchall()] == [leaked]

    # The same work with @auto_close_db on the function gives it back (it
    # runs on the same executor thread, so it also closes what /leak left).
    for _ in range(20):
        response = get(server.port, "leak-closed")
        assert response.status == 200, response.body
    assert settled(lambda: checked_out(server), 0) == 0
