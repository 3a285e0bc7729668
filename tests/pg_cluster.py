"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl in a directory of its own.

.ci/run starts one with ``python3 tests/pg_cluster.py start DIR`` (which prints
the URL to export as RESETD_TEST_POSTGRES) and stops it with ``stop DIR``;
tests/pg.py starts one the same way when that variable is unset and PostgreSQL
is installed. The server listens on a Unix socket in DIR only (no TCP port), and
runs without fsync: its data is thrown away. PostgreSQL refuses to run as root,
so as root both programs run as the ``postgres`` user (``runuser -u postgres``).

Standard library only: CI runs it before any virtualenv exists.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

SERVER_OPTIONS = (
    "-c listen_addresses='' -c fsync=off -c synchronous_commit=off "
    "-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB"
)
# For benchmarks: every commit flushed to disk, as a production server does.
DURABLE_OPTIONS = "-c listen_addresses='' -c max_connections=200 -c shared_buffers=128MB"


def bin_dir() -> Path | None:
    """Where pg_ctl and initdb are: on PATH, or Debian's /usr/lib/postgresql/N/bin
    (the newest N); None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent

    def version(pg_ctl: str) -> int:
        name = Path(pg_ctl).parent.parent.name
        return int(name) if name.isdigit() else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version)
    return Path(candidates[-1]).parent if candidates else None


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def unavailable() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    if bin_dir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without runuser"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user"
    return None


def url_for(directory: Path, dbname: str = "postgres") -> str:
    return f"postgresql:///{dbname}?host={quote(str(directory), safe='/')}&user=postgres"


def start(directory: Path, *, durable: bool = False) -> str:
    """initdb and start a cluster in ``directory`` (which must exist and be
    empty); the URL of its ``postgres`` database. ``durable``: fsync and
    synchronous commits on (benchmarks), instead of the tests' fast settings."""
    bins = bin_dir()
    if bins is None:
        raise RuntimeError("PostgreSQL is not installed")
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    data = directory / "data"
    subprocess.run(
        _as_server_user(
            [
                *(str(bins / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
                *("-E", "UTF8", "--locale=C", "--no-sync"),
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    subprocess.run(
        _as_server_user(
            [
                *(str(bins / "pg_ctl"), "-D", str(data), "-l", str(directory / "server.log")),
                *(
                    "-w",
                    "-o",
                    f"-k {directory} {DURABLE_OPTIONS if durable else SERVER_OPTIONS}",
                    "start",
                ),
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return url_for(directory)


def postmaster_pid(directory: Path) -> int:
    """The server's main process (its backends are its children)."""
    return int((directory / "data" / "postmaster.pid").read_text().split()[0])


def stop(directory: Path) -> None:
    """Stop the cluster in ``directory`` (no waiting for clients) and delete it."""
    bins = bin_dir()
    if bins is not None and (directory / "data" / "postmaster.pid").exists():
        subprocess.run(
            _as_server_user(
                [str(bins / "pg_ctl"), "-D", str(directory / "data"), "-m", "immediate", "stop"]
            ),
            check=False,
            stdout=subprocess.DEVNULL,
        )
    shutil.rmtree(directory, ignore_errors=True)


def make_directory() -> Path:
    # Short and under /tmp: a Unix socket's path is limited to ~107 bytes.
    return Path(tempfile.mkdtemp(prefix="resetd-pg-"))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: pg_cluster.py start|stop DIR")
    if sys.argv[1] == "start":
        print(start(Path(sys.argv[2])))
    else:
        stop(Path(sys.argv[2]))
