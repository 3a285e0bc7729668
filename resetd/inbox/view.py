"""One message opened: bodies, headers, inline parts and attachments.

Built from the stored raw bytes each time a message is opened (in a worker
thread, since a large message is CPU work). Never raises for malformed input:
what could not be decoded is reported in ``problem``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .parse import (
    MIME_ERRORS,
    Part,
    headers,
    is_body,
    parse_bytes,
    payload_bytes,
    payload_text,
    walk,
)
from .parse import problems as defects

_CID = re.compile(r"""cid:([^"'\s)>]+)""", re.IGNORECASE)
# Inside the srcdoc document, on top of the page's own CSP: no script, ever.
IFRAME_CSP = "script-src 'none'; object-src 'none'; form-action 'none'; base-uri 'none'"


@dataclass(frozen=True)
class Attachment:
    part_id: str
    filename: str
    content_type: str
    content_id: str
    size: int

    def as_json(self) -> dict[str, object]:
        return {
            "PartID": self.part_id,
            "FileName": self.filename,
            "ContentType": self.content_type,
            "ContentID": self.content_id,
            "Size": self.size,
        }


@dataclass
class MessageView:
    text: str = ""
    html: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    inline: list[Attachment] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    problem: str = ""


def build_view(raw: bytes) -> MessageView:
    view = MessageView()
    issues: list[str] = []
    try:
        msg = parse_bytes(raw)
        issues.extend(defects(msg))
        view.headers = headers(msg)
        for part in walk(msg):
            if is_body(part):
                if part.content_type == "text/plain" and not view.text:
                    view.text = payload_text(part)
                    continue
                if part.content_type == "text/html" and not view.html:
                    view.html = payload_text(part)
                    continue
            item = Attachment(
                part.part_id,
                part.filename,
                part.content_type,
                part.content_id,
                len(payload_bytes(part)),
            )
            if part.content_id and part.disposition != "attachment":
                view.inline.append(item)
            else:
                view.attachments.append(item)
    except MIME_ERRORS as exc:
        issues.append(f"{type(exc).__name__}: {exc}")
    view.problem = ", ".join(issues)
    return view


def find_part(raw: bytes, part_id: str) -> tuple[Part, bytes] | None:
    """The leaf part ``part_id`` and its decoded content, or None."""
    try:
        for part in walk(parse_bytes(raw)):
            if part.part_id == part_id:
                return part, payload_bytes(part)
    except MIME_ERRORS:
        return None
    return None


def iframe_document(body: str, message_id: str, inline: list[Attachment]) -> str:
    """The mail's HTML prepared for ``<iframe sandbox srcdoc>``.

    ``cid:`` references point at the part URLs, links open in a new tab, and a
    meta CSP forbids scripts even if the sandbox attribute were ever lost.
    """
    by_cid = {a.content_id: a.part_id for a in inline if a.content_id}

    def cid_url(match: re.Match[str]) -> str:
        part_id = by_cid.get(match.group(1))
        if part_id is None:
            return match.group(0)
        return f"/dev/inbox/api/v1/message/{message_id}/part/{part_id}"

    head = (
        f'<meta http-equiv="Content-Security-Policy" content="{IFRAME_CSP}"><base target="_blank">'
    )
    return head + _CID.sub(cid_url, body)
