"""The outbox's side of HTTP: one signed POST of an event to ``[webhooks] url``.

Each attempt is signed anew, as Stripe signs its webhooks: the header
``Resetd-Signature: t=<unix seconds>,v1=<hex>`` carries the time of this
attempt and the HMAC-SHA256, keyed with ``[webhooks] secret``, of
``"<t>.<body>"``. The app recomputes it over the raw body, compares in
constant time and refuses a ``t`` too far from its clock, so a captured
request cannot be replayed later; a retry an hour on still verifies, because
its ``t`` is new.

:meth:`WebhookSender.send` returns when the app answered 2xx and raises
:class:`~resetd.outbox.failures.TemporaryFailure` for anything else: another
status (a redirect is never followed: it would take the signed event, with its
address, somewhere the operator did not name), a refused or dropped
connection, a certificate that does not verify, or no answer within
``[webhooks] timeout``. The reason names neither the secret nor the body.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import aiohttp

from .. import __version__
from ..config import WebhooksConfig
from .failures import TemporaryFailure

SIGNATURE_HEADER = "Resetd-Signature"
CONNECTIONS = 4  # events sent at once, each on its own connection at most


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Resetd-Signature`` value for ``body`` sent at ``timestamp``."""
    signed = str(timestamp).encode("ascii") + b"." + body
    mac = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def client_session(cfg: WebhooksConfig) -> aiohttp.ClientSession:
    """The session every event goes out through: bounded in time and in
    connections, keeping no cookies, reading no proxy settings from the
    environment."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=cfg.timeout),
        connector=aiohttp.TCPConnector(limit=CONNECTIONS),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": f"resetd/{__version__} (webhooks)"},
        trust_env=False,
    )


class WebhookSender:
    """POSTs event bodies to ``[webhooks] url`` through ``session``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        cfg: WebhooksConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.cfg = cfg
        self.clock = clock

    async def send(self, body: bytes) -> None:
        """Deliver one event; returns once the app answered 2xx. Raises
        TemporaryFailure (and nothing else from HTTP or the network)."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.cfg.secret, int(self.clock()), body),
        }
        try:
            async with self.session.post(
                self.cfg.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status, reason = resp.status, resp.reason or ""
        except TimeoutError:
            raise TemporaryFailure(f"no answer within {self.cfg.timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            # "Cannot connect to host H:P …" and why (refused, no such host, a
            # certificate): neither the path nor the query.
            raise TemporaryFailure(str(exc)[:300]) from None
        except aiohttp.ClientError as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        except OSError as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc.strerror or exc}") from None
        if 200 <= status < 300:
            return
        reply = f"HTTP {status} {reason[:100]}".strip()
        if 300 <= status < 400:
            raise TemporaryFailure(f"{reply}: redirects are not followed; fix [webhooks] url")
        raise TemporaryFailure(reply)
