"""Processes for the benchmarks: start on loopback, wait until ready, measure, stop.

Every process started here is stopped in a ``finally`` (SIGTERM, then SIGKILL),
so a run never leaves a server behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this run handed out before."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process, of its children that ended, and of those still running
    (resetd's inbox parser process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / TICKS
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    for child in children:
        try:
            total += cpu_seconds(int(child))
        except OSError:
            pass  # ended meanwhile (its time is then in the parent's)
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def process(
    args: list[str],
    ready_port: int,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        args, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        wait_port(ready_port)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if log:
            out.close()  # type: ignore[union-attr]


def write_config(
    workdir: Path,
    http_port: int,
    mail_port: int,
    *,
    inbox: bool,
    inbox_port: int = 0,
    extra: str = "",
) -> Path:
    cfg = workdir / "resetd.toml"
    relay_port = inbox_port if inbox else mail_port
    cfg.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {http_port}
public_url = "http://localhost:{http_port}"
secret_key = "{SECRET}"
[database]
path = "{workdir / "resetd.db"}"
[mail]
server = "127.0.0.1"
port = {relay_port}
[limits]
requests_per_ip = 100000000
mails_per_address = 100000000
[dev_inbox]
enabled = {"true" if inbox else "false"}
smtp_host = "127.0.0.1"
smtp_port = {inbox_port}
path = "{workdir / "inbox.db"}"
max_messages = 100000
{extra}
"""
    )
    return cfg


def resetd_cmd(cfg: Path) -> list[str]:
    return [sys.executable, "-m", "resetd", "serve", "--config", str(cfg)]


def seed_users(db_path: Path, count: int, password_hash: str) -> None:
    """Bench-only bulk insert of accounts (``resetd user add`` hashes each one)."""
    conn = sqlite3.connect(db_path)
    try:
        now = time.time()
        conn.executemany(
            "INSERT INTO users (username, username_norm, email, email_norm, password_hash,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    f"user{i}",
                    f"user{i}",
                    f"user{i}@example.com",
                    f"user{i}@example.com",
                    password_hash,
                    now,
                    now,
                )
                for i in range(count)
            ],
        )
        conn.commit()
    finally:
        conn.close()


def init_db(cfg: Path, cwd: Path) -> None:
    """Create and migrate resetd's database by running a harmless CLI command."""
    subprocess.run(
        [sys.executable, "-m", "resetd", "user", "list", "--config", str(cfg)],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)
