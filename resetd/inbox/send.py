"""``POST /dev/inbox/api/v1/send``: Mailpit's JSON message, built and stored as if sent.

The body is Mailpit's ``SendRequest``: ``From`` ``{Email, Name}``, ``To``,
``Cc`` and ``ReplyTo`` lists of the same, ``Bcc`` a list of addresses,
``Subject``, ``Text``, ``HTML``, ``Attachments`` ``[{Content (base64),
Filename, ContentType, ContentID}]`` (a ``ContentID`` makes it inline),
``Headers`` ``{name: value}`` and ``Tags`` (as an ``X-Tags`` header, which
ingest turns into tags). The answer is ``{"ID": …}`` once the message is
stored, so the next API call sees it.

The MIME is built by the stdlib's ``email`` package, which refuses line
breaks in header values, so no field can add a header of its own. Every part
is bounded: the request body, the list lengths, the built message
(``[dev_inbox] max_message_size``); anything wrong is a 400 naming the field.
"""

from __future__ import annotations

import binascii
import time
import uuid
from email.errors import HeaderDefect, HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from typing import Any, NamedTuple

from aiohttp import web

from .. import keys
from ..bodies import read_json
from ..errors import NotStored
from . import keys as ikeys
from .ingest import Incoming

# Headers the body's own fields set; Mailpit refuses them in Headers too.
RESTRICTED_HEADERS = frozenset(
    {"to", "from", "cc", "bcc", "reply-to", "date", "subject", "content-type", "mime-version"}
)
MAX_ATTACHMENTS = 100
MAX_HEADERS = 100
MAX_TAGS = 100
MAX_FIELD = 998  # a name, an address, a tag or a header value (RFC 5322's line)


def body_limit(max_message_size: int) -> int:
    """The largest request body: the message's bound, base64's third more, and room."""
    return max_message_size * 4 // 3 + 1024 * 1024


class SendError(ValueError):
    """The request cannot become a message; the text says which field and why."""


def _text(value: Any, field: str, limit: int | None = MAX_FIELD) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SendError(f"{field}: expected a string")
    if limit is not None and len(value) > limit:
        raise SendError(f"{field}: at most {limit} characters")
    return value


def _address(value: Any, field: str) -> Address:
    """``{"Email", "Name"}`` (or a bare address string) as a checked Address."""
    if isinstance(value, str):
        email, name = value, ""
    elif isinstance(value, dict):
        email = _text(value.get("Email"), f"{field} Email")
        name = _text(value.get("Name"), f"{field} Name")
    else:
        raise SendError(f'{field}: expected {{"Email": …, "Name": …}}')
    if not email or email.count("@") != 1 or any(c.isspace() or c in "<>,;" for c in email):
        raise SendError(f"{field}: invalid email address {email[:100]!r}")
    if any(c in name for c in "\r\n\0"):
        raise SendError(f"{field}: a name may not contain line breaks")
    try:
        return Address(display_name=name, addr_spec=email)
    except (ValueError, HeaderParseError, HeaderDefect, IndexError):
        raise SendError(f"{field}: invalid email address {email[:100]!r}") from None


def _addresses(body: dict[str, Any], field: str, limit: int) -> list[Address]:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SendError(f"{field}: expected a list")
    if len(value) > limit:
        raise SendError(f"{field}: at most {limit} addresses")
    return [_address(item, field) for item in value]


