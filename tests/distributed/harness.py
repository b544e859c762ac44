"""Several machines on one: network namespaces, a private PostgreSQL, PgBouncer, fleets.

Everything here runs real programs (``ip``, ``nft``, PostgreSQL's ``initdb``/``pg_ctl``,
``pgbouncer``) and needs root. Each namespace ``aana-hN`` is a host with one veth pair:
``10.231.N.2/30`` inside, ``10.231.N.1/30`` on this machine's side, where the harness's
own PostgreSQL cluster listens (besides 127.0.0.1). Nothing is routed further: traffic
stays between the namespaces and this machine. The shared server on :5432 is not touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.storage.op import run_alembic_migrations
from aana.tasks.manager import QueueManager
from tests.helpers import REPO_ROOT, environment

PG_BIN = Path("/usr/lib/postgresql/15/bin")
HOSTS = 3
NAMESPACE = "aana-h{}"
HOST_SIDE = "aana-v{}"  # this machine's end of the veth pair of host N
NS_SIDE = "aana-v{}p"  # the namespace's end
SCRATCH_PREFIX = "aana-distributed-"
APP = "tests.distributed.fleet_app:app"
STALE_MARK = "not stored: the task was handed back or claimed again meanwhile"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; fail with its output when ``check`` and it fails."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def unavailable_reason() -> str | None:
    """Why the distributed tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, a private PostgreSQL cluster)"
    for tool in ("ip", "nft", "runuser", "pgbouncer"):
        if shutil.which(tool) is None:
            return f"the {tool!r} command is missing"
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 server binaries are missing ({PG_BIN})"
    probe = "aana-probe"
    sh("ip", "netns", "del", probe, check=False)
    if sh("ip", "netns", "add", probe, check=False).returncode != 0:
        return "'ip netns add' does not work here"
    sh("ip", "netns", "del", probe, check=False)
    return None


def host_address(n: int) -> str:
    """The address of this machine as host ``n`` sees it (where PostgreSQL listens)."""
    return f"10.231.{n}.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the network ---


def remove_network() -> None:
    """Remove the namespaces and veths of this or of an earlier (crashed) run."""
    for n in range(1, HOSTS + 1):
        sh("ip", "netns", "del", NAMESPACE.format(n), check=False)
        sh("ip", "link", "del", HOST_SIDE.format(n), check=False)


