"""A throw-away PostgreSQL server for the storage tests (initdb + pg_ctl in a temp dir, loopback, free port).

PostgreSQL binaries are looked up in ``PATH`` and ``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql``
package, installed in CI by ``scripts/install_system_deps.sh``). ``initdb`` refuses to run as root, so as root
the server runs as the unprivileged ``nobody`` user (through ``runuser``) in a temp dir that user owns.
Tests that need it are skipped with the reason when no binaries are found or the server does not start.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "find_pg_bin"]


def find_pg_bin() -> Path | None:
    """Folder holding ``initdb`` and ``pg_ctl`` (newest version first), or ``None``."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(cand) / "initdb").is_file() and (Path(cand) / "pg_ctl").is_file():
            return Path(cand)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` is a ``postgresql+psycopg`` URL."""

    def __init__(self) -> None:
        self.bin = find_pg_bin()
        self.dir: Path | None = None
        self.port = 0
        self.url = ""
        self._as_user: list[str] = []

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as_user, *args], capture_output=True, text=True, timeout=timeout, check=False)

    def start(self) -> str:
        """Create the cluster and start the server; returns the URL. Raises ``RuntimeError`` with the reason."""
        if self.bin is None:
            raise RuntimeError(
                "PostgreSQL binaries (initdb, pg_ctl) not found; install the Debian 'postgresql' package"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="pgtest_", dir="/tmp"))
        data, sock = self.dir / "data", self.dir / "sock"
        sock.mkdir()
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError(
                    "running as root and `runuser` is missing: cannot run initdb as an unprivileged user"
                )
            import pwd

            pw = pwd.getpwnam("nobody")
            for p in (self.dir, sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o700)
            self._as_user = [runuser, "-u", "nobody", "--"]
        res = self._run(
            str(self.bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            timeout=120,
        )
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed: {res.stderr.strip()[-500:]}")
        for _ in range(3):
            self.port = _free_port()
            opts = (
                f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c max_connections=200 -c shared_buffers=32MB"
            )
            res = self._run(
                str(self.bin / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(self.dir / "log"),
                "-w",
                "-t",
                "60",
                "start",
                timeout=90,
            )
            if res.returncode == 0:
                break
        else:
            log = (self.dir / "log").read_text()[-800:] if (self.dir / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {res.stderr.strip()[-300:]} {log}")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        return self.url

    def new_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server and delete its files."""
        if self.dir is None:
            return
        if self.port:
            self._run(
                str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop", timeout=60
            )
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
