"""Step 1½, in the background: queued request → account? → token + mail in the outbox.

For each batch of queued requests the addresses are looked up and, for each
known, in-limit address, a token minted and a mail rendered; then one
transaction claims the requests, records the tokens in the ledger, puts the
mails in the outbox and writes the audit trail. A crash before that commit
leaves the requests queued; after it, the mails are in the outbox: never
neither.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import NamedTuple

from aiohttp import web

from . import keys
from .audit import AuditLog
from .outbox_store import OutboxStore, Queued
from .request_queue import QueuedRequest, RequestQueue
from .tokens import Claims, TokenLedger
from .users import fingerprint

log = logging.getLogger(__name__)

YIELD_EVERY = 4  # mails rendered between two turns of the event loop


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
        """Turn up to BATCH queued requests into mail; returns how many were pending.

        The lookups, tokens and mails are made first, outside any transaction; one
        transaction in the database's writer thread then claims the requests and
        records the tokens, the mails and the audit rows of those it claimed. A
        request another instance claimed meanwhile is skipped, and the token
        minted for it, never recorded in the ledger, is worthless.
        """
        app = self.app
        cfg = app[keys.config]
        codec, composer = app[keys.codec], app[keys.composer]
        pending = await self.queue.pending(self.BATCH)
        if not pending:
            return 0
        wanted = sorted({r.email_norm for r in pending if r.email_norm and not r.limited})
        accounts = await app[keys.users].find_many_by_email(wanted)
        outcomes: list[Outcome] = []
        minted = 0
        for req in pending:
            user = None if req.limited else accounts.get(req.email_norm)
            if req.limited or user is None:
                why = "rate_limited" if req.limited else "unknown_address"
                outcomes.append(Outcome(req, why, None, None, None))
                continue
            minted += 1
            if minted % YIELD_EVERY == 0:
                # A token and a mail cost ~0.15 ms of loop time; a batch of known
                # addresses would otherwise hold the loop for ~20 ms.
                await asyncio.sleep(0)
            token, claims = codec.mint(user.id, fingerprint(user))
            mail = composer.reset_mail(user.username, user.email, token, cfg.reset.token_ttl)
            # Undelivered when the token expires, the mail is pointless: fail it then.
            queued = Queued(mail, user.id, float(claims.expires_at))
            outcomes.append(Outcome(req, "mail_queued", user.id, claims, queued))
        queued_mails = await app[keys.db].writer.run(_record, outcomes, time.time())
        if queued_mails:
            app[keys.outbox_worker].wake()
        return len(pending)


class Outcome(NamedTuple):
    """What one queued request came to, before it is claimed and recorded."""

    request: QueuedRequest
    outcome: str  # mail_queued, unknown_address or rate_limited
    user_id: int | str | None
    claims: Claims | None
    mail: Queued | None


def _record(conn: sqlite3.Connection, outcomes: list[Outcome], now: float) -> int:
    """Claim the requests and record what came of those claimed, in one transaction
    (in the database's writer thread); returns how many mails were queued."""
    claimed = RequestQueue.claim(conn, [o.request.id for o in outcomes], now)
    mine = [o for o in outcomes if o.request.id in claimed]
    TokenLedger.record_many(conn, [o.claims for o in mine if o.claims is not None])
    mails = [o.mail for o in mine if o.mail is not None]
    OutboxStore.enqueue_many(conn, "reset", mails, now)
    AuditLog.record_many(
        conn,
        [
            ("reset_requested", o.outcome, o.user_id, o.request.client_ip, o.request.user_agent)
            for o in mine
        ],
    )
    return len(mails)
