"""The private test server lives exactly as long as its owner says.

CI once lost a worker's server in the middle of the suite: the exit of some
other Python process killed it. mirakuru, which used to run the server,
kills at every interpreter exit each process whose environment marker
*contains* the exiting process's pid, and its markers hold a random uuid, so
any exiting pid that happens to appear in one took that server down.
"""

import os
import subprocess
import sys

import pytest

from tests.server import PrivateServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def server():
    with PrivateServer() as started:
        yield started


def _answers(server) -> bool:
    connection = server.address.connect(connect_timeout=5)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)
    finally:
        connection.close()


def test_the_server_carries_no_marker_another_process_could_match(server):
    with open(f"/proc/{server.pid}/environ", "rb") as environ:
        names = {entry.split(b"=", 1)[0] for entry in environ.read().split(b"\0") if entry}
    assert b"mirakuru_uuid" not in names


_FORK_AND_EXIT = """
import os, sys, time
from tests.server import PrivateServer
with PrivateServer() as server:
    child = os.fork()
    if child == 0:
        sys.exit(0)  # a normal interpreter exit: atexit handlers run
    _, status = os.waitpid(child, 0)
    time.sleep(0.5)
    print("child", os.waitstatus_to_exitcode(status), "server running", server.running(), flush=True)
    connection = server.address.connect(connect_timeout=5)
    connection.close()
    print("server answers", flush=True)
"""


def test_a_forked_child_exiting_normally_leaves_the_parents_server_running():
    # In a process of its own: a forked pytest worker must not run its exit handlers.
    result = subprocess.run(
        [sys.executable, "-c", _FORK_AND_EXIT], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={key: value for key, value in os.environ.items() if not key.startswith("MYSQL_")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "child 0 server running True" in result.stdout
    assert "server answers" in result.stdout


def test_stop_and_start_again_serve_on_the_same_port(server):
    port = server.port
    server.stop()
    assert not server.running()
    server.start()
    assert server.port == port
    assert _answers(server)
