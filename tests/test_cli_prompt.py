"""``resetd user add`` without --password-stdin asks on the terminal, without echo."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

from .test_cli import config_file

SECRET = "correct horse battery staple"


def _read_until(fd: int, marker: bytes, timeout: float = 30.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_password_prompt_does_not_echo(tmp_path: Path) -> None:
    cfg = str(config_file(tmp_path))
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes resetd on the pseudo-terminal
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "resetd",
                "user",
                "add",
                "--email",
                "tty@example.com",
                "--username",
                "tty",
                "--config",
                cfg,
            ],
        )
    try:
        output = _read_until(fd, b"Password: ")
        os.write(fd, SECRET.encode() + b"\n")
        output += _read_until(fd, b"Repeat password: ")
        os.write(fd, SECRET.encode() + b"\n")
        output += _read_until(fd, b"added user")
        output += _read_until(fd, b"\n", timeout=5)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"added user" in output
    assert SECRET.encode() not in output  # typed, never shown
