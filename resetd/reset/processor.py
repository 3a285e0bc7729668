"""Step 1½, in the background: queued request → account? → token + mail in the outbox.

For each batch of queued requests the addresses are looked up and, for each
known, in-limit address, a token minted and a mail rendered; then one
transaction claims the requests, records the tokens in the ledger, puts the
mails in the outbox and writes the audit trail. A crash before that commit
leaves the requests queued; after it, the mails are in the outbox: never
neither.

Each request is its own unit of work. One whose mail cannot be made (an
application's table holding an address no mail can go to, say) or recorded is
set aside: marked done with its ``failure``, audited as ``reset_requested`` /
``failed …``, listed by ``resetd outbox``, while the rest of its batch goes on.
Only a failure of the account lookup itself, which no request can get past
(the application's database is locked or gone), holds the queue: the batch is
retried, less and less often, until the store answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from ..errors import UnsendableAddress
from ..metrics import Metrics
from ..outbox import RESET_REQUESTED, NewEvent, NewMail, WebhookEvents
from ..storage import Batch, Storage
from ..storage.audit import AuditRow
from ..storage.requests import QueuedRequest
from ..storage.wakeups import Watch
from ..users import AccountStore, User, fingerprint, pick
from .compose import MailComposer
from .tokens import Claims, TokenCodec, issued

log = logging.getLogger(__name__)

YIELD_EVERY = 4  # mails rendered between two turns of the event loop
RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # seconds between tries of a batch that cannot be read


class RequestProcessor:
    BATCH = 128
    POLL = 1.0  # seconds between looks at the queue when nothing wakes it

    def __init__(
        self,
        storage: Storage,
        users: AccountStore,
        codec: TokenCodec,
        composer: MailComposer,
        mail_queued: Callable[[], None],
        events: WebhookEvents | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``mail_queued`` is called after a batch put mail in the outbox (the
        outbox worker's wake-up); ``events`` makes a ``reset.requested`` event
        beside each reset mail when ``[webhooks] events`` asks for it;
        ``metrics`` counts the requests this instance processed, by outcome."""
        self.storage = storage
        self.users = users
        self.codec = codec
        self.composer = composer
        self.mail_queued = mail_queued
        self.events = events
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watch: Watch | None = None  # requests other instances queue

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._watch = self.storage.requests.watch(self.wake)
        self._task = asyncio.create_task(self._run(), name="reset-request-processor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._watch is not None:  # after the last read: it gives up what that reserved
            await self._watch.stop()

    async def _run(self) -> None:
        last_purge = 0.0
        delay = RETRY_FIRST
        while True:
            # Cleared before the queue is read, never after: a request queued
            # while a batch is processed wakes the next look at once, instead of
            # waiting out the poll.
            self._wake.clear()
            try:
                if await self.process_batch() == self.BATCH:
                    delay = RETRY_FIRST
                    continue
                delay = RETRY_FIRST
                if time.time() - last_purge > 3600:
                    last_purge = time.time()
                    now = await self.storage.now()
                    await self.storage.requests.purge(now - 86400)
                    await self.storage.limits.purge(now)
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a
                # cancel that lands as the wake-up fires (a request queued just as
                # the app stops), and stop() then waited for ever.
                try:
                    async with asyncio.timeout(self.POLL):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                # Per-request failures never get here (see process_batch): this is
                # the account store or resetd's database failing for everybody.
                if delay == RETRY_FIRST:
                    log.exception("reset requests: processing error; retrying in %.0f s", delay)
                else:
                    log.error("reset requests: still failing; retrying in %.0f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def process_batch(self) -> int:
        """Turn up to BATCH queued requests into mail; returns how many were pending.

        The lookups, tokens and mails are made first, outside any transaction; one
        transaction in the database's writer thread then claims the requests and
        records the tokens, the mails and the audit rows of those it claimed. A
        request another instance claimed meanwhile is skipped, and the token
        minted for it, never recorded in the ledger, is worthless.

        A request whose token or mail raises is set aside (see the module's
        docstring); so is one whose rows the database refuses, found by
        recording the batch's outcomes one by one when the whole batch is refused.
        Raises only when the account lookup or the database fails for everybody.
        """
        pending = await self.storage.requests.pending(self.BATCH)
        if not pending:
            return 0
        wanted = sorted({r.email_norm for r in pending if r.email_norm and not r.limited})
        accounts = await self.users.find_all_by_email(wanted)
        outcomes: list[Outcome] = []
        minted = 0
        for req in pending:
            candidates = [] if req.limited else accounts.get(req.email_norm, [])
            user = pick(candidates, req.email, _email)
            if user is None:
                outcomes.append(self._no_mail(req, candidates))
                continue
            minted += 1
            if minted % YIELD_EVERY == 0:
                # A token and a mail cost ~0.15 ms of loop time; a batch of known
                # addresses would otherwise hold the loop for ~20 ms.
                await asyncio.sleep(0)
            try:
                outcomes.append(self._mail(req, user))
            except Exception as exc:  # anything: one request must never hold the queue
                outcomes.append(_set_aside(req, user.id, exc))
        recorded = await self._record(outcomes)
        if self.metrics is not None:
            self.metrics.reset_outcomes(recorded)
        if "mail_queued" in recorded:
            self.mail_queued()
        return len(pending)

    def _no_mail(self, req: QueuedRequest, candidates: list[User]) -> Outcome:
        if req.limited:
            return Outcome(req, "rate_limited", None, None, None)
        if len(candidates) > 1:
            # An app's table holds several spellings of the address and none is
            # exactly what was typed: nobody can tell which account was meant.
            log.warning(
                "reset requests: request %d matches %d accounts and none exactly; no mail sent",
                req.id,
                len(candidates),
            )
            return Outcome(req, "ambiguous_address", None, None, None)
        return Outcome(req, "unknown_address", None, None, None)

    def _mail(self, req: QueuedRequest, user: User) -> Outcome:
        """Mint the token and compose the mail for ``user``; raises whatever they do."""
        token, claims = self.codec.mint(user.id, fingerprint(user))
        mail = self.composer.reset_mail(user.username, user.email, token, self.codec.ttl, req.lang)
        # Undelivered when the token expires, the mail is pointless: fail it then.
        new = NewMail(mail, user.id, float(claims.expires_at))
        event = None
        if self.events is not None and self.events.wants(RESET_REQUESTED):
            event = self.events.make(RESET_REQUESTED, user.id, user.email, time.time())
        return Outcome(req, "mail_queued", user.id, claims, new, event=event)

    async def _record(self, outcomes: list[Outcome]) -> list[str]:
        """Record the batch in one transaction; if the database refuses it, each
        outcome alone, setting aside those it still refuses. Returns the audit
        outcomes of the requests this instance claimed. The database's own
        state (locked, full, unreadable: the storage's ``errors.unavailable``)
        is not a request's: it is raised, and the batch retried."""
        batch = self.storage.batch
        unavailable = self.storage.errors.unavailable
        try:
            return await batch(_claim_and_record, outcomes)
        except unavailable:
            raise
        except Exception:  # a value or a row the database refuses: find whose
            log.exception("reset requests: a batch of %d was refused; one by one", len(outcomes))
        recorded: list[str] = []
        for outcome in outcomes:
            try:
                recorded += await batch(_claim_and_record, [outcome])
            except unavailable:
                raise
            except Exception as exc:
                if outcome.failure is not None:
                    raise  # even its bare set-aside is refused
                aside = _set_aside(outcome.request, outcome.user_id, exc)
                recorded += await batch(_claim_and_record, [aside])
        return recorded


class Outcome(NamedTuple):
    """What one queued request came to, before it is claimed and recorded."""

    request: QueuedRequest
    # How the audit trail names it: mail_queued, unknown_address,
    # ambiguous_address, rate_limited, or "failed <reason>" for a request set aside
    audit_outcome: str
    user_id: int | str | None
    claims: Claims | None
    mail: NewMail | None
    failure: str | None = None  # why it was set aside, for resetd outbox
    event: NewEvent | None = None  # for the app's webhook, when it asks for reset.requested


def _email(user: User) -> str:
    return user.email


def _set_aside(req: QueuedRequest, user_id: int | str | None, exc: BaseException) -> Outcome:
    """The outcome of a request that cannot be processed: no token, no mail, and
    the reason (for the audit trail a short one, never the address)."""
    if isinstance(exc, UnsendableAddress):
        short, detail = "unsendable_address", str(exc)
        log.warning("reset requests: request %d set aside: account %s: %s", req.id, user_id, exc)
    else:
        log.error(
            "reset requests: request %d set aside: %s", req.id, type(exc).__name__, exc_info=exc
        )
        short, detail = f"error={type(exc).__name__}", f"{type(exc).__name__}: {exc}"
    who = "" if user_id is None else f"account {user_id}: "
    return Outcome(req, f"failed {short}", user_id, None, None, f"{who}{detail}")


def _claim_and_record(tx: Batch, outcomes: list[Outcome]) -> list[str]:
    """Claim the requests and record what came of those claimed, in one transaction
    (in the storage's writer thread); returns the audit outcomes of those claimed."""
    claimed = tx.requests.claim([o.request.id for o in outcomes])
    mine = [o for o in outcomes if o.request.id in claimed]
    tx.ledger.record_many([issued(o.claims) for o in mine if o.claims is not None])
    tx.outbox.enqueue_many("reset", [o.mail for o in mine if o.mail is not None])
    tx.outbox.enqueue_events([o.event for o in mine if o.event is not None])
    tx.requests.record_failures([(o.request.id, o.failure) for o in mine if o.failure is not None])
    tx.audit.record_many([_audit_row(o) for o in mine])
    return [o.audit_outcome for o in mine]


def _audit_row(o: Outcome) -> AuditRow:
    req = o.request
    return ("reset_requested", o.audit_outcome, o.user_id, req.client_ip, req.user_agent)
