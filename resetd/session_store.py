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
from collections.abc import Callable

from .config import ServerConfig
from .storage.sessions import Ended, SessionRows

# Seconds between two purges of ended sessions by one process.
PURGE_EVERY = 60.0


def _row_id(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionStore:
    def __init__(self, rows: SessionRows, cfg: ServerConfig, clock: Callable[[], float]) -> None:
        self.rows = rows
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
        purge = None
        if now - self._last_purge >= PURGE_EVERY:
            self._last_purge = now
            purge = self._ended(now)
        await self.rows.create(_row_id(sid), str(user_id), remember, now, purge)
        return sid

    def _ended(self, now: float) -> Ended:
        idle, age = self.lifetimes(False)
        r_idle, r_age = self.lifetimes(True)
        return Ended(now - idle, now - age, now - r_idle, now - r_age)

    async def check(self, sid: str, user_id: int) -> bool:
        """Whether ``sid`` is a live session of ``user_id``; an ended one is deleted.

        Counts as activity: last_seen moves on (at most once per touch interval)."""
        row_id = _row_id(sid)
        row = await self.rows.get(row_id)
        if row is None or row.user_id != str(user_id):
            return False
        now = self.clock()
        idle, max_age = self.lifetimes(row.remember)
        if now - row.last_seen >= idle or now - row.created_at >= max_age:
            await self.rows.delete(row_id)
            return False
        if now - row.last_seen >= self._touch_every(idle):
            await self.rows.touch(row_id, now)
        return True

    async def end(self, sid: str) -> None:
        """Sign this session out, everywhere."""
        await self.rows.delete(_row_id(sid))
