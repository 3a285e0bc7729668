"""Step 3: the durable outbox and the worker that delivers it to the relay.

A mail becomes a row in ``outbox`` inside the same transaction as the event
that caused it, so once that commits nothing can lose it. The worker, owned by
the app's lifecycle, claims due rows (``claimed_until``), hands them to a
bounded pool of reused SMTP connections (:mod:`resetd.outbox.relay`) and records the
outcome of every attempt (:mod:`resetd.outbox.attempts`):

* relay accepted → ``sent`` (never sent again; the body, which holds the link,
  is dropped);
* 5xx reply → ``failed`` with the server's reply (no retry storm);
* connection error, timeout, 4xx → retried with exponential backoff and jitter
  (``[mail] retry_base`` doubling up to ``backoff_cap``) until ``max_age``,
  then ``failed``;
* a mail whose link has expired (``expires_at``: a reset mail's token lifetime)
  is ``failed`` with "link expired before delivery" instead of being sent or
  retried: the link in it would no longer work.

A refused connection or a 421 slows down the whole relay, not one mail: the
connections share a :class:`~resetd.outbox.gate.RelayGate`, and a connection
without a session takes mail only once the gate admits it.

Each claim names this process and carries a short lease, renewed while the
mail is in hand (queued, sending, or accepted and not yet marked). Another
instance on the same database, starting or running, leaves those claims
alone, so a mail in the middle of a slow send is never sent twice. A crash
(even ``kill -9``) leaves rows ``pending``: the next start on this host, or
any instance sharing the database, releases their claims at once (the owner's
process is gone) or once their lease ran out (another host), and sends them:
at-least-once, and in practice exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import Protocol

from ..config import MailConfig
from ..metrics import Metrics
from ..storage.outbox import OutboxStore, OutgoingMail, RelayStatus
from ..storage.wakeups import Watch
from .attempts import Attempts, expired, redact
from .failures import PermanentFailure, SessionRefused, TemporaryFailure
from .gate import RelayGate
from .handoff import Handoff
from .recorder import SentRecorder
from .relay import RelayAddress, SmtpConnection, tls_context
from .smtp import NextMail

# The whole outbox logs as one logger, "resetd.outbox", as its modules did before
# they became a package: operators filter on that name.
log = logging.getLogger("resetd.outbox")


class RelayConnection(Protocol):
    """What the worker needs from a connection: :class:`SmtpConnection` in production,
    anything with the same methods in a unit test."""

    @property
    def connected(self) -> bool: ...

    async def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        then: NextMail | None = None,
    ) -> None: ...

    def abort(self) -> None: ...

    async def close(self) -> None: ...


class OutboxWorker:
    """Claims due mail and delivers it through ``[mail] pool_size`` reused connections.

    One dispatcher task claims mail into a local queue (topping it up in one
    claim when it runs low, at most eight mails per connection, so a stop has
    little to give back); one task per connection sends from it; one recorder
    task marks accepted mail sent in batches (:mod:`resetd.outbox.recorder`). A
    mail stays held by this process until its outcome is recorded.
    """

    PER_CONNECTION = 8  # mails claimed ahead per connection
    # Seconds a claim lasts unless renewed, and between renewals: a renewal may
    # wait out a few busy timeouts of a database locked by another process and
    # still come in time. A crashed instance's mail waits this long before
    # another host takes it over (on its own host, no wait: its pid is gone).
    LEASE = 60.0
    RENEW_EVERY = 10.0
    ORPHANS_EVERY = 5.0  # seconds between looks for claims of dead instances

    def __init__(
        self,
        store: OutboxStore,
        cfg: MailConfig,
        relay: RelayAddress,
        *,
        grace: float | None = None,
        connections: Sequence[RelayConnection] | None = None,
        lease: float | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.metrics = metrics
        self.relay = relay
        self.attempts = Attempts(store, cfg)
        self.gate = RelayGate(cfg.pool_size, cfg.retry_base, cfg.backoff_cap)
        if connections is None:
            tls = tls_context(cfg) if cfg.use_tls or cfg.use_ssl else None
            connections = [SmtpConnection(cfg, relay, self.gate, tls) for _ in range(cfg.pool_size)]
        self.connections: list[RelayConnection] = list(connections)
        self.grace = cfg.timeout if grace is None else grace
        self.capacity = self.PER_CONNECTION * len(self.connections)
        # Claim again once the queue is down to one waiting mail per connection.
        self.low_water = len(self.connections)
        # Mail this process holds is never claimed twice, however slow the relay;
        # another process leaves it alone while the renewed lease stands, even
        # through the relay's turn (up to backoff_cap) and the end-of-data reply.
        self.lease = self.LEASE if lease is None else lease
        self.renew_every = min(self.RENEW_EVERY, self.lease / 4)
        self._status_store = store.relay_status
        self._published: RelayStatus | None = None  # the status last saved
        self._publishing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._queue: Handoff[OutgoingMail | None] = Handoff()
        self._given_back = 0  # mails a sender had taken to go next when a stop came
        self._held: set[int] = set()  # claimed by this process: queued, sending or accepted
        # Accepted by the relay, held until marked sent.
        self._recorder = SentRecorder(store, self.lease, self._recorded)
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._sender_tasks: list[asyncio.Task[None]] = []
        self._watch: Watch | None = None  # mail other instances queue

    @property
    def running(self) -> bool:
        """Whether every task of the worker is alive (for ``/readyz``)."""
        tasks = [self._dispatcher, self._renewer, *self._sender_tasks]
        return not self._stopping and all(t is not None and not t.done() for t in tasks)

    def _recorded(self, batch: list[OutgoingMail]) -> None:
        self._held.difference_update(m.id for m in batch)
        self._wake.set()  # room for the dispatcher to claim more

    def wake(self) -> None:
        """New mail was committed: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        interrupted = await self.store.recover()
        await self._status_store.clear()
        counts = await self.store.counts()
        log.info(
            "outbox: pending=%d failed=%d sent=%d pool_size=%d instance=%s",
            counts["pending"],
            counts["failed"],
            counts["sent"],
            len(self.connections),
            self.store.owner,
        )
        if interrupted:
            log.info("outbox: %d mail(s) were mid-send when the last run ended", interrupted)
        self._watch = self.store.watch(self.wake)
        self._dispatcher = asyncio.create_task(self._dispatch(), name="outbox-dispatch")
        self._renewer = asyncio.create_task(self._renew(), name="outbox-renew")
        self._recorder.start()
        self._sender_tasks = [
            asyncio.create_task(self._send_loop(c), name=f"outbox-sender-{i}")
            for i, c in enumerate(self.connections)
        ]

    async def stop(self) -> None:
        """Stop claiming, let sends in progress finish within ``grace`` seconds, record
        their outcomes, leave everything else pending for the next start."""
        self._stopping = True
        self._wake.set()
        self.gate.close()  # senders waiting for the relay's turn go on to exit
        if self._watch is not None:
            await self._watch.stop()
        deadline = time.monotonic() + self.grace
        if self._dispatcher is not None:
            # It exits on its own between claims; cancel only if the database hangs.
            done, _ = await asyncio.wait([self._dispatcher], timeout=self.grace)
            if not done:
                self._dispatcher.cancel()
                await asyncio.gather(self._dispatcher, return_exceptions=True)
        unsent: list[int] = []
        while not self._queue.empty():
            mail = self._queue.get_nowait()
            if mail is not None:
                unsent.append(mail.id)
        await self._release(unsent)
        self._held.difference_update(unsent)
        for _ in self._sender_tasks:
            self._queue.put_nowait(None)  # each sender exits after its current mail
        busy: set[asyncio.Task[None]] = set()
        if self._sender_tasks:
            left = max(0.0, deadline - time.monotonic())
            _, busy = await asyncio.wait(self._sender_tasks, timeout=left)
        if busy:
            log.warning(
                "outbox: %d send(s) still running after the %.0f s grace period; "
                "interrupting them, they stay pending",
                len(busy),
                self.grace,
            )
            self.attempts.aborting = True
            for conn in self.connections:
                conn.abort()
            _, busy = await asyncio.wait(busy, timeout=2.0)
            for task in busy:
                task.cancel()
            await asyncio.gather(*busy, return_exceptions=True)
        # Bounded: marking sent gives up after a few seconds of a locked database.
        await self._recorder.stop(within=self.grace + 10)
        if self._renewer is not None:  # after the last outcome: nothing is held now
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        for conn in self.connections:
            await conn.close()
        if unsent or self._given_back:
            log.info(
                "outbox: %d claimed mail(s) left pending for the next start",
                len(unsent) + self._given_back,
            )

    async def _renew(self) -> None:
        """Keep this process's claims alive while it holds their mail."""
        while True:
            await asyncio.sleep(self.renew_every)
            held = list(self._held)
            try:
                kept = await self.store.renew(held, self.lease)
            except Exception:  # the lease has slack for a few failed renewals
                log.exception("outbox: could not renew the claims on %d mail(s)", len(held))
                continue
            if kept < len(held):
                # Recorded meanwhile, or taken over after a lapse: only the second
                # is news, and the outcome's conditional update reports it.
                log.debug("outbox: %d of %d claim(s) renewed", kept, len(held))

    async def _dispatch(self) -> None:
        orphans_at = time.monotonic() + self.ORPHANS_EVERY
        while not self._stopping:
            # Cleared before looking, so a wake() during the look is not lost.
            self._wake.clear()
            try:
                wait = 1.0  # also the pace at which other processes' changes are seen
                if time.monotonic() >= orphans_at:
                    # Another instance on this host may have died holding mail.
                    orphans_at = time.monotonic() + self.ORPHANS_EVERY
                    if released := await self.store.release_orphans():
                        log.info("outbox: took over %d mail(s) of a stopped instance", released)
                room = self.capacity - len(self._held)
                if room > 0 and self._queue.qsize() <= self.low_water:
                    claimed = await self.store.claim_due(room, self.lease, self._held)
                    if self._stopping:  # a stop began during the claim: not ours to send
                        await self._release([m.id for m in claimed])
                        break
                    for mail in claimed:
                        self._held.add(mail.id)
                        self._queue.put_nowait(mail)
                    if len(claimed) < room:  # nothing more is due now: when is the next?
                        due = await self.store.next_due_at()
                        if due is not None:
                            wait = min(wait, max(0.0, due - time.time()))
                # Otherwise a send finishing (or new mail) wakes us.
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except Exception:  # a broken database must not silently stop delivery
                log.exception("outbox: dispatcher error; retrying in 1 s")
                await asyncio.sleep(1)

    async def _next_mail(
        self, conn: RelayConnection, taken: OutgoingMail | None
    ) -> OutgoingMail | None:
        """The mail ``conn`` sends next: the one it took to go next, or from the queue.
        A connection without a session first waits until the relay gate admits it,
        and gives back a mail it got after the relay refused someone meanwhile."""
        while True:
            if taken is not None and conn.connected:
                return taken
            if taken is not None:  # its session died: that mail waits like any other
                self._queue.put_back(taken)
                taken = None
            if not conn.connected:
                await self.gate.admit(conn)
            mail = await self._queue.get(cold=not conn.connected)
            if mail is None or conn.connected or self.gate.may_open(conn):
                return mail
            self._queue.put_back(mail)

    async def _send_loop(self, conn: RelayConnection) -> None:
        mail = await self._next_mail(conn, None)
        while mail is not None:
            if self._stopping:
                # A stop sends only what is in progress; a mail this sender gets
                # after it began (the dispatcher may still have been claiming)
                # stays pending, like those still queued.
                await self._give_back(mail)
                mail = await self._queue.get()
                continue
            taken: list[OutgoingMail] = []  # the mail this sender sends next, if any
            accepted = False
            try:
                accepted = await self._deliver(conn, mail, partial(self._take_next, taken))
            except Exception:  # the storage, whatever its engine: the worker must outlive it
                log.exception(
                    "outbox: mail=%d: could not record the outcome; tried again in %.0f s",
                    mail.id,
                    self.lease,
                )
            finally:
                if accepted:  # held until the recorder has marked it sent
                    self._recorder.accepted(mail)
                else:
                    self._held.discard(mail.id)
                    self._wake.set()  # room for the dispatcher to claim more
            # A mail taken to go next is given back at the top if a stop began
            # meanwhile (its envelope, written ahead, dies with the session).
            mail = await self._next_mail(conn, taken[0] if taken else None)

    def _take_next(self, taken: list[OutgoingMail]) -> tuple[str, str, bytes] | None:
        """Asked by the connection when a mail's data is about to go. A mail waits
        in the queue only while every sender is busy; taking it now lets its
        envelope go out behind that data: a round trip saved. While the relay
        gate still lets more connections open, the mail is left for one of them
        (behind a slow relay's data it could wait long)."""
        if self._stopping or self._queue.empty() or not self.gate.saturated:
            return None
        nxt = self._queue.get_nowait()
        if nxt is None:  # not queued before a stop begins, and then nothing is taken
            return None
        taken.append(nxt)
        return None if expired(nxt) else (nxt.sender, nxt.recipient, nxt.message)

    async def _give_back(self, mail: OutgoingMail) -> None:
        self._given_back += 1
        try:
            await self._release([mail.id])
        finally:
            self._held.discard(mail.id)

    async def _release(self, ids: list[int]) -> None:
        """Leave claimed mail pending for the next start (or another instance)."""
        try:
            await self.store.release(ids)
        except Exception:  # the claims lapse after the lease, or at the next start
            log.exception("outbox: could not release the claim on %d mail(s)", len(ids))

    async def _deliver(
        self,
        conn: RelayConnection,
        mail: OutgoingMail,
        then: NextMail | None = None,
    ) -> bool:
        """One attempt; returns True when the relay accepted the mail (which the
        recorder then marks sent), False when the outcome is already recorded.
        ``then`` hands the connection the mail it sends next (see SmtpConnection)."""
        started = time.monotonic()
        if expired(mail):
            await self.attempts.expire(mail, started, None)
            return False
        try:
            await conn.send(mail.sender, mail.recipient, mail.message, then)
        except (PermanentFailure, TemporaryFailure) as exc:
            if self.metrics is not None:
                self.metrics.reply(str(exc))
            await self._failed(mail, exc, started)
        except Exception as exc:  # a bug, not the relay: keep the mail, back off, say so
            log.exception("outbox: mail=%d: unexpected error while sending", mail.id)
            await self.attempts.retry_later(mail, f"internal error: {type(exc).__name__}", started)
        else:
            if self.metrics is not None:
                self.metrics.reply(None)
                self.metrics.delivered(mail.created_at)
            self.attempts.accepted(mail, started)
            return True
        finally:
            if self.gate.status is not self._published:
                await self._publish_status()
        return False

    async def _failed(
        self, mail: OutgoingMail, exc: PermanentFailure | TemporaryFailure, started: float
    ) -> None:
        """Record a refused or failed attempt by what kind of failure it was."""
        error = redact(str(exc))
        if isinstance(exc, PermanentFailure):
            await self.attempts.rejected(mail, error, started)
        elif isinstance(exc, SessionRefused):
            # A settings problem (credentials, TLS) that no retry of ours fixes:
            # loud, but the mail stays queued for when it is fixed.
            await self.attempts.retry_later(mail, error, started, level=logging.ERROR)
        else:
            await self.attempts.retry_later(mail, error, started)

    async def _publish_status(self) -> None:
        """Save the relay's state for ``resetd outbox`` when it changed."""
        async with self._publishing:
            status = self.gate.status
            if status is self._published:
                return
            host, port = self.relay()
            try:
                await self._status_store.save(f"{host}:{port}", status)
            except self.store.errors.error:  # shown again with the next change
                log.exception("outbox: could not save the relay's state")
            self._published = status

    def relay_status(self) -> dict[str, object]:
        """The relay as ``/readyz`` shows it."""
        host, port = self.relay()
        status = self.gate.status
        return {
            "address": f"{host}:{port}",
            "state": status.state,
            "since": status.since or None,
            "error": status.error,
            "hint": status.hint,
            "open_connections": self.gate.open_sessions,
            "connections_allowed": self.gate.limit,
            "next_connection_in": round(self.gate.retry_in(), 1),
        }
