"""A throw-away PostgreSQL server for tests and benchmarks.

Debian's postgresql binaries (``/usr/lib/postgresql/<ver>/bin``) are run on a temporary
directory and a free loopback port, then stopped and removed. ``initdb`` and ``postgres``
refuse to run as root, so as root they run as the ``postgres`` system user (``runuser``)
with the directory handed over to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql


def find_pg_bin() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres, newest version first; None if absent."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                        reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    which = shutil.which("initdb")
    if which and shutil.which("pg_ctl"):
        return Path(os.path.realpath(which)).parent
    return None


MISSING_REASON = ("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                  "apt-get install -y postgresql")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """A running throw-away server; `stop()` then `cleanup()` (or `close()`) at the end."""

    bin_dir: Path
    base: Path
    port: int
    run_as: str | None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        return ["runuser", "-u", self.run_as, "--", *cmd] if self.run_as else cmd

    def _run(self, *args: str) -> None:
        res = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            log = (self.base / "server.log")
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({res.returncode}): {res.stderr}\n{tail}")

    def init(self) -> None:
        """initdb: trust auth on loopback only (the server listens on 127.0.0.1 alone)."""
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")

    def start(self) -> None:
        """Start (again) on the same port."""
        opts = [f"-p {self.port}", f"-k {self.base}", "-c listen_addresses=127.0.0.1"]
        opts += [f"-c {k}={v}" for k, v in self.options.items()]
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.base / "server.log"), "-w",
                  "-t", "60", "-o", " ".join(opts), "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (the database becomes unavailable)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def close(self) -> None:
        """Stop and remove everything."""
        with contextlib.suppress(RuntimeError):
            self.stop()
        self.cleanup()

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE name [TEMPLATE template]; returns its URL."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            q = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                q = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                     sql.Identifier(template))
            conn.execute(q)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE, closing whatever connections are left."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def start_server(options: dict[str, str] | None = None) -> PgServer:
    """initdb + start a server on a free loopback port. Raises FileNotFoundError when the
    binaries are not installed."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise FileNotFoundError(MISSING_REASON)
    base = Path(tempfile.mkdtemp(prefix="spinedecomp-pg-"))
    run_as: str | None = None
    if os.geteuid() == 0:
        run_as = "postgres"
        pw = pwd.getpwnam(run_as)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    os.chmod(base, 0o700)
    server = PgServer(bin_dir=bin_dir, base=base, port=free_port(), run_as=run_as,
                      options=dict(options or {}))
    try:
        server.init()
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return server
