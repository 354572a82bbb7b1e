"""A private 3-node MariaDB Galera cluster on loopback, for the clustering tests and the fault campaign.

Each node is a PrivateServer (tests/server.py) with its own data directory,
SQL port and three Galera ports (group communication, incremental and full
state transfer). The first node bootstraps the cluster; the others join it
and receive its data by rsync. Failure detection is shortened so that the
survivors of a crash evict the dead node in 2-3 s instead of about 6.

    python -m tests.cluster -- COMMAND ...   runs COMMAND with MYSQL_CLUSTER_HOSTS set
"""

from __future__ import annotations

import os
import pwd
import random
import re
import socket
import subprocess
import sys
import time

from tests.server import PrivateServer

GALERA_PROVIDER = "/usr/lib/galera/libgalera_smm.so"
FORM_TIMEOUT = 120  # seconds for the cluster to form (rsync state transfers on a busy 2-core machine)
FAILURE_DETECTION = (
    "evs.suspect_timeout=PT2S;evs.inactive_timeout=PT3S;evs.inactive_check_period=PT0.5S;"
    "evs.keepalive_period=PT0.5S;evs.install_timeout=PT3S"
)


def why_unavailable() -> str | None:
    """Why a cluster cannot be started here, or None if it can."""
    if not os.path.exists(GALERA_PROVIDER):
        return f"Galera is not installed ({GALERA_PROVIDER} is missing: apt-get install galera-4)"
    for tool in ("rsync", "mariadbd"):
        if not any(
            os.access(os.path.join(folder, tool), os.X_OK)
            for folder in os.environ.get("PATH", "").split(":") + ["/usr/sbin"]
        ):
            return f"{tool} is not installed (apt-get install mariadb-server rsync)"
    return None


def _free_port_block(size: int) -> int:
    """A port P with P .. P+size-1 all free on loopback, below the ephemeral range.

    Galera binds these ports only when a node starts (its incremental
    transfer port only when it rejoins): a port of the ephemeral range could
    be taken meanwhile by any outgoing connection.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            ephemeral = int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    for _ in range(200):
        base = random.randrange(10000, ephemeral - size)
        probes = []
        try:
            for port in range(base, base + size):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no block of free ports on 127.0.0.1")


class GaleraNode(PrivateServer):
    """One node: a private server with Galera on, joining the given cluster address."""

    def __init__(self, index: int, galera_port: int, cluster_address: str, first: bool) -> None:
        self.index = index
        self.galera_port = galera_port
        super().__init__(
            bootstrap=first,
            **{
                "wsrep-on": "ON",
                "wsrep-provider": GALERA_PROVIDER,
                "wsrep-cluster-name": "mysqlpool_test",
                "wsrep-cluster-address": cluster_address,
                "wsrep-node-name": f"node{index}",
                "wsrep-node-address": f"127.0.0.1:{galera_port}",
                "wsrep-provider-options": (
                    f"base_host=127.0.0.1;base_port={galera_port};"
                    f"gmcast.listen_addr=tcp://127.0.0.1:{galera_port};"
                    f"ist.recv_addr=127.0.0.1:{galera_port + 1};{FAILURE_DETECTION}"
                ),
                "wsrep-sst-method": "rsync",
                "wsrep-sst-receive-address": f"127.0.0.1:{galera_port + 2}",
                "binlog-format": "ROW",
                "innodb-autoinc-lock-mode": "2",
                "default-storage-engine": "InnoDB",
                "max-connections": "200",
            },
        )
        if not first:
            os.makedirs(self.datadir, exist_ok=True)

    def start(self, *extra_arguments: str) -> "GaleraNode":
        if os.geteuid() == 0:
            # Started by root, a joiner's rsync daemon receives as nobody
            # (MDEV-40688): the data directory must be its own, and the
            # folder above it open to it. (The server, as root, uses it all.)
            os.chmod(self.directory, 0o711)
            nobody = pwd.getpwnam("nobody")
            for folder, _, files in os.walk(self.datadir):
                for path in [folder] + [os.path.join(folder, name) for name in files]:
                    os.lchown(path, nobody.pw_uid, nobody.pw_gid)
        if self._crashed:
            # After a crash the node does not know its last transaction: find
            # it, so that it rejoins by incremental transfer instead of a
            # full copy.
            position = self._recovered_position()
            if position:
                extra_arguments += (f"--wsrep-start-position={position}",)
        super().start(*extra_arguments)
        self._crashed = False
        return self

    _crashed = False

    def kill(self) -> None:
        was_running = self.running()
        super().kill()
        self._crashed = self._crashed or was_running

    def _recovered_position(self) -> str | None:
        log = os.path.join(self.directory, "recover.log")
        command = [argument for argument in self._command() if not argument.startswith("--log-error=")]
        subprocess.run(command + ["--wsrep-recover", f"--log-error={log}"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        try:
            with open(log) as recovery:
                found = re.findall(r"Recovered position: (\S+)", recovery.read())
        except OSError:
            return None
        return found[-1] if found else None

    def _grant_root_over_tcp(self) -> None:
        # Once, on the node that bootstraps the cluster: the grant reaches
        # the others by replication (a joiner refuses statements until it
        # has synced).
        if self.index == 1 and not getattr(self, "_granted", False):
            # Even the bootstrapping node listens a moment before it is
            # ready, and refuses statements until then (1047).
            deadline = time.monotonic() + FORM_TIMEOUT
            while True:
                try:
                    super()._grant_root_over_tcp()
                    break
                except Exception as error:
                    if not (error.args and error.args[0] == 1047) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            self._granted = True

    def status(self, name: str) -> str | None:
        """A global status variable of this node (None if it cannot be read)."""
        try:
            admin = self.address.connect(connect_timeout=2)
        except Exception:
            return None
        try:
            cursor = admin.cursor()
            cursor.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
            row = cursor.fetchone()
            return None if row is None else (row[1].decode() if isinstance(row[1], bytes) else row[1])
        finally:
            admin.close()

    def wait_until(self, ready: bool = True, cluster_size: int | None = None,
                   timeout: float = FORM_TIMEOUT) -> None:
        """Wait until this node's wsrep_ready is as given (and the cluster has cluster_size nodes)."""
        deadline = time.monotonic() + timeout
        wanted = "ON" if ready else "OFF"
        while True:
            state = self.status("wsrep_ready")
            size = self.status("wsrep_cluster_size") if cluster_size is not None else None
            if state == wanted and (cluster_size is None or size == str(cluster_size)):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"node{self.index} (port {self.port}): wsrep_ready={state}, cluster size {size} "
                    f"after {timeout} s, wanted {wanted}/{cluster_size}:\n{self.error_log()}"
                )
            time.sleep(0.2)


