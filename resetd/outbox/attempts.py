"""What one delivery attempt came to, recorded and logged.

The outbox worker (:mod:`resetd.outbox.worker`) decides what to send and when; this
module owns what an attempt's outcome means for the mail:

* relay accepted → logged here, marked ``sent`` by the worker's recorder in
  batches;
* 5xx reply → ``failed`` with the server's reply (no retry storm);
* connection error, timeout, 4xx, a refused session → retried with
  exponential backoff and jitter until ``max_age``, then ``failed``;
* link expired → ``failed`` with "link expired before delivery".

Webhook events (:mod:`resetd.outbox.webhook_worker`) go through the same
rules, except that nothing the app answers fails an event at once.

Every attempt is one logfmt line with the recipient's domain only; relay
replies are redacted, since relays sometimes quote the message and its link.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from urllib.parse import urlsplit

from ..config import MailConfig
from ..storage.outbox import OutboxStore, OutgoingMail

log = logging.getLogger("resetd.outbox")


def backoff(attempts: int, base: float, cap: float) -> float:
    """Delay after failed attempt number ``attempts``: base, 2·base, 4·base … up to
    ``cap``, each scaled by a random 50-100 % so a relay outage does not end in a
    thundering herd."""
    delay = min(cap, base * 2.0 ** min(max(0, attempts - 1), 32))
    return delay * random.uniform(0.5, 1.0)


_SECRETS = (
    re.compile(r"(/reset_password/)[\w.~%-]+"),
    re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]+"),  # a JWT anywhere in a relay's reply
)


def redact(text: str) -> str:
    """``text`` without reset links or tokens (relays sometimes quote the message)."""
    text = _SECRETS[0].sub(r"\1<redacted>", text)
    return _SECRETS[1].sub("<redacted>", text)


def expired(mail: OutgoingMail) -> bool:
    return mail.expires_at is not None and time.time() >= mail.expires_at


def claim_lost(mail: OutgoingMail) -> None:
    """Say that this process's claim on ``mail`` ended before its outcome was
    recorded (its lease ran out, and another process took the mail over)."""
    log.warning(
        "outbox: mail=%d: no longer claimed by this instance (its lease ran out); "
        "outcome left to the instance that holds it",
        mail.id,
    )


class Attempts:
    """Records and logs the outcome of each attempt at one mail."""

    def __init__(self, store: OutboxStore, cfg: MailConfig) -> None:
        self.store = store
        self.cfg = cfg
        self.aborting = False  # set by the worker when its shutdown cuts sends short

    def accepted(self, mail: OutgoingMail, started: float) -> None:
        self.log(logging.INFO, mail, started, "sent")

    async def rejected(self, mail: OutgoingMail, error: str, started: float) -> None:
        if await self.store.mark_failed(mail, error, "rejected"):
            self.log(logging.WARNING, mail, started, "failed", error=error)
        else:
            claim_lost(mail)

    async def retry_later(
        self, mail: OutgoingMail, error: str, started: float = 0.0, level: int = logging.INFO
    ) -> None:
        now = time.time()
        if self.aborting:
            # Our shutdown cut it, not the relay: due again as soon as we are back.
            error = f"interrupted by shutdown ({error})"
            if await self.store.schedule_retry(mail.id, now, error):
                self.log(logging.INFO, mail, started, "interrupted", error=error)
            else:
                claim_lost(mail)
            return
        if mail.expires_at is not None and now >= mail.expires_at:
            await self.expire(mail, started, error)
            return
        deadline = mail.created_at + self.cfg.max_age
        if now >= deadline:
            error = f"gave up after {mail.attempts} attempts: {error}"
            if await self.store.mark_failed(mail, error, "gave_up"):
                self.log(logging.WARNING, mail, started, "gave_up", error=error)
            else:
                claim_lost(mail)
            return
        delay = backoff(mail.attempts, self.cfg.retry_base, self.cfg.backoff_cap)
        at = min(now + delay, deadline)  # one last try at max_age, not after it
        if mail.expires_at is not None:
            at = min(at, mail.expires_at)  # due when its link dies, to be failed then
        if await self.store.schedule_retry(mail.id, at, error):
            self.log(level, mail, started, "retry", error=error, retry_in=at - now)
        else:
            claim_lost(mail)

    async def expire(self, mail: OutgoingMail, started: float, error: str | None) -> None:
        """The link in ``mail`` is dead: sending it now would only confuse its reader.
        ``error`` is this attempt's; without one, the last recorded error is kept."""
        reason = "link expired before delivery"
        if error is not None:
            reason += f" (last error: {error})"
        if await self.store.mark_failed(mail, reason, "expired", keep_last_error=error is None):
            self.log(logging.WARNING, mail, started, "expired", error=reason)
        else:
            claim_lost(mail)

    def log(
        self,
        level: int,
        mail: OutgoingMail,
        started: float,
        result: str,
        *,
        error: str | None = None,
        retry_in: float | None = None,
    ) -> None:
        """One logfmt line per attempt; the recipient's domain (a webhook's host)
        only, never the body."""
        if mail.channel == "webhook":
            host = urlsplit(mail.recipient).hostname or "-"
            line = f"outbox: webhook={mail.id} kind={mail.kind} host={host}"
        else:
            domain = mail.recipient.rpartition("@")[2] or "-"
            line = f"outbox: mail={mail.id} kind={mail.kind} domain={domain}"
        line += f" attempt={mail.attempts} result={result}"
        if started:
            line += f" ms={(time.monotonic() - started) * 1000:.0f}"
        if retry_in is not None:
            line += f" retry_in={retry_in:.1f}s"
        if error is not None:
            line += f" error={json.dumps(error, ensure_ascii=False)}"
        log.log(level, "%s", line)
