"""resetd as a real process: a config file, a clean environment, the CLI, ``serve``.

Used by the tests that must cross a process boundary: ``kill -9``, SIGTERM, and
the ``resetd outbox`` commands. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from resetd.config_load import TUTORIAL_ENV

from .helpers import TEST_SECRET, merge_sections

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
BANNER_PORT_RE = re.compile(r"Sign in\s+http://[^ ]+:(\d+)/login")
BANNER_SMTP_RE = re.compile(r"Dev inbox SMTP\s+[^ ]+:(\d+)")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write ``sections`` (section → key → scalar) as a resetd.toml at ``path``."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(v)}" for key, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def relay_config(
    tmp_path: Path,
    mail_port: int,
    extra: dict[str, dict[str, Any]] | None = None,
    database: dict[str, Any] | None = None,
) -> Path:
    """resetd.toml for a ``serve`` in ``tmp_path`` that mails the relay on
    ``mail_port`` with short retries, its database ``database`` (the test's
    ``database_section``) or else ``tmp_path/resetd.db``, no dev inbox and cheap
    hashing; ``extra`` sections are laid over it."""
    sections: dict[str, dict[str, Any]] = {
        "server": {
            "host": "127.0.0.1",
            "port": 0,
            "public_url": "http://localhost:8080",
            "secret_key": TEST_SECRET,
        },
        "database": dict(database or {"path": str(tmp_path / "resetd.db")}),
        "mail": {
            "server": "127.0.0.1",
            "port": mail_port,
            "sender": "resetd <no-reply@example.test>",
            "timeout": 3.0,
            "retry_base": 0.2,
            "backoff_cap": 1.0,
        },
        "dev_inbox": {"enabled": False},
        "passwords": {"argon2_memory_cost": 8192, "argon2_time_cost": 1},
    }
    merge_sections(sections, extra or {})
    return write_config(tmp_path / "resetd.toml", sections)


def inbox_serve_config(directory: Path, smtp_port: int, **dev_inbox: Any) -> Path:
    """A resetd.toml in ``directory`` for ``resetd serve`` with the dev inbox on
    ``smtp_port`` (0: any free port), [mail] pointing at it, files in
    ``directory`` and cheap hashing; ``dev_inbox`` adds keys to that section."""
    return write_config(
        directory / "resetd.toml",
        {
            "server": {
                "host": "127.0.0.1",
                "port": 0,
                "public_url": "http://localhost:8080",
                "secret_key": TEST_SECRET,
            },
            "database": {"path": str(directory / "resetd.db")},
            "mail": {"server": "127.0.0.1", "port": smtp_port, "sender": "r <r@example.test>"},
            "dev_inbox": {
                "enabled": True,
                "smtp_port": smtp_port,
                "path": str(directory / "inbox.db"),
                **dev_inbox,
            },
            "passwords": {"argon2_memory_cost": 8192, "argon2_time_cost": 1},
        },
    )


def clean_env() -> dict[str, str]:
    """This environment without anything resetd would read as configuration."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("RESETD_") and k not in TUTORIAL_ENV
    }


async def run_cli(
    *args: str, timeout: float = 20.0, umask: int = -1, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run ``python -m resetd ARGS`` (with ``umask``, default this process's, and
    ``stdin`` as its input); returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "resetd",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
        umask=umask,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Server:
    """``python -m resetd serve --config PATH``, one run at a time, output in files.

    ``umask`` (default: this process's) is the one the server starts with.
    """

    def __init__(self, config: Path, workdir: Path, *, umask: int = -1) -> None:
        self.config = config
        self.workdir = workdir
        self.umask = umask
        self.runs = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.smtp_port = 0

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"serve-{self.runs}.out"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"serve-{self.runs}.err"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        """Everything every run so far wrote to stderr (the log)."""
        return "".join(
            (self.workdir / f"serve-{n}.err").read_text(encoding="utf-8")
            for n in range(1, self.runs + 1)
        )

    async def start(self, timeout: float = 15.0) -> str:
        """Start and wait for the banner; returns the banner's text."""
        assert self.proc is None or self.proc.returncode is not None, "already running"
        self.runs += 1
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "resetd",
                "serve",
                "--config",
                str(self.config),
                stdout=out,
                stderr=err,
                env=clean_env(),
                umask=self.umask,
            )
        deadline = time.monotonic() + timeout
        while True:
            text = self.stdout_path.read_text(encoding="utf-8")
            match = BANNER_PORT_RE.search(text)
            if match and "Press Ctrl+C" in text:
                self.port = int(match.group(1))
                smtp = BANNER_SMTP_RE.search(text)
                self.smtp_port = int(smtp.group(1)) if smtp else 0
                return text
            if self.proc.returncode is not None or time.monotonic() > deadline:
                await self.kill()
                raise AssertionError(
                    f"resetd serve did not start:\n{self.stderr_path.read_text(encoding='utf-8')}"
                )
            await asyncio.sleep(0.05)

    async def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            raise

    async def kill(self) -> int:
        """SIGKILL (if still running) and reap; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        return await self.proc.wait()


async def request_reset_over_http(base_url: str, email: str) -> int:
    """GET the form (for its CSRF token, cookies kept), POST it; returns the status."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for a bare IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{base_url}/reset_password_request") as resp:
            match = CSRF_RE.search(await resp.text())
            assert match, f"no CSRF token in the form (status {resp.status})"
        async with http.post(
            f"{base_url}/reset_password_request",
            data={"csrf_token": match.group(1), "email": email},
            allow_redirects=False,
        ) as resp:
            return resp.status


def outbox_rows(db_path: Path | str) -> list[dict[str, Any]]:
    """The outbox table as another process sees it right now: of the SQLite
    file ``db_path``, or of the PostgreSQL database at that url."""
    if isinstance(db_path, str):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(db_path, row_factory=dict_row) as pg:
            return pg.execute(
                "SELECT id, recipient, status, attempts, last_error, claimed_until, claimed_by "
                "FROM outbox "
                "ORDER BY id"
            ).fetchall()
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT id, recipient, status, attempts, last_error, claimed_until, claimed_by "
            "FROM outbox "
            "ORDER BY id"
        ).fetchall()
        return [dict(r) for r in rows]


DbTarget = Path | str  # a SQLite file, or a PostgreSQL database's url


def db_target(database_section: dict[str, Any]) -> DbTarget:
    """What outbox_rows and add_users take for a test's ``[database]``."""
    url = database_section.get("url")
    return str(url) if url else Path(database_section["path"])


def database_of(app_config: Any) -> dict[str, str]:
    """``[database]`` naming the same database as ``app_config`` (a Config), on
    either engine: for a CLI run beside a test's app."""
    database = app_config.database
    return {"url": database.url} if database.engine == "postgresql" else {"path": database.path}
