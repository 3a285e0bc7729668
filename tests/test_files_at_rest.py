"""Every file resetd creates is its user's alone (0600), whatever the umask.

``resetd serve`` runs as a real process with umask 022 (the usual default, under
which SQLite made resetd.db, its -wal/-shm and the inbox's files 0644, readable
by any local user); the modes are read from disk while it runs. Files that
already exist with wider modes are left alone but named in a warning at start.
"""

from __future__ import annotations

import smtplib
import ssl
import stat
from pathlib import Path
from typing import Any

from .helpers import TEST_SECRET, eventually
from .processes import Server, request_reset_over_http, run_cli, write_config

UMASK = 0o022


def config_in(tmp_path: Path, data: Path) -> Path:
    return write_config(
        tmp_path / "resetd.toml",
        {
            "server": {"port": 0, "secret_key": TEST_SECRET},
            "database": {"path": str(data / "resetd.db")},
            "mail": {"server": "127.0.0.1", "port": 0},
            "dev_inbox": {
                "enabled": True,
                "smtp_port": 0,
                "path": str(data / "inbox.db"),
                "starttls": True,
            },
            "passwords": {"argon2_memory_cost": 8192, "argon2_time_cost": 1},
        },
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def send_over_starttls(port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=context)
        smtp.sendmail("app@example.com", ["susan@example.com"], b"Subject: Hi\r\n\r\nbody\r\n")


async def test_every_file_serve_creates_is_0600_under_umask_022(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(config_in(tmp_path, data), tmp_path, umask=UMASK)
    await server.start()
    try:
        # Write to both databases while the server holds them open (WAL and SHM exist).
        assert await request_reset_over_http(server.base_url, "susan@example.com") == 303
        send_over_starttls(server.smtp_port)

        async def stored() -> bool:
            return "dev inbox: captured #1" in server.logs()

        await eventually(stored)
        created = {p.name: mode(p) for p in data.iterdir()}
    finally:
        await server.kill()
    expected = {
        "resetd.db",
        "resetd.db-wal",
        "resetd.db-shm",
        "inbox.db",
        "inbox.db-wal",
        "inbox.db-shm",
        "inbox.db.cert.pem",
        "inbox.db.key.pem",
    }
    assert expected <= set(created), created
    assert {name: m for name, m in created.items() if m != 0o600} == {}
    assert mode(data) == 0o700


async def test_user_add_creates_the_database_0600_under_umask_022(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = config_in(tmp_path, data)
    code, _, err = await run_cli(
        "user",
        "add",
        "--email",
        "susan@example.com",
        "--username",
        "susan",
        "--password-stdin",
        "--config",
        str(config),
        umask=UMASK,
        stdin=b"correct horse battery staple\n",
    )
    assert code == 0, err
    files: dict[str, Any] = {p.name: mode(p) for p in data.iterdir()}
    assert "resetd.db" in files
    assert {name: m for name, m in files.items() if m != 0o600} == {}


async def test_existing_files_open_to_others_are_named_in_a_warning_at_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    exposed_db = data / "resetd.db"
    exposed_db.touch(mode=0o644)  # an empty file is a new SQLite database
    exposed_db.chmod(0o644)
    server = Server(config_in(tmp_path, data), tmp_path, umask=UMASK)
    await server.start()  # makes the TLS key; the inbox database is new, so 0600
    await server.terminate()
    key = data / "inbox.db.key.pem"
    key.chmod(0o640)
    await server.start()  # a warning is no refusal
    await server.terminate()
    first, second = ((tmp_path / f"serve-{n}.err").read_text(encoding="utf-8") for n in (1, 2))
    assert f"{exposed_db} is open to other users (mode 0644)" in first
    assert f"chmod 600 {exposed_db}" in first
    assert f"{key} is open to other users (mode 0640)" in second
    assert "inbox.db is open" not in first + second
    # Left as the operator set it: a warning, not a silent chmod.
    assert mode(exposed_db) == 0o644


async def test_every_directory_made_for_a_new_path_is_0700_under_umask_000(
    tmp_path: Path,
) -> None:
    """``os.makedirs(mode=0o700)`` makes only the last directory 0700: under umask
    000 the ones above it came out 0777, and anyone could replace the database."""
    db_path = tmp_path / "srv" / "resetd" / "db" / "resetd.db"
    inbox_path = tmp_path / "var" / "inbox" / "inbox.db"
    config = config_in(tmp_path, tmp_path)
    config.write_text(
        config.read_text()
        .replace(str(tmp_path / "resetd.db"), str(db_path))
        .replace(str(tmp_path / "inbox.db"), str(inbox_path))
    )
    code, _, err = await run_cli(
        "user", "add", "--email", "susan@example.com", "--username", "susan",
        "--password-stdin", "--config", str(config),
        umask=0o000, stdin=b"correct horse battery staple\n",
    )  # fmt: skip
    assert code == 0, err
    made = [tmp_path / "srv", tmp_path / "srv" / "resetd", db_path.parent]
    assert {str(d): oct(mode(d)) for d in made} == {str(d): "0o700" for d in made}
    assert mode(db_path) == 0o600

    server = Server(config, tmp_path, umask=0o000)
    await server.start()
    try:
        send_over_starttls(server.smtp_port)

        async def stored() -> bool:
            return "dev inbox: captured #1" in server.logs()

        await eventually(stored)
    finally:
        await server.kill()
    made = [tmp_path / "var", inbox_path.parent]
    assert {str(d): oct(mode(d)) for d in made} == {str(d): "0o700" for d in made}
    assert {p.name: oct(mode(p)) for p in inbox_path.parent.iterdir() if mode(p) != 0o600} == {}
