"""``resetd user``: add and list accounts from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .test_config import run_cli

PASSWORD = "correct horse battery staple\n"


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "resetd.toml"
    path.write_text(
        f'[server]\nsecret_key = "{"k" * 32}"\n[database]\npath = "{tmp_path / "r.db"}"\n'
        "[passwords]\nargon2_memory_cost = 8192\nargon2_time_cost = 1\n"
    )
    return path


def test_user_add_then_list(tmp_path: Path) -> None:
    cfg = str(config_file(tmp_path))
    add = subprocess.run(
        [
            sys.executable,
            "-m",
            "resetd",
            "user",
            "add",
            "--email",
            "susan@example.com",
            "--username",
            "susan",
            "--password-stdin",
            "--config",
            cfg,
        ],
        input=PASSWORD,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert add.returncode == 0, add.stderr
    assert "susan" in add.stdout
    listed = run_cli("user", "list", "--config", cfg, cwd=tmp_path)
    assert listed.returncode == 0
    assert "susan" in listed.stdout and "susan@example.com" in listed.stdout


def test_duplicate_email_or_username_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    cfg = str(config_file(tmp_path))

    def add(email: str, username: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "resetd",
                "user",
                "add",
                "--email",
                email,
                "--username",
                username,
                "--password-stdin",
                "--config",
                cfg,
            ],
            input=PASSWORD,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert add("susan@example.com", "susan").returncode == 0
    dup_email = add("SUSAN@example.com", "other")
    assert dup_email.returncode == 1
    assert "already exists" in dup_email.stderr and "email" in dup_email.stderr
    dup_user = add("other@example.com", "Susan")
    assert dup_user.returncode == 1
    assert "username" in dup_user.stderr
    assert "Traceback" not in dup_email.stderr + dup_user.stderr


def test_weak_password_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "resetd",
            "user",
            "add",
            "--email",
            "a@example.com",
            "--username",
            "a",
            "--password-stdin",
            "--config",
            str(config_file(tmp_path)),
        ],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "at least 15 characters" in result.stderr
