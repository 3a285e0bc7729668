"""How many connections the relay gets, and when it may get a new one.

A relay that refuses a connection (nothing listening, a ``421 too many
connections``, a greeting, TLS handshake or login that fails) or closes a
session with a 421 speaks about the client, not about one mail. Handled mail by
mail, each refusal is followed by another connection at once for the next
mail: hundreds of attempts a minute against a relay that allows ten. So the
outbox's connections (:mod:`resetd.outbox.relay`) share one :class:`RelayGate`:

* **fewer connections**: after a refusal, at most as many as are open and
  working (at least one); a connection without a session waits for its turn;
* **a shared wait** before the next new connection, from ``[mail] retry_base``
  doubling up to ``backoff_cap`` (jittered) while the refusals go on; sessions
  already open keep delivering meanwhile;
* **growing back**: each new session the relay accepts doubles the allowance up
  to where the relay last refused (TCP's slow start), and past that one more
  connection is allowed after every ``GROW_AFTER`` mails the relay accepts.

A start opens one connection first and doubles from there, so a relay that
refuses everything sees one attempt per wait, not ``pool_size`` at once.

The gate also keeps the relay's state for operators (:class:`RelayStatus`):
``ok``, ``backing_off``, ``tls_error`` or ``session_refused``, with the error and
a hint, shown by ``/readyz`` and ``resetd outbox``. A refusal sets it; a new
session or a mail the relay accepts sets it back to ``ok`` (a relay that allows
two sessions refuses the third and still takes every mail over the two).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..storage.outbox import RelayStatus
from .attempts import backoff
from .failures import CertificateRefused, SessionRefused, TemporaryFailure

log = logging.getLogger("resetd.outbox")


def _state_of(exc: TemporaryFailure) -> tuple[str, str, str]:
    if isinstance(exc, CertificateRefused):
        return "tls_error", exc.reply, exc.hint
    if isinstance(exc, SessionRefused):
        return "session_refused", exc.reply, exc.hint
    return "backing_off", str(exc), ""


class RelayGate:
    """Shared by one relay's connections. A *holder* (a connection) needs a slot to
    open a session; :meth:`admit` waits for one and for the shared wait to end.
    Connections report what the relay did: :meth:`opened`, :meth:`refused`,
    :meth:`lost`, :meth:`accepted`."""

    GROW_AFTER = 4  # mails accepted per extra connection, past the last refusal

    def __init__(self, size: int, retry_base: float, backoff_cap: float) -> None:
        self.size = size
        self.retry_base = retry_base
        self.backoff_cap = backoff_cap
        self.limit = 1  # connections allowed now
        self.ceiling = size  # the allowance doubles up to here, then grows slowly
        self.strikes = 0  # refusals since the relay last accepted a new session
        self.status = RelayStatus("unknown", time.time())
        self._wait_until = 0.0  # monotonic; no new session before
        self._slots: set[object] = set()  # holders allowed a session
        self._open: set[object] = set()  # holders with a working session
        self._credit = 0
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def open_sessions(self) -> int:
        return len(self._open)

    @property
    def saturated(self) -> bool:
        """Whether no more connections may open now: every slot is taken and the
        allowance is not growing, or a wait is on."""
        full = len(self._slots) >= self.limit >= self.ceiling
        return self._closed or full or self.retry_in() > 0

    def retry_in(self) -> float:
        """Seconds until a new session may be opened (0 when it may now)."""
        return max(0.0, self._wait_until - time.monotonic())

    async def admit(self, holder: object) -> None:
        """Return once ``holder`` may open a session: it holds a slot and the shared
        wait is over. Returns at once after :meth:`close`."""
        while not self._closed:
            changed = self._changed
            wait = self.retry_in()
            if wait <= 0:
                if holder in self._slots or len(self._slots) < self.limit:
                    self._slots.add(holder)
                    return
                await changed.wait()  # until a slot frees or the allowance grows
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    def may_open(self, holder: object) -> bool:
        """Whether ``holder`` may open a session now (see :meth:`admit`)."""
        return self._closed or (holder in self._slots and self.retry_in() <= 0)

    def opened(self, holder: object) -> None:
        """The relay accepted a new session from ``holder``."""
        self._slots.add(holder)
        self._open.add(holder)
        self.strikes = 0
        if self.limit < self.ceiling:
            self.limit = min(self.ceiling, max(self.limit, 2 * len(self._open)))
        self._well("connections")
        self._notify()

    def refused(self, holder: object, exc: TemporaryFailure) -> None:
        """``holder`` could not open a session, or the relay closed it with a 421:
        fewer connections, and a longer shared wait before the next new one."""
        self._open.discard(holder)
        # Holders without a working session wait for their turn again.
        self._slots &= self._open
        self.strikes += 1
        self.ceiling = self.limit = max(1, len(self._open))
        self._credit = 0
        delay = backoff(self.strikes, self.retry_base, self.backoff_cap)
        self._wait_until = time.monotonic() + delay
        state, error, hint = _state_of(exc)
        if (state, error) != (self.status.state, self.status.error):
            self.status = RelayStatus(state, time.time(), error, hint)
        log.warning(
            "outbox: relay refused a connection (%s); at most %d connection(s), "
            "the next new one in %.1f s",
            error,
            self.limit,
            delay,
        )
        self._notify()

    def lost(self, holder: object) -> None:
        """``holder``'s session ended for another reason (a drop, a timeout, our own
        close); its slot is kept, so it may reconnect."""
        self._open.discard(holder)

    def accepted(self) -> None:
        """The relay accepted a mail: it works, whatever it said to a connection
        before (one that allows two sessions refuses the third, and then takes
        every mail over the two); past the last refusal, room grows slowly."""
        self._well("mail")
        if self.limit >= self.size or self._wait_until > time.monotonic():
            return
        self._credit += 1
        if self._credit >= self.GROW_AFTER:
            self._credit = 0
            self.limit += 1
            self.ceiling = max(self.ceiling, self.limit)
            self._notify()

    def _well(self, what: str) -> None:
        """The relay accepted ``what``: its state is ``ok`` again. The shared wait
        and the allowance stay as they are: the next refusal still counts."""
        if self.status.state != "ok":
            if not self.status.healthy:
                log.info("outbox: the relay accepts %s again", what)
            self.status = RelayStatus("ok", time.time())

    def close(self) -> None:
        """Stop making anyone wait (the worker is stopping)."""
        self._closed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