class PrivateCluster:
    """Three Galera nodes on loopback: start(), kill(i), restart(i), destroy()."""

    def __init__(self, size: int = 3) -> None:
        galera_ports = [_free_port_block(3) for _ in range(size)]
        address = "gcomm://" + ",".join(f"127.0.0.1:{port}" for port in galera_ports)
        self.nodes: list[GaleraNode] = []
        try:
            for index, port in enumerate(galera_ports, start=1):
                self.nodes.append(GaleraNode(index, port, address, first=index == 1))
        except BaseException:
            self.destroy()
            raise

    @property
    def hosts(self) -> str:
        """The nodes as a DATABASES HOST value: "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"."""
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> "PrivateCluster":
        try:
            first, *others = self.nodes
            first.start("--wsrep-new-cluster")
            first.wait_until(ready=True)
            for count, node in enumerate(others, start=2):
                # One at a time: the donor serves one state transfer at once.
                node.start()
                node.wait_until(ready=True, cluster_size=count)
        except BaseException:
            self.destroy()
            raise
        return self

    def kill(self, index: int) -> None:
        """SIGKILL node index (1-based), as a crash would."""
        self.nodes[index - 1].kill()

    def restart(self, index: int, wait: bool = True) -> None:
        """Start a killed node again; it rejoins the cluster (by incremental state transfer)."""
        node = self.nodes[index - 1]
        node.start()
        if wait:
            node.wait_until(ready=True)

    def bootstrap(self, index: int) -> None:
        """Make node index (1-based), cut off from a lost majority, the primary component again."""
        admin = self.nodes[index - 1].address.connect(connect_timeout=5)
        try:
            admin.cursor().execute("SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'")
        finally:
            admin.close()
        self.nodes[index - 1].wait_until(ready=True)

    def destroy(self) -> None:
        for node in self.nodes:
            node.destroy()

    def __enter__(self) -> "PrivateCluster":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.destroy()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    reason = why_unavailable()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    with PrivateCluster() as cluster:
        print(f"(private Galera cluster on {cluster.hosts}, removed afterwards)\n", flush=True)
        environment = {**os.environ, "MYSQL_CLUSTER_HOSTS": cluster.hosts, "MYSQL_USER": "root",
                       "MYSQL_PASSWORD": ""}
        return subprocess.call(argv, env=environment)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
