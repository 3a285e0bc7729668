"""``POST /dev/inbox/api/v1/message/{ID}/release``: a captured mail relayed to real recipients.

As Mailpit's release: the body is ``{"To": [addresses]}``, the mail goes out
as captured except that its ``Bcc`` header is dropped and it gets a new
``Date`` and ``Message-ID``; the envelope sender is the mail's From address.

Off unless ``[dev_inbox] release_allowed`` lists address patterns
(``*@example.com``, ``qa+*@example.org``, an exact address): a captured
reset link is a live credential, so the inbox never sends one where nobody
said it may. Every recipient must match a pattern, or nothing is sent. The
relay is ``[dev_inbox] release_host`` (with ``release_port``,
``release_username``/``release_password``, ``release_starttls``) or, when that
is empty, ``[mail]``'s; a relay that is the inbox's own SMTP sink is refused,
since the mail would only be captured again.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from dataclasses import dataclass
from email.utils import formatdate, parseaddr
from typing import Any

import aiosmtplib
from aiohttp import web

from .. import keys
from ..bodies import read_json
from ..config import Config
from ..hosts import is_local_host
from ..outbox.relay import tls_context
from ..raw_headers import without_fields
from . import keys as ikeys
from .search import Query

log = logging.getLogger(__name__)

# Header fields replaced or dropped on the way out (lower-case names).
DROPPED = (b"bcc", b"date", b"message-id")
MAX_RELEASE_RECIPIENTS = 100


@dataclass(frozen=True)
class Relay:
    host: str
    port: int
    username: str
    password: str
    start_tls: bool
    implicit_tls: bool
    tls: ssl.SSLContext | None
    timeout: float


def relay_for(cfg: Config) -> Relay:
    """``[dev_inbox] release_*`` when ``release_host`` is set, else ``[mail]``'s relay."""
    d, m = cfg.dev_inbox, cfg.mail
    if d.release_host:
        tls = ssl.create_default_context() if d.release_starttls else None
        return Relay(d.release_host, d.release_port, d.release_username, d.release_password,
                     d.release_starttls, False, tls, m.timeout)  # fmt: skip
    tls = tls_context(m) if m.use_tls or m.use_ssl else None
    return Relay(m.server, m.port, m.username, m.password, m.use_tls, m.use_ssl, tls, m.timeout)


def matches(pattern: str, address: str) -> bool:
    """Whether ``address`` matches ``pattern``, where ``*`` stands for any run of characters.

    Case-insensitive; linear in the address for each ``*`` (no backtracking).
    """
    pieces = pattern.lower().split("*")
    text = address.lower()
    if len(pieces) == 1:
        return text == pieces[0]
    first, *middle, last = pieces
    if not text.startswith(first) or not text.endswith(last):
        return False
    at, end = len(first), len(text) - len(last)
    if at > end:
        return False
    for piece in middle:
        found = text.find(piece, at, end)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def for_release(raw: bytes) -> bytes:
    """``raw`` without its Bcc, Date and Message-ID fields, with a new Date and Message-ID."""
    fresh = f"Date: {formatdate(localtime=False)}\r\nMessage-ID: <{uuid.uuid4()}@resetd.inbox>\r\n"
    return fresh.encode() + without_fields(raw, DROPPED)


def _recipients(data: Any, allowed: tuple[str, ...]) -> list[str]:
    if not isinstance(data, dict) or not isinstance(data.get("To"), list):
        raise web.HTTPBadRequest(text='Expected {"To": [addresses]}.')
    wanted = data["To"]
    if not wanted:
        raise web.HTTPBadRequest(text="No valid addresses found")
    if len(wanted) > MAX_RELEASE_RECIPIENTS:
        raise web.HTTPBadRequest(text=f"To: at most {MAX_RELEASE_RECIPIENTS} addresses")
    addresses: list[str] = []
    refused: list[str] = []
    for item in wanted:
        if not isinstance(item, str) or len(item) > 320:
            raise web.HTTPBadRequest(text="To: expected a list of addresses")
        address = parseaddr(item)[1]
        if address.count("@") != 1 or any(c.isspace() or c in "<>,;" for c in address):
            raise web.HTTPBadRequest(text=f"Invalid email address: {item[:100]}")
        if not any(matches(p, address) for p in allowed):
            refused.append(address)
        addresses.append(address)
    if refused:
        word = "Address does" if len(refused) == 1 else "Addresses do"
        raise web.HTTPBadRequest(
            text=f"Failed: {word} not match [dev_inbox] release_allowed: {', '.join(refused)}"
        )
    return addresses


def _is_the_sink(request: web.Request, relay: Relay) -> bool:
    """Whether ``relay`` is the inbox's own SMTP sink (its configured or its bound address)."""
    cfg = request.app[keys.config]
    if not cfg.dev_inbox.release_host and cfg.relay_is_inbox:
        return True
    sink_host, sink_port = request.app[ikeys.smtp_address]
    same_host = relay.host == cfg.dev_inbox.smtp_host or relay.host == sink_host
    everywhere = sink_host in ("0.0.0.0", "::")  # noqa: S104 (what the sink bound)
    local = same_host or (is_local_host(relay.host) and (everywhere or is_local_host(sink_host)))
    return local and relay.port in (sink_port, cfg.dev_inbox.smtp_port)


async def release_message(request: web.Request) -> web.StreamResponse:
    cfg = request.app[keys.config]
    allowed = cfg.dev_inbox.release_allowed
    if not allowed:
        raise web.HTTPForbidden(
            text="Release is off: list the addresses it may send to in [dev_inbox] release_allowed."
        )
    store = request.app[ikeys.store]
    message_id = request.match_info["id"]
    if message_id == "latest":
        found = await store.latest(Query())
    else:
        found = await store.get(message_id)
    if found is None:
        raise web.HTTPNotFound(text="message not found")
    recipients = _recipients(await read_json(request), allowed)
    relay = relay_for(cfg)
    if _is_the_sink(request, relay):
        raise web.HTTPConflict(
            text="Release would send the mail back into this inbox: set [dev_inbox] release_host "
            "to a real relay."
        )
    sender = found.sender.address if found.sender else found.mail_from
    if not sender:
        raise web.HTTPBadRequest(text="No From header found")
    raw = await store.raw(found.id)
    if raw is None:
        raise web.HTTPNotFound(text="message not found")
    try:
        await aiosmtplib.send(
            for_release(raw),
            sender=sender,
            recipients=recipients,
            hostname=relay.host,
            port=relay.port,
            username=relay.username or None,
            password=relay.password or None,
            start_tls=relay.start_tls,
            use_tls=relay.implicit_tls,
            tls_context=relay.tls,
            timeout=relay.timeout,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        log.warning("dev inbox: releasing #%s failed: %s", found.id, exc)
        raise web.HTTPBadGateway(text=f"SMTP error: {exc}") from None
    log.info("dev inbox: released #%s to %s", found.id, ", ".join(recipients))
    return web.Response(text="ok")
