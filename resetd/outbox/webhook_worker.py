"""Delivers the outbox's webhook events to ``[webhooks] url``.

Events are rows of the same ``outbox`` table as mail (``channel =
'webhook'``), queued in the transaction of what they report, so once that
commits nothing can lose them. This worker claims due events with a lease, as
the mail worker claims mail, sends up to :data:`~resetd.outbox.webhook.CONNECTIONS`
at once (:mod:`resetd.outbox.webhook`), and records each outcome through the
same :class:`~resetd.outbox.attempts.Attempts` as mail:

* 2xx → ``sent``, never sent again (the body, which names the account's
  address, is dropped);
* any other status, a redirect, a refused or dropped connection, a timeout →
  retried with the outbox's backoff (``[mail] retry_base`` doubling up to
  ``backoff_cap``, jittered) until ``[mail] max_age``, then ``failed``.
  ``resetd outbox retry`` queues a failed event again.

A crash (even ``kill -9``) leaves rows ``pending``; the next start releases
their claims and sends them: at least once. The event's ``id`` lets the app
drop a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..config import MailConfig, WebhooksConfig
from ..storage.outbox import OutboxStore, OutgoingMail
from ..storage.wakeups import Watch
from .attempts import Attempts
from .failures import TemporaryFailure
from .webhook import CONNECTIONS, WebhookSender

log = logging.getLogger("resetd.outbox")

CHANNEL = "webhook"


class WebhookWorker:
    """Claims due events and POSTs them, :data:`CONNECTIONS` at a time."""

    def __init__(
        self,
        store: OutboxStore,
        cfg: WebhooksConfig,
        mail: MailConfig,
        sender: WebhookSender,
    ) -> None:
        """``mail`` holds the outbox's retry rules (retry_base, backoff_cap,
        max_age), which events follow as mail does."""
        self.store = store
        self.sender = sender
        self.attempts = Attempts(store, mail)
        self.grace = cfg.timeout  # a send under way at a stop gets this long to end
        # Past the lease another process may claim the event again: longer than
        # any one attempt can take.
        self.lease = 2 * cfg.timeout + 60
        self._wake = asyncio.Event()
        self._sending: dict[int, asyncio.Task[None]] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._watch: Watch | None = None  # events other instances queue

    def wake(self) -> None:
        """New events were committed: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        interrupted = await self.store.recover(CHANNEL)
        if interrupted:
            log.info(
                "outbox: %d webhook event(s) were mid-send when the last run ended", interrupted
            )
        self._watch = self.store.watch(self.wake, CHANNEL)
        self._task = asyncio.create_task(self._run(), name="outbox-webhooks")

    async def stop(self) -> None:
        """Stop claiming; sends under way get ``grace`` seconds to finish and have
        their outcome recorded; those cut short stay pending for the next start."""
        self._stopping = True
        self._wake.set()
        if self._watch is not None:
            await self._watch.stop()
        if self._task is not None:
            done, _ = await asyncio.wait([self._task], timeout=self.grace)
            if not done:  # only a hanging database keeps the loop from ending
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        busy = set(self._sending.values())
        if busy:
            _, busy = await asyncio.wait(busy, timeout=self.grace)
        if busy:
            self.attempts.aborting = True  # recorded as interrupted, due at once
            for task in busy:
                task.cancel()
            await asyncio.gather(*busy, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before looking, so a wake() during the look is not lost
            wait = 1.0  # also the pace at which other processes' events are seen
            try:
                room = CONNECTIONS - len(self._sending)
                if room > 0:
                    claimed = await self.store.claim_due(
                        room, self.lease, self._sending.keys(), CHANNEL
                    )
                    for event in claimed:
                        self._sending[event.id] = asyncio.create_task(
                            self._deliver(event), name=f"outbox-webhook-{event.id}"
                        )
                    if len(claimed) < room:
                        due = await self.store.next_due_at(CHANNEL)
                        if due is not None:
                            wait = min(wait, max(0.0, due - time.time()))
            except Exception:  # a broken database must not silently stop delivery
                log.exception("outbox: webhook dispatcher error; retrying in 1 s")
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _deliver(self, event: OutgoingMail) -> None:
        """One attempt at ``event``, its outcome recorded; never raises."""
        started = time.monotonic()
        try:
            try:
                await self.sender.send(event.message)
            except TemporaryFailure as exc:
                await self.attempts.retry_later(event, str(exc), started)
            except asyncio.CancelledError:
                # A stop cut it short: the app may or may not have it; sent again.
                await asyncio.shield(
                    self.attempts.retry_later(event, "cut short by a stop", started)
                )
                raise
            except Exception as exc:  # a bug, not the app: keep the event, back off, say so
                log.exception("outbox: webhook=%d: unexpected error while sending", event.id)
                await self.attempts.retry_later(
                    event, f"internal error: {type(exc).__name__}", started
                )
            else:
                await self.store.mark_sent([event])
                self.attempts.accepted(event, started)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database: the claim lapses after the lease, then it goes again
            log.exception(
                "outbox: webhook=%d: could not record the outcome; tried again in %.0f s",
                event.id,
                self.lease,
            )
        finally:
            self._sending.pop(event.id, None)
            self._wake.set()  # room for another
