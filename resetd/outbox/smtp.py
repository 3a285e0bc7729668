"""One SMTP session after the handshake: the mail transactions, and what replies mean.

:class:`RelaySession` takes over a connected transport from aiosmtplib
(:mod:`resetd.outbox.relay` opens it) and runs the transactions itself. aiosmtplib's
``sendmail`` costs about a millisecond of CPU per mail (address parsing, regex
dot-stuffing, a ``wait_for`` per command) and waits for each of MAIL, RCPT, DATA
and the end of data in turn; its reply reader cannot take several replies at
once, so it cannot pipeline. :class:`RelaySession` sends MAIL, RCPT and DATA in one
write when the relay advertises PIPELINING (RFC 2920), one at a time when it
does not, and applies the same reply rules. With PIPELINING, the envelope of
the mail that follows can also ride behind a mail's data, in the same write
(RFC 2920 lets message content open a group): one round trip per mail instead
of two.

A mail's outcome is one of two exceptions (:mod:`resetd.outbox.failures`), or
none: :class:`PermanentFailure` (a 5xx reply, or a mail that can never be
sent) and :class:`TemporaryFailure` (a lost connection, a timeout, a 4xx
reply). Its commands and data are made by :mod:`resetd.outbox.envelope`.

A refused transaction never leaves anything behind on the session: after a
refused end of data the session is reset (RSET) before it carries another
mail, or closed when the next envelope had already been written behind the
data, since a relay may keep the refused transaction open (Postfix does after
``smtpd_end_of_data_restrictions``) and read that envelope into it. A 503 means
the relay's idea of the transaction is not ours, and a DATA answered 354 after
a refused envelope would deliver an empty mail if ended: both close the session.
The end-of-data reply is awaited for ``[mail] data_timeout`` (RFC 5321
§4.5.3.2.6: 10 minutes), because a timeout there cannot tell a lost mail from
a delivered one, and giving up early sends it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from .envelope import data_payload, envelope
from .failures import PermanentFailure, TemporaryFailure, failure

Reply = tuple[int, str]
Outgoing = tuple[str, str, bytes]  # sender, recipient, message
# Asked when a mail's data is about to go: the mail this session sends next, if
# one waits (see RelaySession.transaction).
NextMail = Callable[[], Outgoing | None]
_MAX_REPLY = 64 * 1024  # bytes of one reply; a relay sending more is broken


class RelaySession(asyncio.Protocol):
    """An SMTP session after the handshake: writes commands, reads replies in order.

    Replies are parsed as they arrive and queued, so any number of pipelined
    replies can be read whichever way the bytes were split.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        extensions: dict[str, str],
        timeout: float,
        data_timeout: float | None = None,
    ) -> None:
        self.transport = transport
        self.pipelining = "pipelining" in extensions
        self.smtputf8 = "smtputf8" in extensions
        self.eightbit = "8bitmime" in extensions
        self.size = "size" in extensions
        self.timeout = timeout
        self.data_timeout = timeout if data_timeout is None else data_timeout
        self.goodbye: str | None = None  # the relay's 421, when it closed the session
        self.in_sync = True  # every reply to what was sent has been read
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lost: str | None = None
        # The next mail's MAIL and RCPT, written behind the last mail's data; its
        # three replies are still to be read by that mail's transaction.
        self._ahead: bytes | None = None
        transport.set_protocol(self)

    @property
    def usable(self) -> bool:
        return self._lost is None and self.in_sync and not self.transport.is_closing()

    # -- asyncio.Protocol --------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start:end]).rstrip(b"\r")
            start = end + 1
            try:
                code = int(line[:3])
            except ValueError:
                self._break(f"malformed reply {line[:80]!r}")
                return
            self._lines.append(line[4:].decode("utf-8", "replace").strip())
            if line[3:4] != b"-":
                self._replies.append((code, "\n".join(self._lines)))
                self._lines = []
        del self._buffer[:start]
        if len(self._buffer) + sum(map(len, self._lines)) > _MAX_REPLY:
            self._break("reply too long")
            return
        if self._replies and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"disconnected: {exc}" if exc else "disconnected: connection closed")

    def _break(self, why: str) -> None:
        """Give up on this session: the relay said goodbye or stopped making sense."""
        self.transport.abort()
        self._fail(why)

    def _fail(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(TemporaryFailure(self._lost))

    # -- commands ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._lost is not None:
            raise TemporaryFailure(self._lost)
        if self.transport.is_closing():
            raise TemporaryFailure("disconnected: connection closed")
        self.transport.write(data)

    async def reply(self, within: float | None = None) -> Reply:
        """The next reply, waiting up to ``within`` seconds (default ``[mail] timeout``);
        raises TemporaryFailure on timeout or a lost connection."""
        if not self._replies:
            if self._lost is not None:
                raise TemporaryFailure(self._lost)
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_later(
                self.timeout if within is None else within, _expire, waiter
            )
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self._replies.popleft()

    def _commands(self, sender: str, recipient: str, payload: bytes) -> tuple[bytes, bytes]:
        """The MAIL and RCPT commands for one mail on this session."""
        return envelope(
            sender,
            recipient,
            payload,
            smtputf8=self.smtputf8,
            eightbitmime=self.eightbit,
            size=self.size,
        )

    def expects(self, sender: str, recipient: str, payload: bytes) -> bool:
        """Whether this mail can go next: no envelope was written ahead, or this
        mail's was. The relay would read any other mail as message content."""
        if self._ahead is None:
            return True
        try:
            return self._ahead == b"".join(self._commands(sender, recipient, payload))
        except (PermanentFailure, TemporaryFailure):
            return False

    async def transaction(
        self, sender: str, recipient: str, payload: bytes, then: NextMail | None = None
    ) -> None:
        """One mail: returns once the relay accepted it, raises Permanent- or
        TemporaryFailure otherwise. ``payload`` comes from :func:`data_payload`.

        With PIPELINING, once the relay has accepted this mail's envelope,
        ``then()`` is asked for the mail this session sends next (sender,
        recipient, message, or None); its envelope is
        written behind this mail's data, and its transaction must follow. Asking
        only then means no mail is held back while a session opens or an
        envelope is refused."""
        mail, rcpt = self._commands(sender, recipient, payload)
        if self._ahead is not None and self._ahead != mail + rcpt:
            raise TemporaryFailure("internal error: another mail's envelope is pending")
        self.in_sync = False
        replies = await self._envelope_replies(mail, rcpt)
        refusal = _first_refusal(replies)
        if refusal is None:
            await self._data(payload, then)
            return
        data_opened = len(replies) == 3 and replies[2][0] == 354
        raise await self._envelope_refused(*refusal, data_opened=data_opened)

    async def _envelope_replies(self, mail: bytes, rcpt: bytes) -> list[Reply]:
        """The replies to MAIL, RCPT and DATA: already written behind the previous
        mail's data, written now in one go (PIPELINING), or one at a time, up to
        the first refusal."""
        if self._ahead is not None:
            self._ahead = None
            return [await self.reply(), await self.reply(), await self.reply()]
        if self.pipelining:
            self.write(mail + rcpt + b"DATA\r\n")
            return [await self.reply(), await self.reply(), await self.reply()]
        replies = [await self._command(mail)]
        if replies[0][0] == 250:
            replies.append(await self._command(rcpt))
            if replies[1][0] in (250, 251):
                replies.append(await self._command(b"DATA\r\n"))
        return replies

    async def _envelope_refused(self, code: int, text: str, *, data_opened: bool) -> Exception:
        """Leave nothing of a refused envelope on the session (reset it, or close
        it when that is not certain); returns the failure to raise."""
        if code == 421:  # the relay is closing this session
            self._goodbye(code, text)
            return failure(code, text)
        if code == 503:
            # "Bad sequence of commands" to the first command that failed: the relay
            # holds a transaction we do not (Postfix's "nested MAIL command"). Nothing
            # is known about this mail, and nothing more may go on this session.
            self._break(f"session out of step: {code} {text}")
            return TemporaryFailure(f"session out of step: {code} {text}")
        if data_opened:
            # DATA opened although the envelope was refused: ending the message would
            # deliver an empty mail to whatever recipients the relay holds. Closing
            # the connection in the middle of the data discards it.
            self._break(f"DATA accepted after a refused envelope: {code} {text}")
            return failure(code, text)
        await self._reset()
        return failure(code, text)

    async def _data(self, payload: bytes, then: NextMail | None) -> None:
        """The message content of a mail whose envelope was accepted, and its reply."""
        ahead = self._envelope_ahead(then() if then is not None and self.pipelining else None)
        if ahead is None:
            self.write(payload)
        else:
            self.write(payload + ahead + b"DATA\r\n")
            self._ahead = ahead
        code, text = await self.reply(self.data_timeout)
        if code == 250:
            self.in_sync = True
            return
        if code == 421:  # closing: an envelope written ahead goes on a new session
            self._goodbye(code, text)
        elif code == 503:
            self._break(f"session out of step: {code} {text}")
            raise TemporaryFailure(f"session out of step: {code} {text}")
        elif self._ahead is not None:
            # The relay may have kept the refused transaction open, reading the
            # envelope written ahead into it (its MAIL refused as nested, its RCPT
            # added, its DATA opened). Only a new session is certain to be clean.
            self._break(f"end of data refused with the next envelope written ahead: {code}")
        else:
            await self._reset()
        raise failure(code, text)

    async def _reset(self) -> None:
        """RSET after a refusal, so that no part of the refused transaction carries
        over to the next mail; a session that does not answer 250 is dropped."""
        try:
            code, text = await self._command(b"RSET\r\n")
        except TemporaryFailure:
            return  # lost: ``usable`` says so
        if code == 250:
            self.in_sync = True
        elif code == 421:
            self._goodbye(code, text)
        else:
            self._break(f"RSET refused: {code} {text}")

    def _goodbye(self, code: int, text: str) -> None:
        """The relay closes the session (421): a sign for the whole relay to slow down."""
        self.goodbye = f"{code} {text}".strip()
        self._break(self.goodbye)

    def _envelope_ahead(self, then: Outgoing | None) -> bytes | None:
        if then is None or not self.pipelining:
            return None
        sender, recipient, message = then
        try:
            return b"".join(self._commands(sender, recipient, data_payload(message)))
        except (PermanentFailure, TemporaryFailure):
            return None  # that mail goes on its own, and is refused on its own

    async def _command(self, line: bytes) -> Reply:
        self.write(line)
        return await self.reply()

    async def quit(self, within: float) -> None:
        """QUIT (waiting ``within`` seconds at most for the reply) and close."""
        with contextlib.suppress(TemporaryFailure):
            # With an envelope written ahead the relay may be reading message
            # content, and QUIT would start a mail; closing discards it instead.
            if self.usable and self._ahead is None:
                self.write(b"QUIT\r\n")
                await self.reply(within)
        self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TemporaryFailure("timeout: no reply from the relay"))


def _first_refusal(replies: list[Reply]) -> Reply | None:
    """The reply that stopped the envelope (MAIL, RCPT, DATA), or None if DATA may go."""
    expected = ((250,), (250, 251), (354,))
    for (code, text), ok in zip(replies, expected, strict=False):
        if code not in ok:
            return code, text
    return None
