"""A private PostgreSQL server for tests that stop, kill or restart the database.

The machine's shared cluster is never touched: :class:`PrivatePostgres` runs
``initdb`` into a fresh folder of its own (C locale, trust unless told otherwise),
starts the server with ``pg_ctl`` on a free 127.0.0.1 port with its Unix socket
in that folder, and can ``stop`` (``fast`` or ``immediate``), ``start`` and
``restart`` it. :meth:`PrivatePostgres.close` stops it for good and removes the
folder; use it as a context manager or from a fixture's teardown.

PostgreSQL refuses to run as root: when the tests run as root, every server
command runs as the ``postgres`` OS user through ``runuser`` and the folder is
owned by that user (it lives directly under the system temporary directory,
because pytest's ``tmp_path`` is private to root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from shoal.testing import free_port

__all__ = ["PgUnavailable", "PrivatePostgres", "find_pg_bin"]

_CANDIDATES = (
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/17/bin",
)


class PgUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or a user to run them as) are not on this machine."""


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``; None when they are missing.

    ``SHOAL_PG_BIN`` wins; then the Debian locations of PostgreSQL 15 (and
    newer); then ``initdb`` on PATH (its real location, so that ``postgres``
    sits next to it).
    """
    env = os.environ.get("SHOAL_PG_BIN")
    candidates = [env] if env else []
    candidates += list(_CANDIDATES)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    for c in candidates:
        d = Path(c)
        if all((d / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


class PrivatePostgres:
    """One throwaway PostgreSQL instance: its own data folder, port and socket folder.

    ``settings`` are extra ``-c name=value`` server settings. ``fsync`` is off
    by default: an immediate stop (a server crash) loses nothing the OS
    already has, which is all a process-level crash test needs. ``auth_host``
    is the authentication of TCP connections (``scram-sha-256`` to make
    passwords matter); the Unix socket always trusts, and :meth:`execute`
    uses it.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        settings: dict[str, str] | None = None,
        auth_host: str = "trust",
    ) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise PgUnavailable(
                "initdb/pg_ctl/postgres not found (install postgresql-15 or set SHOAL_PG_BIN)"
            )
        self.bin = found
        self.auth_host = auth_host
        self.settings = {
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **(settings or {}),
        }
        self._as_user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable(
                    "running as root and there is no 'postgres' OS user to run the server as"
                ) from None
            if shutil.which("runuser") is None:
                raise PgUnavailable("running as root and runuser is missing")
            self._as_user = "postgres"
        self.base = Path(tempfile.mkdtemp(prefix="shoal-pg-", dir=tempfile.gettempdir()))
        self.data = self.base / "data"
        self.logfile = self.base / "server.log"
        self.port = 0
        self._initialized = False

    # -- commands -----------------------------------------------------------

    def _run(
        self, args: list[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_user is not None:
            cmd = ["runuser", "-u", self._as_user, "--", *cmd]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.base,
            stdin=subprocess.DEVNULL,
        )
        if check and res.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({res.returncode}): {res.stderr.strip()}\n{self.log_tail()}"
            )
        return res

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log (for failure messages)."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def init(self) -> PrivatePostgres:
        """Create the cluster: superuser ``postgres``, trusted on the socket, ``auth_host`` over TCP."""
        if self._as_user is not None:
            shutil.chown(self.base, self._as_user, self._as_user)
        self.base.chmod(0o700)
        self._run(
            [
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                f"--auth-host={self.auth_host}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        self._initialized = True
        return self

    def _options(self) -> str:
        opts = [f"-p {self.port}", f"-k {self.base}", "-c listen_addresses=127.0.0.1"]
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        return " ".join(opts)

    def start(self, *, timeout: float = 30) -> PrivatePostgres:
        """Start the server (initialising the cluster first if needed) and wait until it accepts connections.

        The port is chosen on the first start and kept afterwards, so URLs
        stay valid across restarts.
        """
        if not self._initialized:
            self.init()
        first = self.port == 0
        for attempt in range(5):
            if first:
                self.port = free_port()
            res = self._run(
                [
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.logfile),
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "-o",
                    self._options(),
                    "start",
                ],
                timeout=timeout + 10,
                check=False,
            )
            if res.returncode == 0:
                return self
            if not first or attempt == 4 or "could not bind" not in self.log_tail(50):
                raise RuntimeError(
                    f"pg_ctl start failed ({res.returncode}): {res.stderr.strip()}\n{self.log_tail()}"
                )
        return self  # pragma: no cover

    def stop(self, mode: str = "fast", *, timeout: float = 30) -> None:
        """Stop the server: ``smart``, ``fast`` (roll back sessions) or ``immediate`` (like a crash)."""
        self._run(
            ["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
            timeout=timeout + 10,
        )

    def restart(self, mode: str = "fast", *, timeout: float = 30) -> None:
        """Stop the server with ``mode`` and start it again on the same port."""
        self.stop(mode, timeout=timeout)
        self.start(timeout=timeout)

    @property
    def running(self) -> bool:
        """True while the server's postmaster runs."""
        if not self._initialized:
            return False
        return self._run(["pg_ctl", "-D", str(self.data), "status"], check=False).returncode == 0

    # -- connecting ---------------------------------------------------------

    def url(
        self, database: str = "postgres", *, user: str = "postgres", password: str | None = None
    ) -> str:
        """A ``postgresql://`` URL to a database of this server over TCP."""
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def execute(self, *statements: str, database: str = "postgres") -> None:
        """Run statements in autocommit mode as the superuser (over the Unix socket)."""
        import psycopg

        with psycopg.connect(
            host=str(self.base),
            port=self.port,
            user="postgres",
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            for s in statements:
                conn.execute(s)  # type: ignore[arg-type,unused-ignore]

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    # -- teardown -----------------------------------------------------------

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        """Stop the server at once (killing it if pg_ctl cannot) and remove its folder."""
        if self._initialized:
            try:
                if self.running:
                    self.stop("immediate", timeout=15)
            except (RuntimeError, subprocess.TimeoutExpired):
                pid = self._postmaster_pid()
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    time.sleep(0.5)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
