"""Step 1: "forgot your password?" — the form, and the intake that queues requests.

The request handler only validates, normalises, counts limits and queues a
row in ``reset_requests``; it never looks the address up. Known, unknown,
malformed and rate-limited addresses therefore cost the same work and get the
same redirect. The user lookup and the mail happen later, in
:mod:`resetd.reset.processor`.

Queuing is group-committed: concurrent requests share one short write
transaction, run in one hand-off to a writer thread, and each response waits
until its own row is committed, so nothing acknowledged can be lost.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass

from aiohttp import web

from .. import keys
from ..clientinfo import client_ip, user_agent
from ..config import LimitsConfig
from ..db import BatchWriter
from ..limits import Hit, RateLimiter
from ..render import render
from ..users import normalize
from .queue import RequestQueue

log = logging.getLogger(__name__)

SENT_MESSAGE = (
    "Check your email for the instructions to reset your password. If the address belongs "
    "to an account, a link is on its way."
)
MAX_EMAIL_LENGTH = 254
MAX_BATCH = 256
IN_FLIGHT = 2


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
    # More than one `email` value (GitLab CVE-2023-7028) or an implausible one is
    # queued like an unknown address: same work, same answer, nothing sent.
    plausible = typed is not None and len(typed) <= MAX_EMAIL_LENGTH
    email = typed.strip() if typed is not None and plausible else None
    email_norm = normalize(email) if email is not None else ""
    retry_after = await request.app[keys.intake].submit(
        Submission(email_norm, client_ip(request), user_agent(request), email)
    )
    if retry_after is not None:
        raise web.HTTPTooManyRequests(
            headers={"Retry-After": str(retry_after)},
            text="Too many password reset requests from your network; please wait and retry.",
        )
    # The notice rides in the URL, not the session: the answer sets no cookie and
    # costs no session write, and it is the same for every address.
    # Returned, not raised: building an HTTPException costs more than the redirect.
    return web.Response(
        status=303, headers={"Location": notice_url(request.app[keys.config].login_location)}
    )


def notice_url(login_location: str) -> str:
    """Where to send the user after a request: resetd's own sign-in page shows the
    notice; a host application's page is left as configured."""
    if login_location == "/login":
        return "/login?notice=reset-sent"
    return login_location


@dataclass(frozen=True)
class Submission:
    email_norm: str
    client_ip: str
    user_agent: str
    # As typed, trimmed: among accounts an app stored under two spellings of one
    # address, the one stored exactly so gets the mail.
    email: str | None = None


class Intake:
    """Group commit for reset requests: one transaction per batch of concurrent requests."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._pending: list[tuple[Submission, asyncio.Future[int | None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._commits: set[asyncio.Task[None]] = set()
        self._writer: BatchWriter | None = None

    async def start(self) -> None:
        # The database's writer thread: one hand-off per batch, queued behind the
        # other hot writes instead of contending with them inside SQLite.
        self._writer = self.app[keys.db].writer
        self._task = asyncio.create_task(self._run(), name="reset-request-intake")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._commits, return_exceptions=True)
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(web.HTTPServiceUnavailable())

    async def submit(self, submission: Submission) -> int | None:
        """Queue durably; returns None, or Retry-After seconds when the IP is over its limit."""
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._pending.append((submission, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        # Up to IN_FLIGHT batches at once: the next one waits in the writer thread's
        # queue, not for the loop to notice the previous commit, so the thread starts
        # it the moment the previous one ends.
        slots = asyncio.Semaphore(IN_FLIGHT)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await slots.acquire()
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                if not batch:
                    slots.release()
                    break
                task = asyncio.create_task(self._commit(batch, slots))
                self._commits.add(task)
                task.add_done_callback(self._commits.discard)

    async def _commit(
        self,
        batch: list[tuple[Submission, asyncio.Future[int | None]]],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            verdicts = await self._write([s for s, _ in batch])
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(web.HTTPServiceUnavailable())
            raise
        except Exception as exc:  # the database is unwell: fail these requests, not the loop
            log.exception("reset requests: could not queue %d request(s)", len(batch))
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            slots.release()
        for (_, fut), verdict in zip(batch, verdicts, strict=True):
            if not fut.done():
                fut.set_result(verdict)
        self.app[keys.request_processor].wake()

    async def _write(self, batch: list[Submission]) -> list[int | None]:
        assert self._writer is not None
        return await self._writer.run(
            _queue_batch, batch, self.app[keys.config].limits, time.time()
        )


def _queue_batch(
    conn: sqlite3.Connection, batch: list[Submission], limits: LimitsConfig, now: float
) -> list[int | None]:
    """One transaction (in the BatchWriter thread): count per-IP hits, count
    per-address hits for the admitted requests, queue them. Returns the per-IP
    verdicts (None, or Retry-After seconds) in order."""
    ip_verdicts = RateLimiter.hit_many(
        conn,
        [
            Hit(f"ip:{s.client_ip}", limits.requests_per_ip, limits.requests_per_ip_window)
            for s in batch
        ],
        now,
    )
    admitted = [s for s, v in zip(batch, ip_verdicts, strict=True) if v is None]
    addr_verdicts = RateLimiter.hit_many(
        conn,
        [
            Hit(f"addr:{s.email_norm}", limits.mails_per_address, limits.mails_per_address_window)
            for s in admitted
        ],
        now,
    )
    RequestQueue.add_many(
        conn,
        [
            (s.email_norm, s.email, s.client_ip, s.user_agent, v is not None)
            for s, v in zip(admitted, addr_verdicts, strict=True)
        ],
        now,
    )
    return ip_verdicts