def create_network() -> None:
    """Three namespaces, each linked to this machine by a veth pair of its own."""
    remove_network()
    for n in range(1, HOSTS + 1):
        ns, outside, inside = NAMESPACE.format(n), HOST_SIDE.format(n), NS_SIDE.format(n)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "addr", "add", f"{host_address(n)}/30", "dev", outside)
        sh("ip", "link", "set", outside, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.231.{n}.2/30", "dev", inside)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", inside, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")


def set_link(n: int, up: bool) -> None:
    """Cut or restore host ``n``'s link (the kernel answers "unreachable" while down)."""
    sh("ip", "link", "set", HOST_SIDE.format(n), "up" if up else "down")


def silence(n: int) -> None:
    """Drop every packet host ``n`` sends or receives, silently (no RST, no ICMP)."""
    ns = NAMESPACE.format(n)
    sh("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "aana_partition")
    for chain, hook in (("in", "input"), ("out", "output")):
        rule = f"{{ type filter hook {hook} priority 0; policy drop; }}"
        sh("ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "aana_partition", chain, rule)


def unsilence(n: int) -> None:
    ns = NAMESPACE.format(n)
    sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "aana_partition", check=False)


# --- PostgreSQL and PgBouncer, private to the harness ---


def remove_stale_scratch() -> None:
    """Stop servers a crashed run left behind and delete their folders."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        pid_file = folder / "pgbouncer.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.kill(int(pid_file.read_text().split()[0]), 15)
        if (folder / "data" / "postmaster.pid").exists():
            as_postgres(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(folder / "data"),
                "-m",
                "immediate",
                "stop",
                check=False,
            )
        shutil.rmtree(folder, ignore_errors=True)


def as_postgres(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command as the ``postgres`` user (the server refuses to run as root)."""
    return sh("runuser", "-u", "postgres", "--", *args, check=check)


@dataclass
class Cluster:
    """A PostgreSQL 15 cluster of the harness's own, listening on the hosts' side too."""

    folder: Path
    port: int = field(default_factory=free_port)
    template: str = ""  # a migrated database to copy, once ``create_template`` ran

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def addresses(self) -> str:
        """Where the cluster (and PgBouncer) listen: 127.0.0.1 and each host's side."""
        return ",".join(["127.0.0.1", *(host_address(n) for n in range(1, HOSTS + 1))])

    def start(self) -> None:
        shutil.chown(self.folder, "postgres", "postgres")
        as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        settings = {
            "listen_addresses": f"'{self.addresses}'",
            "port": self.port,
            "unix_socket_directories": f"'{self.folder}'",
            "max_connections": 300,
            # Notice a client cut off silently within seconds and end its session (as
            # docs/deployment.md recommends for production).
            "tcp_keepalives_idle": 1,
            "tcp_keepalives_interval": 1,
            "tcp_keepalives_count": 2,
            "tcp_user_timeout": 3000,
            "client_connection_check_interval": "'1s'",
            "fsync": "off",  # a scratch cluster: speed over durability
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 10.231.0.0/16 trust\n")
        self._pg_ctl("start")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate", check=False)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        log = str(self.folder / "postgres.log")
        as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", *args, check=check
        )

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def settings(
        self, database: str, host: str = "127.0.0.1", port: int | None = None, **options: Any
    ) -> DbSettings:
        config = {"host": host, "port": port or self.port, "user": "postgres", "database": database}
        return DbSettings(datastore_type="postgresql", datastore_config=config, **options)

    def create_template(self) -> str:
        name = "aana_template"
        with self.admin() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        db = self.settings(name)
        run_alembic_migrations(Settings(db_config=db))
        db.get_engine().dispose()
        self.template = name
        return name

    def create_database(self, template: str) -> str:
        name = f"fleet_{os.urandom(6).hex()}"
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
        with self.admin() as admin:
            admin.execute(query.format(sql.Identifier(name), sql.Identifier(template)))
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as admin:
            query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(query.format(sql.Identifier(name)))


@dataclass
class Bouncer:
    """PgBouncer in transaction pooling mode in front of ``cluster``, on a port of its own.

    It listens where the cluster does: on 127.0.0.1 and on each host's side of the veths.
    """

    cluster: Cluster
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        folder = self.cluster.folder
        (folder / "userlist.txt").write_text('"postgres" ""\n')
        config = folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.cluster.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {self.cluster.addresses}\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {folder}\n"
            "auth_type = trust\n"
            f"auth_file = {folder / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 2000\ndefault_pool_size = 20\n"
            # aana sends its session settings as the startup "options", which PgBouncer
            # 1.18 (Debian 12's) refuses unless told to ignore it (docs/deployment.md).
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"pidfile = {folder / 'pgbouncer.pid'}\n"
            f"logfile = {folder / 'pgbouncer.log'}\n"
        )
        for path in folder.iterdir():
            if path.suffix in (".txt", ".ini"):
                shutil.chown(path, "postgres", "postgres")
        self.process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", "pgbouncer", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("PgBouncer did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


# --- fleets of workers on the hosts ---


@dataclass
class Host:
    """One ``aana worker`` running inside namespace ``aana-hN``."""

    n: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    @property
    def name(self) -> str:
        return NAMESPACE.format(self.n)


@dataclass
class Fleet:
    """Workers on every host, recording each execution into ``record_dir``."""

    db: str
    cluster: Cluster
    folder: Path
    hosts: list[Host] = field(default_factory=list)

    @property
    def record_dir(self) -> Path:
        return self.folder / "records"

    def start(
        self,
        processes: int = 2,
        heartbeat_timeout: float = 3,
        settings_of: Callable[[int], DbSettings] | None = None,
    ) -> None:
        self.record_dir.mkdir(exist_ok=True)
        for n in range(1, HOSTS + 1):
            db = (settings_of or self.settings_of)(n)
            command = [
                "ip",
                "netns",
                "exec",
                NAMESPACE.format(n),
                sys.executable,
                "-m",
                "aana.cli",
                "worker",
                APP,
                "--processes",
                str(processes),
                "--concurrency",
                "2",
                "--heartbeat-timeout",
                str(heartbeat_timeout),
                "--max-retries",
                "50",
                "--poll-interval",
                "0.5",
            ]
            log_path = self.folder / f"host{n}.log"
            log = log_path.open("wb")
            env = environment(
                db,
                AANA_TEST_RECORD=str(self.record_dir),
                AANA_TEST_HOST=NAMESPACE.format(n),
                # A task handed back after its heartbeat timeout is due again at once (by
                # default it waits about a second, doubling): it runs elsewhere while
                # the faulted host is still cut off.
                TASK_QUEUE__RETRY_BASE_DELAY="0.05",
            )
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            self.hosts.append(Host(n, process, log_path, log))

    def settings_of(self, n: int) -> DbSettings:
        return self.cluster.settings(self.db, host=host_address(n))

    def stop(self) -> None:
        for host in self.hosts:
            if host.process.poll() is None:
                host.process.terminate()
        for host in self.hosts:
            try:
                host.process.wait(30)
            except subprocess.TimeoutExpired:
                host.process.kill()
                host.process.wait(10)
            host.log.close()

    def defer(self, numbers: range, seconds: float) -> None:
        engine = self.cluster.settings(self.db).get_engine()
        try:
            QueueManager(engine).defer("record", [{"n": n, "seconds": seconds} for n in numbers])
        finally:
            engine.dispose()

    def executions(self) -> list[tuple[int, str, int, float]]:
        """Every handler body run so far: (task number, host, pid, time)."""
        rows = []
        for path in self.record_dir.glob("*.txt"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 4:
                    rows.append((int(parts[0]), parts[1], int(parts[2]), float(parts[3])))
        return rows

    def connect(self) -> psycopg.Connection[Any]:
        """A connection to the fleet's database, direct (from this machine)."""
        return psycopg.connect(
            host="127.0.0.1", port=self.cluster.port, user="postgres", dbname=self.db
        )

    def statuses(self) -> Counter[str]:
        with self.connect() as connection:
            rows = connection.execute("SELECT status, count(*) FROM tasks GROUP BY status")
            return Counter({str(status): int(number) for status, number in rows})

    def completed_results(self) -> list[tuple[int, str, Any]]:
        with self.connect() as connection:
            rows = connection.execute("SELECT data, status, result FROM tasks")
            return [(data["n"], str(status), result) for data, status, result in rows]

    def stale_rejected(self) -> int:
        """Results the workers could not store because their claim was gone (fenced)."""
        return sum(
            host.log_path.read_text(errors="replace").count(STALE_MARK) for host in self.hosts
        )

    def diagnosis(self) -> str:
        """What the database and the hosts say, for a scenario that timed out."""
        with self.connect() as connection:
            tasks = connection.execute(
                "SELECT status, num_retries, count(*) FROM tasks GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
            sessions = connection.execute(
                "SELECT pid, client_addr, state, wait_event_type, wait_event,"
                " now() - xact_start, left(query, 100) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
            blocked = connection.execute(
                "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity"
                " WHERE cardinality(pg_blocking_pids(pid)) > 0"
            ).fetchall()
        ran = Counter(host for _, host, _, _ in self.executions())
        lines = [
            f"tasks (status, num_retries, count): {tasks}",
            f"executions by host: {dict(ran)}",
            f"blocked sessions (pid, blocked by): {blocked}",
            "sessions:",
            *(f"  {session}" for session in sessions),
        ]
        return "\n".join(lines) + "\n" + self.logs()

    def logs(self) -> str:
        return "\n".join(
            f"--- {host.name}\n{host.log_path.read_text(errors='replace')[-4000:]}"
            for host in self.hosts
        )


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.1) -> float:
    """Wait until ``condition()`` holds; seconds waited. Raises AssertionError on timeout."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold the machine-wide lock of the harness: the namespaces' names are fixed.

    A second run (another test session, the benchmark) waits here; whatever it finds
    left over once it holds the lock is stale.
    """
    with (Path(tempfile.gettempdir()) / "aana-distributed.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_report(path: Path, report: dict[str, Any]) -> None:
    reports = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*reports, report], indent=2))
