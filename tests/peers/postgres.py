"""A throwaway PostgreSQL for tests and benchmarks.

If ``MAILHOUSE_TEST_PG_URL`` is set, that server is used as-is (start/stop do
nothing; :meth:`create_database` still works if the role may create databases).
Otherwise ``initdb`` makes a cluster in a temp dir and ``postgres`` runs in the
foreground on 127.0.0.1:<free port> with ``fsync=off`` and trust auth, stopped by PID.

PostgreSQL refuses to run as root, so when we are root the cluster directory is
owned by the ``postgres`` system user and the server runs as that user
(``subprocess`` ``user=``/``group=``, so the PID we hold is the postmaster itself).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ._proc import stop_process, tail
from .ports import check_loopback, free_port

__all__ = ["PostgresInstance", "find_pg_bin"]

ENV_URL = "MAILHOUSE_TEST_PG_URL"


def find_pg_bin() -> Path:
    """The newest /usr/lib/postgresql/<ver>/bin that has initdb (or $PG_BIN)."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    cands = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
    )
    if cands:
        return Path(cands[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise FileNotFoundError("initdb not found (install postgresql or set MAILHOUSE_TEST_PG_URL)")


class PostgresInstance:
    """``PostgresInstance().start()``; ``.url`` → ``postgresql://postgres@127.0.0.1:PORT/mailhouse``.

    Arguments:
        base_dir: cluster + socket dir (temp if None; removed on stop()).
        host: loopback address for TCP.
        port: free port if None.
        database: database created at start.
        url: use this existing server instead (default: ``$MAILHOUSE_TEST_PG_URL``).
        settings: extra ``-c name=value`` server settings.
    """

    def __init__(
        self,
        base_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        database: str = "mailhouse",
        url: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.external_url = url if url is not None else os.environ.get(ENV_URL) or None
        self.host = check_loopback(host) if not self.external_url else host
        self.port = port
        self.database = database
        self.settings = dict(settings or {})
        self._own_dir = base_dir is None
        self._base_arg = base_dir
        self.base_dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._run_as: pwd.struct_passwd | None = None

    # -- urls ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.external_url:
            return self.external_url
        return f"postgresql://postgres@{self.host}:{self.port}/{self.database}"

    def url_for(self, database: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + database))

    @property
    def dsn(self) -> str:
        return self.url

    # -- lifecycle -----------------------------------------------------------------
    def _popen_kw(self) -> dict:
        if self._run_as is None:
            return {}
        return {
            "user": self._run_as.pw_uid,
            "group": self._run_as.pw_gid,
            "extra_groups": [],
            "env": {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self.base_dir),
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
            },
            "cwd": str(self.base_dir),
        }

    def start(self, timeout: float = 30.0) -> PostgresInstance:
        if self.external_url:
            return self
        if self.proc is not None and self.proc.poll() is None:
            return self
        pg_bin = find_pg_bin()
        self.base_dir = Path(self._base_arg or tempfile.mkdtemp(prefix="mh-pg-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        data = self.base_dir / "data"
        sock = self.base_dir / "sock"
        sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self._run_as = pwd.getpwnam("postgres")
            for p in (self.base_dir, sock):
                os.chown(p, self._run_as.pw_uid, self._run_as.pw_gid)
            os.chmod(self.base_dir, 0o700)
        self.log_file = self.base_dir / "postgres.log"
        if not (data / "PG_VERSION").exists():
            r = subprocess.run(
                [
                    str(pg_bin / "initdb"),
                    "-D", str(data),
                    "-U", "postgres",
                    "-A", "trust",
                    "-E", "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                check=False,
                **self._popen_kw(),
            )  # fmt: skip
            if r.returncode != 0:
                raise RuntimeError(f"initdb failed: {r.stderr}{r.stdout}")
        if self.port is None:
            self.port = free_port(self.host)
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(sock),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            **self.settings,
        }
        cmd = [str(pg_bin / "postgres"), "-D", str(data)]
        for k, v in settings.items():
            cmd += ["-c", f"{k}={v}"]
        log = open(self.log_file, "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                **self._popen_kw(),
            )
        finally:
            log.close()
        try:
            self._wait_ready(pg_bin, timeout)
            exists = self._psql(
                pg_bin, "postgres", f"SELECT 1 FROM pg_database WHERE datname='{self.database}'"
            )
            if not exists.strip():  # a restart (stop(cleanup=False), start()) keeps its databases
                self._psql(pg_bin, "postgres", f'CREATE DATABASE "{self.database}"')
        except Exception as e:
            self.stop(cleanup=False)
            raise RuntimeError(f"postgres did not start: {e}\n{tail(self.log_file)}") from e
        return self

    def _wait_ready(self, pg_bin: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}")
            r = subprocess.run(
                [str(pg_bin / "pg_isready"), "-h", self.host, "-p", str(self.port), "-U", "postgres", "-q"],
                check=False,
            )
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres not ready after {timeout}s")
            time.sleep(0.1)

    def _psql(self, pg_bin: Path | None, database: str, sql: str) -> str:
        pg_bin = pg_bin or find_pg_bin()
        r = subprocess.run(
            [
                str(pg_bin / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.url_for(database),
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr}")
        return r.stdout

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run SQL with ``psql`` against this server; returns unaligned tuples-only output."""
        return self._psql(None, database or urlsplit(self.url).path.lstrip("/") or "postgres", sql)

    def create_database(self, name: str) -> str:
        """Create a fresh database (for per-test isolation) and return its URL."""
        self._psql(None, "postgres", f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self._psql(None, "postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, cleanup: bool = True) -> None:
        if self.external_url:
            return
        # SIGINT = "fast shutdown": roll back open transactions, disconnect clients, exit.
        stop_process(self.proc, signal.SIGINT, timeout=15)
        self.proc = None
        if cleanup and self._own_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def log(self, lines: int = 40) -> str:
        return tail(self.log_file, lines) if self.base_dir else ""

    def __enter__(self) -> PostgresInstance:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<PostgresInstance {self.url} pid={self.proc.pid if self.proc else None}>"
