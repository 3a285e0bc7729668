"""``resetd user``: add and list accounts from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from resetd.db import Database
from resetd.reset.compose import ComposedMail
from resetd.storage.sqlite.users import SqliteUsers

from .sqlite_rows import enqueue_mail
from .test_config import run_cli

PASSWORD = "correct horse battery staple\n"


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "resetd.toml"
    path.write_text(
        f'[server]\nsecret_key = "{"k" * 32}"\n[database]\npath = "{tmp_path / "r.db"}"\n'
        "[passwords]\nargon2_memory_cost = 8192\nargon2_time_cost = 1\n"
    )
    return path


def user_add(
    cfg: str, email: str, username: str, password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    """``resetd user add … --password-stdin`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "resetd", "user", "add", "--email", email,
         "--username", username, "--password-stdin", "--config", cfg],
        input=password, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_user_add_then_list(tmp_path: Path) -> None:
    cfg = str(config_file(tmp_path))
    add = user_add(cfg, "susan@example.com", "susan")
    assert add.returncode == 0, add.stderr
    assert "susan" in add.stdout
    listed = run_cli("user", "list", "--config", cfg, cwd=tmp_path)
    assert listed.returncode == 0
    assert "susan" in listed.stdout and "susan@example.com" in listed.stdout


def test_duplicate_email_or_username_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    cfg = str(config_file(tmp_path))
    assert user_add(cfg, "susan@example.com", "susan").returncode == 0
    dup_email = user_add(cfg, "SUSAN@example.com", "other")
    assert dup_email.returncode == 1
    assert "already exists" in dup_email.stderr and "email" in dup_email.stderr
    dup_user = user_add(cfg, "other@example.com", "Susan")
    assert dup_user.returncode == 1
    assert "username" in dup_user.stderr
    assert "Traceback" not in dup_email.stderr + dup_user.stderr


def test_weak_password_is_refused(tmp_path: Path) -> None:
    result = user_add(str(config_file(tmp_path)), "a@example.com", "a", "short\n")
    assert result.returncode == 1
    assert "at least 15 characters" in result.stderr


def test_user_add_refuses_control_characters_in_usernames(tmp_path: Path) -> None:
    cfg = str(config_file(tmp_path))
    for n, name in enumerate(
        ["Eve\r\nX-Injected: yes", "Blank\n\nline", "tab\there", "esc\x1b[2J", "line\u2028sep"]
    ):
        result = user_add(cfg, f"u{n}@example.com", name)
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.startswith("resetd: --username: must not contain control")
        assert "Traceback" not in result.stderr
    listed = run_cli("user", "list", "--config", cfg, cwd=tmp_path)
    assert "no users" in listed.stdout


def test_user_add_bounds_username_length(tmp_path: Path) -> None:
    cfg = str(config_file(tmp_path))
    too_long = user_add(cfg, "a@example.com", "x" * 65)
    assert too_long.returncode == 2
    assert "resetd: --username: must be at most 64 characters (got 65)" in too_long.stderr
    assert user_add(cfg, "b@example.com", "x" * 1200).returncode == 2
    assert user_add(cfg, "c@example.com", "y" * 64).returncode == 0
    listed = run_cli("user", "list", "--config", cfg, cwd=tmp_path)
    assert "y" * 64 in listed.stdout and "x" * 65 not in listed.stdout


async def test_the_account_store_itself_refuses_what_user_add_refuses(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "r.db"))
    try:
        store = SqliteUsers(db)
        for name in ["Eve\r\nX-Injected: yes", "x" * 65, "   "]:
            with pytest.raises(ValueError, match=r"^username must"):
                await store.add("eve@example.com", name, "hash")
        assert (await store.add("eve@example.com", "  eve ", "hash")).username == "eve"
    finally:
        await db.close()


async def test_a_reader_that_goes_away_early_gets_no_traceback(tmp_path: Path) -> None:
    """``resetd outbox | head``: the pipe closes before everything is written.
    The command ends quietly (exit 1) instead of printing BrokenPipeError."""
    cfg = config_file(tmp_path)
    db = await Database.open(str(tmp_path / "r.db"))
    try:
        async with db.transaction() as conn:
            for n in range(300):  # more than a pipe holds, and than head shows
                to = f"user{n}@example.com"
                data = f"To: {to}\r\nSubject: Hi\r\n\r\nhello\r\n".encode()
                await enqueue_mail(conn, "reset", ComposedMail("a@b.test", to, "Hi", data))
    finally:
        await db.close()
    for args in (["outbox", "--all"], ["user", "list"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before anything is written
        try:
            done = subprocess.run(
                [sys.executable, "-m", "resetd", *args, "--config", str(cfg)],
                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
            )  # fmt: skip
        finally:
            os.close(write_end)
        assert done.returncode == 1, (args, done.returncode, done.stderr)
        assert done.stderr == "", (args, done.stderr)
