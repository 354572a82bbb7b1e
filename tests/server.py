"""A private MariaDB server for tests, demos and benchmarks.

Used when no server address is given in MYSQL_HOST: it bootstraps a data
directory in a temporary folder, listens on a free loopback port and its own
unix socket, and lets root in over TCP with an empty password (Debian's
packaged server only lets root in through the unix socket).

    python -m tests.server -- COMMAND ...   runs COMMAND with MYSQL_* set
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

START_TIMEOUT = 60  # seconds: a cold first start on a busy 2-core machine
STOP_TIMEOUT = 60  # seconds for a clean shutdown before SIGKILL


@dataclass(frozen=True)
class ServerAddress:
    """Where a MySQL-compatible server listens and who to log in as."""

    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_environment(cls) -> "ServerAddress | None":
        """The server named by MYSQL_HOST and friends, or None if unset."""
        host = os.environ.get("MYSQL_HOST")
        if not host:
            return None
        return cls(
            host=host,
            port=int(os.environ.get("MYSQL_PORT") or 3306),
            user=os.environ.get("MYSQL_USER") or "root",
            password=os.environ.get("MYSQL_PASSWORD") or "",
        )

    def environment(self) -> dict[str, str]:
        return {
            "MYSQL_HOST": self.host,
            "MYSQL_PORT": str(self.port),
            "MYSQL_USER": self.user,
            "MYSQL_PASSWORD": self.password,
        }

    def django_database(
        self, name: str, engine: str = "django_mysqlpool.backends.mysqlpool", **extra
    ) -> dict:
        """A DATABASES entry for a database on this server."""
        return {
            "ENGINE": engine, "HOST": self.host, "PORT": str(self.port),
            "USER": self.user, "PASSWORD": self.password, "NAME": name, **extra,
        }

    def connect(self, **kwargs):
        """A plain driver connection, outside any pool (for admin queries)."""
        return _driver().connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            autocommit=True,
            **kwargs,
        )


def _driver():
    """MySQLdb (mysqlclient, or PyMySQL installed as MySQLdb), else PyMySQL itself.

    The server needs a client only for its own set-up and admin queries, and
    a PyMySQL-only environment must be able to start one.
    """
    try:
        import MySQLdb
    except ImportError:
        import pymysql

        return pymysql
    return MySQLdb


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError(
            f"{name} not found: install Debian's mariadb-server "
            "(scripts/setup.sh does) or set MYSQL_HOST to a running server"
        )
    return found


class PrivateServer:
    """A MariaDB server of our own: start(), stop(), kill(), start() again."""

    def __init__(self, bootstrap: bool = True, **server_options: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="mysqlpool-mariadb-")
        self.datadir = os.path.join(self.directory, "data")
        self.socket = os.path.join(self.directory, "mysqld.sock")
        self.port = free_port()
        self.server_options = server_options
        self.address = ServerAddress("127.0.0.1", self.port, "root", "")
        self._process: subprocess.Popen | None = None
        self._owner = os.getpid()
        if bootstrap:  # a Galera node that joins gets its data from a donor instead
            self._bootstrap()
        _servers.add(self)

    def _bootstrap(self) -> None:
        command = [
            _binary("mariadb-install-db"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            command.append("--user=root")
        # A temporary directory of its own: two bootstraps sharing /tmp collide
        # on the names of their temporary tables.
        command.append(f"--tmpdir={self.directory}")
        environment = {**os.environ, "TMPDIR": self.directory}
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=120, env=environment
        )
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{result.stdout}{result.stderr}")

    def _command(self) -> list[str]:
        options = {
            "datadir": self.datadir,
            "socket": self.socket,
            "port": str(self.port),
            "bind-address": "127.0.0.1",
            "pid-file": os.path.join(self.directory, "mysqld.pid"),
            "log-error": os.path.join(self.directory, "error.log"),
            "tmpdir": self.directory,
            "max-connections": "1000",
            "innodb-buffer-pool-size": "64M",
            "innodb-log-file-size": "16M",
            "innodb-flush-log-at-trx-commit": "0",
            "character-set-server": "utf8mb4",
            "collation-server": "utf8mb4_unicode_ci",
        }
        options.update(self.server_options)
        command = [_binary("mariadbd"), "--no-defaults", "--skip-name-resolve"]
        command += [f"--{name}={value}" for name, value in options.items()]
        if os.geteuid() == 0:
            command.append("--user=root")
        return command

    def start(self, *extra_arguments: str) -> "PrivateServer":
        # A plain child process, killed only through its pid. (mirakuru, used
        # before, kills at every interpreter exit each process whose marker
        # contains the exiting pid as a substring, and its markers hold random
        # digits: any Python process exiting could take this server down.)
        self._process = subprocess.Popen(
            self._command() + list(extra_arguments),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for the caller stays there
        )
        try:
            self._wait_until_listening()
        except BaseException:
            self.kill()
            raise
        self._grant_root_over_tcp()
        return self

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"MariaDB exited with {self._process.returncode} while starting:\n{self.error_log()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                # The unix socket too, which _grant_root_over_tcp() uses: the
                # server may listen on TCP a moment before it binds it, and a
                # restart after a crash finds the old socket file refusing.
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
                    unix.settimeout(1)
                    unix.connect(self.socket)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"MariaDB did not listen on port {self.port} and {self.socket} within "
                        f"{START_TIMEOUT} s:\n"
                        f"{self.error_log()}"
                    ) from None
                time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running() else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _grant_root_over_tcp(self) -> None:
        # --skip-name-resolve: a TCP login from 127.0.0.1 does not match
        # root@localhost, so give that address a root account of its own.
        admin = _driver().connect(unix_socket=self.socket, user="root", autocommit=True)
        try:
            cursor = admin.cursor()
            cursor.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
            cursor.execute("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        finally:
            admin.close()

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), forced after STOP_TIMEOUT."""
        if self.running():
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """Stop the server the hard way, as a crash or an OOM kill would."""
        if self.running():
            self._process.kill()
        if self._process is not None:
            self._process.wait(STOP_TIMEOUT)

    def error_log(self) -> str:
        try:
            with open(os.path.join(self.directory, "error.log")) as log:
                return log.read()[-4000:]
        except OSError:
            return "(no error log)"

    def destroy(self) -> None:
        # Only the process that made the server may end it: a forked child
        # inherits this object (and the exit hook below) but not the server.
        if os.getpid() != self._owner:
            return
        try:
            self.kill()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            _servers.discard(self)

    def __enter__(self) -> "PrivateServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.destroy()


_servers: "set[PrivateServer]" = set()  # until destroyed


@atexit.register
def _destroy_leftover_servers() -> None:
    """A caller that forgot destroy() (or crashed in a test) leaves no server behind."""
    for server in list(_servers):
        server.destroy()


def main(argv: list[str]) -> int:
    """Run a command against MYSQL_HOST, or against a private server started for it."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if ServerAddress.from_environment() is not None:
        return subprocess.call(argv)
    with PrivateServer() as server:
        environment = {**os.environ, **server.address.environment()}
        print(f"(private MariaDB on 127.0.0.1:{server.port}, removed afterwards)\n", flush=True)
        return subprocess.call(argv, env=environment)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
