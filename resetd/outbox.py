"""Step 3: the durable outbox and the worker that delivers it to the relay.

A mail becomes a row in ``outbox`` inside the same transaction as the event
that caused it, so once that commits nothing can lose it. The worker, owned by
the app's lifecycle, claims due rows with a lease (``claimed_until``), hands
them to a bounded pool of reused SMTP connections and records the outcome:

* relay accepted → ``sent`` (never sent again);
* 5xx reply → ``failed`` with the server's reply (no retry storm);
* connection error, timeout, 4xx → retried with exponential backoff and jitter
  until ``[mail] max_age``, then ``failed``.

A crash (even ``kill -9``) leaves rows ``pending``; the next start releases
their leases and sends them: at-least-once, and in practice exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr

import aiosmtplib
import aiosqlite

from .config import MailConfig
from .db import Database, Row

log = logging.getLogger(__name__)

FIRST_RETRY = 2.0  # seconds; doubles each attempt up to [mail] backoff_cap


class PermanentFailure(Exception):
    """The relay refused the mail for good (5xx); do not retry."""


class TemporaryFailure(Exception):
    """Try again later (connection trouble, timeout, 4xx)."""


@dataclass(frozen=True)
class OutgoingMail:
    id: int
    sender: str
    recipient: str
    message: bytes
    attempts: int
    created_at: float


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    kind: str
    recipient: str
    subject: str
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    last_error: str | None
    sent_at: float | None


RelayAddress = Callable[[], tuple[str, int]]


class OutboxStore:
    """Every SQL statement about the outbox."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def enqueue(
        conn: aiosqlite.Connection, kind: str, msg: EmailMessage, now: float | None = None
    ) -> int:
        """Queue ``msg`` inside the caller's transaction; returns the outbox id."""
        now = time.time() if now is None else now
        sender = parseaddr(str(msg["From"]))[1]
        recipient = parseaddr(str(msg["To"]))[1]
        cur = await conn.execute(
            "INSERT INTO outbox (kind, sender, recipient, subject, message, created_at,"
            " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, sender, recipient, str(msg["Subject"]), msg.as_bytes(), now, now),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def release_claims(self) -> int:
        """Forget leases left by a previous run of this process (crash recovery)."""
        return await self.db.execute(
            "UPDATE outbox SET claimed_until = NULL, next_attempt_at = ? "
            "WHERE status = 'pending' AND claimed_until IS NOT NULL",
            (time.time(),),
        )

    async def claim_due(self, limit: int, lease: float) -> list[OutgoingMail]:
        now = time.time()
        async with self.db.transaction() as conn:
            async with conn.execute(
                "SELECT id, sender, recipient, message, attempts, created_at FROM outbox "
                "WHERE status = 'pending' AND next_attempt_at <= ? "
                "AND (claimed_until IS NULL OR claimed_until < ?) "
                "ORDER BY next_attempt_at, id LIMIT ?",
                (now, now, limit),
            ) as cur:
                rows = list(await cur.fetchall())
            if rows:
                await conn.executemany(
                    "UPDATE outbox SET claimed_until = ?, attempts = attempts + 1 WHERE id = ?",
                    [(now + lease, r["id"]) for r in rows],
                )
        return [
            OutgoingMail(
                r["id"], r["sender"], r["recipient"], r["message"], r["attempts"] + 1,
                r["created_at"],
            )
            for r in rows
        ]

    async def next_due_at(self) -> float | None:
        row = await self.db.fetchone(
            "SELECT MIN(COALESCE(claimed_until, next_attempt_at)) AS due FROM outbox "
            "WHERE status = 'pending'"
        )
        return None if row is None or row["due"] is None else float(row["due"])

    async def mark_sent(self, mail_id: int) -> None:
        await self.db.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, claimed_until = NULL, "
            "last_error = NULL, message = ? WHERE id = ?",
            # The body held a live reset link; once delivered there is no reason to keep it.
            (time.time(), b"", mail_id),
        )

    async def mark_failed(self, mail_id: int, error: str) -> None:
        await self.db.execute(
            "UPDATE outbox SET status = 'failed', last_error = ?, claimed_until = NULL "
            "WHERE id = ?",
            (error[:500], mail_id),
        )

    async def schedule_retry(self, mail_id: int, at: float, error: str) -> None:
        await self.db.execute(
            "UPDATE outbox SET next_attempt_at = ?, last_error = ?, claimed_until = NULL "
            "WHERE id = ?",
            (at, error[:500], mail_id),
        )

    async def release(self, mail_ids: list[int]) -> None:
        """Give back claims that were never attempted (shutdown); attempts are refunded."""
        if not mail_ids:
            return
        async with self.db.transaction() as conn:
            await conn.executemany(
                "UPDATE outbox SET claimed_until = NULL, attempts = attempts - 1 "
                "WHERE id = ? AND status = 'pending'",
                [(i,) for i in mail_ids],
            )

    async def counts(self) -> dict[str, int]:
        rows = await self.db.fetchall("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
        out = {"pending": 0, "sent": 0, "failed": 0}
        out.update({r["status"]: int(r["n"]) for r in rows})
        return out

    async def list(self, statuses: tuple[str, ...] = ("pending", "failed")) -> list[OutboxEntry]:
        marks = ", ".join("?" for _ in statuses)
        rows = await self.db.fetchall(
            "SELECT id, kind, recipient, subject, status, attempts, created_at, "
            f"next_attempt_at, last_error, sent_at FROM outbox WHERE status IN ({marks}) "
            "ORDER BY id",
            statuses,
        )
        return [_entry(r) for r in rows]

    async def retry(self, mail_id: int | None) -> int:
        """Put one failed mail (or all, with None) back in the queue; returns how many."""
        now = time.time()
        if mail_id is None:
            return await self.db.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?, created_at = ?, "
                "attempts = 0 WHERE status = 'failed'",
                (now, now),
            )
        return await self.db.execute(
            "UPDATE outbox SET status = 'pending', next_attempt_at = ?, created_at = ?, "
            "attempts = 0 WHERE status = 'failed' AND id = ?",
            (now, now, mail_id),
        )


