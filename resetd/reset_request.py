"""Step 1: "forgot your password?" — the form, and the background step that mails.

The request handler only validates, normalises, counts limits and queues a
row in ``reset_requests``; it does not look the address up. Known, unknown,
malformed and rate-limited addresses therefore cost the same work and get the
same redirect. The :class:`RequestProcessor`, owned by the app, turns queued
requests into mail: user lookup, token minting, rendering, and the outbox row
— all in one transaction, so a crash either leaves the request queued or the
mail queued, never neither.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiosqlite
from aiohttp import web

from . import keys
from .clientinfo import client_ip, user_agent
from .db import Database, Row
from .outbox import OutboxStore
from .render import render
from .sessions import flash
from .users import fingerprint, normalize

log = logging.getLogger(__name__)

SENT_MESSAGE = (
    "Check your email for the instructions to reset your password. If the address belongs "
    "to an account, a link is on its way."
)
MAX_EMAIL_LENGTH = 254


async def request_page(request: web.Request) -> web.StreamResponse:
    if request.method in ("GET", "HEAD"):
        return await render(request, "reset_password_request.html", {"email": ""})
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "POST"])
    form = await request.post()
    values = form.getall("email", [])
    typed = values[0] if len(values) == 1 and isinstance(values[0], str) else None
    if typed is not None and not typed.strip():
        return await render(
            request,
            "reset_password_request.html",
            {"email": "", "errors": {"email": "Enter the email address of your account."}},
            status=400,
        )
    cfg = request.app[keys.config]
    ip = client_ip(request)
    limiter = request.app[keys.limiter]
    # More than one `email` value (GitLab CVE-2023-7028) or an implausible one is
    # treated like an unknown address: same work, same answer, nothing sent.
    email_norm = normalize(typed) if typed is not None and len(typed) <= MAX_EMAIL_LENGTH else ""
    async with request.app[keys.db].transaction() as conn:
        retry_after = await limiter.hit(
            conn, f"ip:{ip}", cfg.limits.requests_per_ip, cfg.limits.requests_per_ip_window
        )
        if retry_after is None:
            over = await limiter.hit(
                conn,
                f"addr:{email_norm}",
                cfg.limits.mails_per_address,
                cfg.limits.mails_per_address_window,
            )
            await RequestQueue.add(conn, email_norm, ip, user_agent(request), over is not None)
    if retry_after is not None:
        raise web.HTTPTooManyRequests(
            headers={"Retry-After": str(retry_after)},
            text="Too many password reset requests from your network; please wait and retry.",
        )
    request.app[keys.request_processor].wake()
    await flash(request, SENT_MESSAGE)
    raise web.HTTPSeeOther(location=cfg.login_location)


class RequestQueue:
    """SQL for the ``reset_requests`` queue."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def add(
        conn: aiosqlite.Connection, email_norm: str, ip: str, agent: str, limited: bool
    ) -> None:
        await conn.execute(
            "INSERT INTO reset_requests (email_norm, client_ip, user_agent, created_at, limited)"
            " VALUES (?, ?, ?, ?, ?)",
            (email_norm, ip, agent, time.time(), int(limited)),
        )

    async def pending(self, limit: int) -> list[Row]:
        return await self.db.fetchall(
            "SELECT id, email_norm, client_ip, user_agent, limited FROM reset_requests "
            "WHERE done_at IS NULL ORDER BY id LIMIT ?",
            (limit,),
        )

    @staticmethod
    async def done(conn: aiosqlite.Connection, request_id: int) -> bool:
        """Mark processed; False if another worker got there first."""
        cur = await conn.execute(
            "UPDATE reset_requests SET done_at = ? WHERE id = ? AND done_at IS NULL",
            (time.time(), request_id),
        )
        return cur.rowcount == 1

    async def purge(self, older_than: float) -> int:
        return await self.db.execute(
            "DELETE FROM reset_requests WHERE done_at IS NOT NULL AND done_at < ?", (older_than,)
        )


class RequestProcessor:
    """Background step: queued request → (account?) → token + mail in the outbox."""

    BATCH = 64

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.queue = RequestQueue(app[keys.db])
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reset-request-processor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        last_purge = 0.0
        while True:
            try:
                rows = await self.queue.pending(self.BATCH)
                for row in rows:
                    await self.process(row)
                if len(rows) == self.BATCH:
                    continue
                if time.time() - last_purge > 3600:
                    last_purge = time.time()
                    await self.queue.purge(time.time() - 86400)
                    await self.app[keys.limiter].purge()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reset requests: processing error; retrying in 1 s")
                await asyncio.sleep(1)

    async def process(self, row: Row) -> None:
        app = self.app
        users, db = app[keys.users], app[keys.db]
        audit = app[keys.audit]
        user = None if row["limited"] or not row["email_norm"] else (
            await users.find_by_email(row["email_norm"])
        )
        queued = False
        async with db.transaction() as conn:
            if not await RequestQueue.done(conn, row["id"]):
                return
            if row["limited"]:
                outcome = "rate_limited"
            elif user is None:
                outcome = "unknown_address"
            else:
                token, claims = app[keys.codec].mint(user.id, fingerprint(user))
                await app[keys.ledger].record(conn, claims)
                msg = app[keys.composer].reset_mail(
                    user.username, user.email, token, app[keys.config].reset.token_ttl
                )
                await OutboxStore.enqueue(conn, "reset", msg)
                outcome, queued = "mail_queued", True
            await audit.record(
                conn,
                "reset_requested",
                outcome,
                user_id=user.id if user is not None else None,
                client_ip=row["client_ip"],
                user_agent=row["user_agent"],
            )
        if queued:
            app[keys.outbox_worker].wake()
