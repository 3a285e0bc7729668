"""Signed-in sessions on the server: one row per sign-in.

The session cookie (encrypted, :mod:`resetd.sessions`) carries a random id;
the row, keyed by the id's SHA-256, holds the account, when it signed in, when
it was last seen and whether "remember me" was ticked. A cookie is signed in
only while its row exists and is within both lifetimes:

- idle: ``[server] session_idle`` (``session_remember_idle`` when remembered)
  since the last request that looked at the session;
- absolute: ``[server] session_max_age`` (``session_remember_max_age``) since
  signing in, however active.

Lifetimes are read from the configuration on every check, so shortening them
applies to sessions already open. Signing out deletes the row, which ends the
session on every instance and after any restart, whatever copies of the cookie
exist; a password reset deletes all rows of its account.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Callable

import aiosqlite

from .config import ServerConfig
from .db import Database

# Seconds between two purges of ended sessions by one process.
PURGE_EVERY = 60.0


def _row_id(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionStore:
    def __init__(self, db: Database, cfg: ServerConfig, clock: Callable[[], float]) -> None:
        self.db = db
        self.cfg = cfg
        self.clock = clock
        self._last_purge = float("-inf")

    def lifetimes(self, remember: bool) -> tuple[int, int]:
        """(idle, absolute) lifetime in seconds."""
        c = self.cfg
        if remember:
            return c.session_remember_idle, c.session_remember_max_age
        return c.session_idle, c.session_max_age

    def _touch_every(self, idle: int) -> float:
        # last_seen is written at most this often, not on every request; a session
        # may therefore end up to this much before its idle lifetime is over.
        return float(min(60, max(1, idle // 10)))

    async def create(self, user_id: int, remember: bool) -> str:
        """A new signed-in session; returns the id its cookie is to carry."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        purge = now - self._last_purge >= PURGE_EVERY
        if purge:
            self._last_purge = now
        await self.db.writer.run(
            self._create, _row_id(sid), str(user_id), remember, now, self._ended_where(now), purge
        )
        return sid

    def _ended_where(self, now: float) -> tuple[str, tuple[float, ...]]:
        idle, age = self.lifetimes(False)
        r_idle, r_age = self.lifetimes(True)
        return (
            "(remember = 0 AND (last_seen <= ? OR created_at <= ?)) "
            "OR (remember = 1 AND (last_seen <= ? OR created_at <= ?))",
            (now - idle, now - age, now - r_idle, now - r_age),
        )

    @staticmethod
    def _create(
        conn: sqlite3.Connection,
        row_id: str,
        user_id: str,
        remember: bool,
        now: float,
        ended: tuple[str, tuple[float, ...]],
        purge: bool,
    ) -> None:
        if purge:
            conn.execute(f"DELETE FROM sessions WHERE {ended[0]}", ended[1])
        conn.execute(
            "INSERT INTO sessions (id, user_id, remember, created_at, last_seen) "
            "VALUES (?, ?, ?, ?, ?)",
            (row_id, user_id, int(remember), now, now),
        )

    async def check(self, sid: str, user_id: int) -> bool:
        """Whether ``sid`` is a live session of ``user_id``; an ended one is deleted.

        Counts as activity: last_seen moves on (at most once per touch interval)."""
        row_id = _row_id(sid)
        row = await self.db.fetchone(
            "SELECT user_id, remember, created_at, last_seen FROM sessions WHERE id = ?",
            (row_id,),
        )
        if row is None or row["user_id"] != str(user_id):
            return False
        now = self.clock()
        idle, max_age = self.lifetimes(bool(row["remember"]))
        if now - row["last_seen"] >= idle or now - row["created_at"] >= max_age:
            await self.db.writer.run(_delete, row_id)
            return False
        if now - row["last_seen"] >= self._touch_every(idle):
            await self.db.writer.run(_touch, row_id, now)
        return True

    async def end(self, sid: str) -> None:
        """Sign this session out, everywhere."""
        await self.db.writer.run(_delete, _row_id(sid))

    @staticmethod
    async def end_all(conn: aiosqlite.Connection, user_id: int) -> None:
        """Sign out every session of ``user_id``, inside the caller's transaction."""
        await conn.execute("DELETE FROM sessions WHERE user_id = ?", (str(user_id),))


def _delete(conn: sqlite3.Connection, row_id: str) -> None:
    conn.execute("DELETE FROM sessions WHERE id = ?", (row_id,))


def _touch(conn: sqlite3.Connection, row_id: str, now: float) -> None:
    conn.execute(
        "UPDATE sessions SET last_seen = ? WHERE id = ? AND last_seen < ?", (now, row_id, now)
    )
