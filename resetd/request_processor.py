"""Step 1½, in the background: queued request → account? → token + mail in the outbox.

For each batch, one transaction claims the queued requests, looks the
addresses up, mints a token (recorded in the ledger) and renders a mail for
each known, in-limit address, puts those mails in the outbox and writes the
audit trail. A crash before the commit leaves the requests queued; after it,
the mails are in the outbox: never neither.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from . import keys
from .audit import AuditLog
from .outbox_store import OutboxStore, Queued
from .request_queue import RequestQueue
from .tokens import Claims, TokenLedger
from .users import fingerprint

log = logging.getLogger(__name__)


class RequestProcessor:
    BATCH = 128

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
                if await self.process_batch() == self.BATCH:
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

    async def process_batch(self) -> int:
        """Turn up to BATCH queued requests into mail; returns how many were claimed."""
        app = self.app
        cfg = app[keys.config]
        codec, composer = app[keys.codec], app[keys.composer]
        queued = 0
        async with app[keys.db].transaction() as conn:
            claimed = await RequestQueue.claim(conn, self.BATCH)
            if not claimed:
                return 0
            wanted = sorted({r.email_norm for r in claimed if r.email_norm and not r.limited})
            accounts = await app[keys.users].find_many_by_email(wanted)
            events = []
            minted: list[Claims] = []
            mails: list[Queued] = []
            for req in claimed:
                user = None if req.limited else accounts.get(req.email_norm)
                if req.limited:
                    outcome = "rate_limited"
                elif user is None:
                    outcome = "unknown_address"
                else:
                    token, claims = codec.mint(user.id, fingerprint(user))
                    minted.append(claims)
                    mail = composer.reset_mail(
                        user.username, user.email, token, cfg.reset.token_ttl
                    )
                    # Undelivered when the token expires, the mail is pointless: fail it then.
                    mails.append(Queued(mail, user.id, float(claims.expires_at)))
                    outcome = "mail_queued"
                events.append(
                    (
                        "reset_requested",
                        outcome,
                        user.id if user else None,
                        req.client_ip,
                        req.user_agent,
                    )
                )
            if mails:
                await TokenLedger.record_many(conn, minted)
                await OutboxStore.enqueue_many(conn, "reset", mails, time.time())
                queued = len(mails)
            await AuditLog.record_many(conn, events)
        if queued:
            app[keys.outbox_worker].wake()
        return len(claimed)
