"""Rows written straight into a SQLite storage's tables, and its connection:
what tests arrange or inspect beneath the storage's interfaces."""

from __future__ import annotations

import time

import aiosqlite
from aiohttp import web

from resetd import keys
from resetd.db import Database
from resetd.reset.compose import ComposedMail
from resetd.reset.tokens import Claims, TokenLedger, issued
from resetd.storage.outbox import NewMail
from resetd.storage.sqlite import SqliteStorage
from resetd.storage.sqlite import audit as audit_rows
from resetd.storage.sqlite import ledger as ledger_rows
from resetd.storage.sqlite import outbox as outbox_rows


def app_db(app: web.Application) -> Database:
    """The app's SQLite database (the tests run the SQLite storage)."""
    storage = app[keys.storage]
    assert isinstance(storage, SqliteStorage)
    return storage.db


async def enqueue_mail(
    conn: aiosqlite.Connection,
    kind: str,
    mail: ComposedMail,
    now: float | None = None,
    *,
    user_id: int | str | None = None,
    expires_at: float | None = None,
) -> int:
    """Queue ``mail`` in the caller's transaction; returns its outbox id."""
    new = NewMail(mail, user_id, expires_at)
    return await outbox_rows.enqueue(conn, kind, new, time.time() if now is None else now)


async def record_token(conn: aiosqlite.Connection, claims: Claims) -> None:
    """Put a minted token in the ledger, in the caller's transaction."""
    await conn.execute(
        "INSERT INTO reset_tokens (jti, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
        tuple(issued(claims)),
    )


async def audit_row(
    conn: aiosqlite.Connection,
    event: str,
    outcome: str,
    *,
    user_id: int | str | None = None,
    client_ip: str | None = None,
    user_agent: str | None = None,
) -> None:
    """One audit row, in the caller's transaction."""
    await audit_rows.record(conn, time.time(), (event, outcome, user_id, client_ip, user_agent))


def ledger_of(db: Database) -> TokenLedger:
    return TokenLedger(ledger_rows.SqliteLedger(db), db.now)


async def consume_token(conn: aiosqlite.Connection, jti: str, now: float) -> bool:
    """Use a token, in the caller's transaction, as a password change does."""
    return await ledger_rows.consume(conn, jti, now)
