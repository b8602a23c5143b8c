"""A real, throwaway PostgreSQL server for tests, on 127.0.0.1 only.

``PostgresServer`` makes a fresh cluster with ``initdb`` in a temporary directory and runs it with ``pg_ctl`` at a
free loopback port. PostgreSQL refuses to run as root, so when the tests run as root every server command runs as
the ``postgres`` user that Debian's package creates (through ``runuser``), and the temporary directory is handed to
that user; as any other user the server simply runs as that user.

Fixtures: ``postgres_server`` (one started server for the session) and ``postgres_url`` (a SQLAlchemy URL to a fresh,
empty database for one test, dropped afterwards). Where the binaries are missing, tests that use them are skipped
with the install command, except under CI (``CI=true``), where that is a failure: CI must install ``postgresql``.

Only the PostgreSQL binaries are needed to import this module: admin SQL goes through the server's own ``psql``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DEFAULT_DB = "llmtally"
OS_USER = "postgres"  # the unprivileged user the server runs as when we are root
INSTALL_HINT = "apt-get install -y postgresql"

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin/initdb -> (15,) or (9, 6)
    return tuple(int(part) for part in re.findall(r"\d+", path.parents[1].name))


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: the highest version under
    ``/usr/lib/postgresql/*/bin/`` (Debian's layout), else where ``initdb`` on PATH really lives; None if neither."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve())
    for initdb in candidates:
        bindir = initdb.parent
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def require_bindir() -> Path:
    """``find_bindir()``, or end the test: a failure under CI (which must install PostgreSQL), else a loud skip."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    if os.environ.get("CI") == "true":
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin/ or on "
                    "PATH: the CI script (.ci/run) must install the 'postgresql' Debian package before the tests "
                    f"(`{INSTALL_HINT}`)", pytrace=False)
    pytest.skip("SKIPPED LOUDLY: no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin/ or on "
                f"PATH; the PostgreSQL tests need a real server. Install it with `{INSTALL_HINT}` (Debian, as root)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    # No PGHOST/PGPORT/PGDATA/... from the caller's environment, and messages in plain C.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents))


def _run(argv: Sequence[str], *, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_clean_env(),
                          stdin=subprocess.DEVNULL, check=False)


def _cleanup(as_user: list[str], pg_ctl: Path, datadir: Path, tmpdir: Path) -> None:
    """Stop the server if it runs (fast, then immediate) and remove its directory. Safe to call more than once."""
    try:
        if (datadir / "postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                try:
                    done = _run([*as_user, str(pg_ctl), "stop", "-D", str(datadir), "-m", mode, "-w", "-t", "20"],
                                timeout=30, cwd=tmpdir)
                except subprocess.TimeoutExpired:
                    continue
                if done.returncode == 0 or not (datadir / "postmaster.pid").exists():
                    break
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


class PostgresServer:
    """A fresh PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only.

    ``start()`` / ``stop()`` may be repeated: the port and the data directory stay the same, so a test can take the
    database down and bring the same data back. ``cleanup()`` (also run by ``with``, on garbage collection and at
    interpreter exit) stops the server and removes the directory.
    """

    def __init__(self, bindir: Path | None = None, *, start_timeout: float = 30.0) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise RuntimeError(f"no PostgreSQL server binaries found; install them with `{INSTALL_HINT}`")
        self.bindir = found
        self.start_timeout = start_timeout
        self.port: int | None = None
        self._initialised = False

        is_root = os.geteuid() == 0
        base = Path(tempfile.gettempdir())
        if is_root and not _traversable_by_others(base):
            base = Path("/tmp")  # the server's user must be able to reach its directory
        self.tmpdir = Path(tempfile.mkdtemp(prefix="llmtally-pg-", dir=base))
        self.datadir = self.tmpdir / "data"
        self.logfile = self.tmpdir / "server.log"
        self._as_user: list[str] = []
        try:
            if is_root:
                try:
                    user = pwd.getpwnam(OS_USER)
                except KeyError:
                    raise RuntimeError(f"running as root, but there is no '{OS_USER}' user to run PostgreSQL as "
                                       f"(Debian's package creates it: `{INSTALL_HINT}`)") from None
                runuser = shutil.which("runuser") or "/usr/sbin/runuser"
                self._as_user = [runuser, "-u", OS_USER, "--"]
                os.chown(self.tmpdir, user.pw_uid, user.pw_gid)
            os.chmod(self.tmpdir, 0o700)
        except BaseException:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise
        self._finalizer = weakref.finalize(self, _cleanup, self._as_user, self._bin("pg_ctl"), self.datadir,
                                           self.tmpdir)

    # -- locations ---------------------------------------------------------------------------------------------

    def _bin(self, name: str) -> Path:
        path = self.bindir / name
        if not path.exists() and (other := shutil.which(name)):
            return Path(other)
        return path

    def url_for(self, database: str) -> str:
        if self.port is None:
            raise RuntimeError("the server has not been started yet")
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{database}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``llmtally`` database, e.g. ``postgresql+psycopg://postgres@127.0.0.1:PORT/llmtally``."""
        return self.url_for(DEFAULT_DB)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _pg_ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return _run([*self._as_user, str(self._bin("pg_ctl")), *args, "-D", str(self.datadir)], timeout=timeout,
                    cwd=self.tmpdir)

    def _initdb(self) -> None:
        done = _run([*self._as_user, str(self._bin("initdb")), "-D", str(self.datadir), "-U", SUPERUSER,
                     "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120, cwd=self.tmpdir)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
        # Loopback only, trust auth; the Unix socket (and its lock file) in our own directory, so nothing clashes
        # with a cluster the Debian package may run in /var/run/postgresql. Durability off: these are tests.
        (self.datadir / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host  all all {HOST}/32 trust\n"
        )
        self._write_port_config()
        self._initialised = True

    def _write_port_config(self) -> None:
        (self.datadir / "postgresql.auto.conf").write_text(
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.tmpdir}'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 100\n"
        )

    def start(self) -> None:
        """Start the server (initialising the cluster and creating ``llmtally`` the first time) and wait until it
        accepts connections; a no-op if it already runs."""
        if self._initialised and self.is_running:
            return
        first = not self._initialised
        if first:
            self.port = free_port()
            self._initdb()
        attempts = 3 if first else 1  # another process may grab our free port before the server binds it
        for attempt in range(attempts):
            try:
                self._start_once()
                break
            except RuntimeError:
                if attempt + 1 == attempts or "could not bind" not in self.log_tail():
                    raise
                self.port = free_port()
                self._write_port_config()
        if first:
            self.create_database(DEFAULT_DB)

    def _start_once(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        done = self._pg_ctl("start", "-w", "-t", str(int(self.start_timeout)), "-l", str(self.logfile),
                            timeout=self.start_timeout + 10)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed (exit {done.returncode}) on {HOST}:{self.port}:\n"
                               f"{done.stdout}{done.stderr}\n--- server log ({self.logfile}) ---\n{self.log_tail()}")
        while True:  # ready by pg_ctl's account; make sure it answers on the TCP port too
            probe = _run([str(self._bin("pg_isready")), "-q", "-h", HOST, "-p", str(self.port), "-U", SUPERUSER,
                          "-d", "postgres", "-t", "1"], timeout=10)
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on {HOST}:{self.port} did not accept connections within "
                                   f"{self.start_timeout:.0f}s\n--- server log ({self.logfile}) ---\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (open sessions are cut off); the data directory and port are kept for ``start()``.
        A no-op if the server is not running."""
        if not self.is_running:
            return
        done = self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30", timeout=40)
        if done.returncode != 0 and self.is_running:
            raise RuntimeError(f"pg_ctl stop failed (exit {done.returncode}):\n{done.stdout}{done.stderr}\n"
                               f"--- server log ---\n{self.log_tail()}")

    @property
    def is_running(self) -> bool:
        if not (self.datadir / "postmaster.pid").exists():
            return False
        return self._pg_ctl("status", timeout=10).returncode == 0

    def cleanup(self) -> None:
        """Stop the server and remove its directory (idempotent)."""
        self._finalizer()

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- databases ---------------------------------------------------------------------------------------------

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through the server's ``psql`` as the superuser; returns unaligned, tuples-only output."""
        done = _run([str(self._bin("psql")), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p",
                     str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql], timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed (exit {done.returncode}) running {sql!r}:\n{done.stderr}")
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its SQLAlchemy URL."""
        if not _NAME_RE.match(name):
            raise ValueError(f"unsafe database name {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, cutting off any sessions still connected to it."""
        if not _NAME_RE.match(name):
            raise ValueError(f"unsafe database name {name!r}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One started PostgreSQL server for the test session (skipped, or failed under CI, without the binaries)."""
    server = PostgresServer(require_bindir())
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database of its own for this test; dropped afterwards."""
    postgres_server.start()  # in case an earlier test left it stopped
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.start()
        postgres_server.drop_database(name)
