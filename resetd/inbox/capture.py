"""What the SMTP sink does with a transaction: recipients up to the cap, then capture.

:class:`SinkHandler` is the aiosmtpd handler of :mod:`.sink`. A recipient
past ``[dev_inbox] max_recipients`` gets ``452 4.5.3`` (RFC 5321
§4.5.3.1.10), so the client sends the rest in another transaction. An
accepted message is handed to the :class:`~resetd.inbox.writer.InboxWriter`;
a large one arrives in a spool file (:mod:`.spool`) and is read back, one at
a time, only to be stored. The answer is 250 only once the message is
stored and visible; when the writer cannot store it, 451, so the client
keeps the mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from ..config import DevInboxConfig
from ..errors import NotStored
from .ingest import Incoming
from .spool import Spooled, Spooler
from .writer import Arrival, InboxWriter

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    """Counters since the process started (the API's ``info``)."""

    started: float = field(default_factory=time.time)
    accepted: int = 0
    accepted_size: int = 0
    rejected: int = 0


# RFC 5321 §4.5.3.1.10: "too many recipients" is a 452, and the client
# sends the remaining recipients in another transaction.
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
BUSY = "451 4.3.1 Too many large messages at once, try again later"
NOT_STORED = "451 4.3.0 The message could not be stored, try again later"
CAPTURED = "250 2.0.0 OK: captured"


class SinkHandler:
    """aiosmtpd handler: recipients up to the cap are welcome; DATA goes to the writer."""

    def __init__(
        self,
        writer: InboxWriter,
        stats: SinkStats,
        max_recipients: int = DevInboxConfig.max_recipients,
        spooler: Spooler | None = None,
    ) -> None:
        self.writer = writer
        self.stats = stats
        self.max_recipients = max_recipients
        self.spooler = spooler or Spooler()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    def expect(self) -> Arrival:
        """A transaction began: the writer may hold its next batch for its message."""
        return self.writer.expect()

    async def capture(
        self,
        envelope: Envelope,
        content: bytes | Spooled,
        arrival: Arrival | None = None,
        username: str = "",
    ) -> str:
        """Hand one accepted message to the writer; returns the reply to DATA
        once it is stored (250) or could not be (451).

        ``username`` is the SMTP AUTH user name, stored with the message. A
        spooled message is read back under ``spooler.loading``, so only one is
        in memory at a time; when waiting for that takes longer than
        ``spooler.wait`` the answer is a 451. No batch waits for it meanwhile.
        """
        if isinstance(content, bytes):
            try:
                await self._submit(envelope, content, arrival, username)
            except NotStored as exc:
                log.warning("dev inbox: answering 451: %s", exc)
                return NOT_STORED
            return CAPTURED
        if arrival is not None:
            arrival.done()
        loading = self.spooler.loading
        with contextlib.closing(content):
            try:
                await asyncio.wait_for(loading.acquire(), self.spooler.wait)
            except TimeoutError:
                return BUSY
            try:
                raw = await asyncio.to_thread(content.read)
                content.close()  # frees the disk and the spool slot now
                await self._submit(envelope, raw, None, username)
            except NotStored as exc:
                log.warning("dev inbox: answering 451: %s", exc)
                return NOT_STORED
            finally:
                loading.release()
        return CAPTURED

    async def _submit(
        self, envelope: Envelope, raw: bytes, arrival: Arrival | None, username: str
    ) -> None:
        # aiosmtpd gives every transaction a new Envelope, so its list is ours to keep.
        incoming = Incoming(time.time(), envelope.mail_from or "", envelope.rcpt_tos, raw, username)
        await self.writer.submit(incoming, arrival)
        stats = self.stats
        stats.accepted += 1
        stats.accepted_size += len(raw)
