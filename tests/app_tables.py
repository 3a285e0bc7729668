"""An application's users table as its own code may have filled it: any text in
any column (two spellings of one address, line breaks in a username, bytes that
are not UTF-8), written with plain sqlite3, and resetd pointed at it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from werkzeug.security import generate_password_hash

from resetd.app import create_app

from .helpers import GOOD_PASSWORD, ConfigFactory
from .relays import Relay

Row = tuple[str, str | bytes] | tuple[str, str | bytes, str]


def make_users_table(path: Path, rows: Sequence[Row]) -> None:
    """(username, email[, password]) rows, passwords (GOOD_PASSWORD unless given)
    hashed by Werkzeug; an email given as bytes is stored as TEXT holding exactly
    those bytes."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "CREATE TABLE user (id INTEGER PRIMARY KEY, username VARCHAR(64),"
            " email VARCHAR(120), password_hash VARCHAR(256))"
        )
        for username, email, *password in rows:
            pw = generate_password_hash(password[0] if password else GOOD_PASSWORD)
            value = "CAST(? AS TEXT)" if isinstance(email, bytes) else "?"
            conn.execute(
                f"INSERT INTO user (username, email, password_hash) VALUES (?, {value}, ?)",
                (username, email, pw),
            )
        conn.commit()
    finally:
        conn.close()


async def client_over_table(
    aiohttp_client: Any,
    make_config: ConfigFactory,
    relay: Relay,
    tmp_path: Path,
    rows: Sequence[Row],
) -> Any:
    """resetd over a fresh app table holding ``rows``, mailing through ``relay``."""
    app_db = tmp_path / "app.db"
    make_users_table(app_db, rows)
    cfg = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port, "retry_base": 0.1, "backoff_cap": 0.5},
        users={"store": "sqlite", "path": str(app_db)},
    )
    return await aiohttp_client(create_app(cfg))