def _entry(r: Row) -> OutboxEntry:
    return OutboxEntry(
        r["id"], r["kind"], r["recipient"], r["subject"], r["status"], r["attempts"],
        r["created_at"], r["next_attempt_at"], r["last_error"], r["sent_at"],
    )


def backoff(attempts: int, cap: float) -> float:
    """Delay before the next attempt: 2 s, 4 s, 8 s … capped, with 50-100 % jitter."""
    base = min(cap, FIRST_RETRY * 2 ** max(0, attempts - 1))
    return base * random.uniform(0.5, 1.0)


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


def classify(exc: BaseException) -> Exception:
    """Map an aiosmtplib/socket error to Permanent- or TemporaryFailure."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [e.code for e in exc.recipients]
        text = "; ".join(_reply(e) for e in exc.recipients)
        if codes and all(500 <= c < 600 for c in codes):
            return PermanentFailure(text)
        return TemporaryFailure(text)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError):
        return TemporaryFailure(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if 500 <= exc.code < 600:
            return PermanentFailure(_reply(exc))
        return TemporaryFailure(_reply(exc))
    if isinstance(exc, aiosmtplib.SMTPException | OSError | asyncio.TimeoutError):
        return TemporaryFailure(f"{type(exc).__name__}: {exc}")
    raise exc


class SmtpConnection:
    """One reusable connection to the relay, opened on first use, reopened after errors."""

    def __init__(self, cfg: MailConfig, relay: RelayAddress) -> None:
        self.cfg = cfg
        self.relay = relay
        self._smtp: aiosmtplib.SMTP | None = None
        self.opened = 0  # how many times this slot connected (visible to tests/bench)

    async def _connect(self) -> aiosmtplib.SMTP:
        host, port = self.relay()
        smtp = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            timeout=self.cfg.timeout,
            use_tls=self.cfg.use_ssl,
            start_tls=True if self.cfg.use_tls else False,
            username=self.cfg.username or None,
            password=self.cfg.password or None,
        )
        await smtp.connect()
        self.opened += 1
        return smtp

    async def send(self, mail: OutgoingMail) -> None:
        """Deliver one mail; raises PermanentFailure or TemporaryFailure."""
        try:
            if self._smtp is None or not self._smtp.is_connected:
                self._smtp = await self._connect()
            options = [] if (mail.sender + mail.recipient).isascii() else ["SMTPUTF8"]
            await self._smtp.sendmail(
                mail.sender, [mail.recipient], mail.message, mail_options=options
            )
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            outcome = classify(exc)
            if isinstance(outcome, TemporaryFailure) or not isinstance(
                exc, aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPDataError
            ):
                await self.close()
            raise outcome from exc

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await asyncio.wait_for(smtp.quit(), timeout=2)
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
            smtp.close()


SendFn = Callable[[OutgoingMail], Awaitable[None]]


class OutboxWorker:
    """Claims due mail and delivers it through ``pool_size`` reused connections."""

    def __init__(
        self,
        store: OutboxStore,
        cfg: MailConfig,
        relay: RelayAddress,
        *,
        grace: float | None = None,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.connections = [SmtpConnection(cfg, relay) for _ in range(cfg.pool_size)]
        self.grace = cfg.timeout if grace is None else grace
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[OutgoingMail] = asyncio.Queue()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self.sent = 0
        self.failed = 0
        self.retried = 0

    def wake(self) -> None:
        """New mail was committed: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        released = await self.store.release_claims()
        if released:
            log.info("outbox: %d mail(s) left in flight by a previous run will be re-sent", released)
        self._tasks = [asyncio.create_task(self._dispatch(), name="outbox-dispatch")]
        self._tasks += [
            asyncio.create_task(self._sender(conn), name=f"outbox-sender-{i}")
            for i, conn in enumerate(self.connections)
        ]

    async def stop(self) -> None:
        """Stop claiming, let in-flight sends finish within the grace period, keep the rest."""
        self._stopping = True
        self._wake.set()
        deadline = time.monotonic() + self.grace
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        unsent: list[int] = []
        while not self._queue.empty():
            unsent.append(self._queue.get_nowait().id)
        await self.store.release(unsent)
        for conn in self.connections:
            await conn.close()

    async def _dispatch(self) -> None:
        lease = self.cfg.timeout * 3 + 5
        while not self._stopping:
            try:
                room = self.cfg.pool_size * 4 - self._queue.qsize()
                batch = await self.store.claim_due(room, lease) if room > 0 else []
                for mail in batch:
                    self._queue.put_nowait(mail)
                if batch and len(batch) == room:
                    await asyncio.sleep(0.01)  # more is due; let the senders drain first
                    continue
                due = await self.store.next_due_at()
                wait = 1.0 if due is None else min(1.0, max(0.01, due - time.time()))
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken database must not silently stop delivery
                log.exception("outbox: dispatcher error; retrying in 1 s")
                await asyncio.sleep(1)

    async def _sender(self, conn: SmtpConnection) -> None:
        while True:
            mail = await self._queue.get()
            self._in_flight += 1
            try:
                await self._deliver(conn, mail)
            except Exception:  # the lease expires and the mail is retried
                log.exception("outbox: mail %d: error recording the outcome", mail.id)
            finally:
                self._in_flight -= 1

    async def _deliver(self, conn: SmtpConnection, mail: OutgoingMail) -> None:
        started = time.monotonic()
        try:
            await conn.send(mail)
        except PermanentFailure as exc:
            self.failed += 1
            await self.store.mark_failed(mail.id, str(exc))
            log.warning("outbox: mail %d failed permanently: %s", mail.id, exc)
            return
        except TemporaryFailure as exc:
            if time.time() - mail.created_at >= self.cfg.max_age:
                self.failed += 1
                await self.store.mark_failed(
                    mail.id, f"gave up after {mail.attempts} attempts: {exc}"
                )
                log.warning("outbox: mail %d failed after %d attempts: %s",
                            mail.id, mail.attempts, exc)
                return
            self.retried += 1
            delay = backoff(mail.attempts, self.cfg.backoff_cap)
            await self.store.schedule_retry(mail.id, time.time() + delay, str(exc))
            log.info("outbox: mail %d attempt %d failed (%s); retry in %.1f s",
                     mail.id, mail.attempts, exc, delay)
            return
        self.sent += 1
        await self.store.mark_sent(mail.id)
        log.info("outbox: mail %d sent (attempt %d, %.0f ms)",
                 mail.id, mail.attempts, (time.monotonic() - started) * 1000)