def _decode(content: Any, field: str) -> bytes:
    text = _text(content, field, limit=None)
    # As Mailpit: a data: URL (what a browser's readAsDataURL gives) keeps only its payload.
    payload = text.rpartition(",")[2]
    try:
        return binascii.a2b_base64(payload.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SendError(f"{field}: expected base64 content") from None


def _attach(msg: EmailMessage, item: Any, n: int) -> None:
    field = f"Attachments[{n}]"
    if not isinstance(item, dict):
        raise SendError(f"{field}: expected an object")
    data = _decode(item.get("Content"), f"{field} Content")
    filename = _text(item.get("Filename"), f"{field} Filename", 255)
    content_type = _text(item.get("ContentType"), f"{field} ContentType", 255)
    content_id = _text(item.get("ContentID"), f"{field} ContentID", 255).strip("<>")
    maintype, slash, subtype = (content_type or "application/octet-stream").partition("/")
    if not slash or not maintype or not subtype or not (maintype + subtype).isprintable():
        raise SendError(f"{field} ContentType: expected type/subtype, got {content_type!r}")
    if any(c in filename + content_id for c in "\r\n\0"):
        raise SendError(f"{field}: line breaks are not allowed")
    kw: dict[str, Any] = {"maintype": maintype, "subtype": subtype}
    if filename:
        kw["filename"] = filename
    if content_id:
        kw["cid"] = f"<{content_id}>"
        kw["disposition"] = "inline"
        html = msg.get_body(("html",))
        if isinstance(html, EmailMessage):
            html.add_related(data, **kw)
            return
    msg.add_attachment(data, **kw)


class Built(NamedTuple):
    mail_from: str  # the envelope's, as Mailpit: From's address
    recipients: list[str]  # To, Cc and Bcc
    raw: bytes
    message_id: str  # as ingest stores it: no angle brackets


def build_message(body: dict[str, Any], max_recipients: int) -> Built:
    """The message and its envelope from Mailpit's request body.

    Raises SendError with the field and the reason.
    """
    if not isinstance(body.get("From"), dict):
        raise SendError('From: expected {"Email": …, "Name": …}')
    sender = _address(body["From"], "From")
    to = _addresses(body, "To", max_recipients)
    cc = _addresses(body, "Cc", max_recipients)
    bcc = _addresses(body, "Bcc", max_recipients)
    reply_to = _addresses(body, "ReplyTo", max_recipients)
    recipients = [a.addr_spec for a in [*to, *cc, *bcc]]
    if len(recipients) > max_recipients:
        raise SendError(f"To, Cc, Bcc: at most {max_recipients} recipients in all")
    subject = _text(body.get("Subject"), "Subject", limit=None)
    text = _text(body.get("Text"), "Text", limit=None)
    html = _text(body.get("HTML"), "HTML", limit=None)
    msg = EmailMessage()
    try:
        msg["From"] = sender
        if to:
            msg["To"] = to
        if cc:
            msg["Cc"] = cc
        if reply_to:
            msg["Reply-To"] = reply_to
        msg["Subject"] = subject
    except ValueError as exc:
        raise SendError(f"Subject: {exc}") from None
    msg["Date"] = formatdate(localtime=False)
    _headers(msg, body)
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    attachments = body.get("Attachments") or []
    if not isinstance(attachments, list) or len(attachments) > MAX_ATTACHMENTS:
        raise SendError(f"Attachments: expected a list of at most {MAX_ATTACHMENTS}")
    for n, item in enumerate(attachments):
        _attach(msg, item, n)
    if "Message-ID" not in msg:
        msg["Message-ID"] = f"<{uuid.uuid4()}@resetd.inbox>"
    message_id = str(msg["Message-ID"]).strip().strip("<>")
    return Built(sender.addr_spec, recipients, msg.as_bytes(policy=SMTP), message_id)


def _headers(msg: EmailMessage, body: dict[str, Any]) -> None:
    """``Headers`` and ``Tags``, each refused when it would replace a field's header."""
    headers = body.get("Headers") or {}
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
        raise SendError(f"Headers: expected an object of at most {MAX_HEADERS} headers")
    tags = body.get("Tags") or []
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise SendError(f"Tags: expected a list of at most {MAX_TAGS} strings")
    restricted = RESTRICTED_HEADERS | ({"x-tags"} if tags else set())
    for name, value in headers.items():
        value = _text(value, f"Headers {name[:60]!r}")
        if name.lower() in restricted:
            raise SendError(f'Headers: cannot overwrite header: "{name[:60]}"')
        if not name or not all(33 <= ord(c) <= 126 and c != ":" for c in name):
            raise SendError(f"Headers: invalid header name {name[:60]!r}")
        try:
            msg[name] = value
        except ValueError:
            raise SendError(f"Headers {name[:60]!r}: line breaks are not allowed") from None
    cleaned = [_text(t, "Tags").strip() for t in tags]
    if any("," in t or any(c in t for c in "\r\n\0") for t in cleaned):
        raise SendError("Tags: a tag may not contain commas or line breaks")
    if any(cleaned):
        msg["X-Tags"] = ", ".join(t for t in cleaned if t)


async def send_message(request: web.Request) -> web.StreamResponse:
    cfg = request.app[keys.config].dev_inbox
    data = await read_json(request.clone(client_max_size=body_limit(cfg.max_message_size)))
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="Expected a JSON object (Mailpit's send request).")
    try:
        built = build_message(data, cfg.max_recipients)
    except SendError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    raw = built.raw
    if len(raw) > cfg.max_message_size:
        raise web.HTTPRequestEntityTooLarge(
            max_size=cfg.max_message_size,
            actual_size=len(raw),
            text=f"The message is {len(raw)} bytes, over [dev_inbox] max_message_size.",
        )
    incoming = Incoming(time.time(), built.mail_from, built.recipients, raw)
    try:
        await request.app[ikeys.writer].submit(incoming)
    except NotStored as exc:
        raise web.HTTPServiceUnavailable(text=f"The message could not be stored: {exc}") from None
    # The newest message with its Message-ID: ours is unique unless Headers gave one.
    message_id = await request.app[ikeys.store].id_of_message_id(built.message_id)
    if message_id is None:  # pruned at once (max_messages) or deleted meanwhile
        raise web.HTTPServiceUnavailable(text="The message was stored but is gone already.")
    return web.json_response({"ID": message_id})
