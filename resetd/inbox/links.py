"""The links in a message, and what the server thinks of any reset link among them.

Links are read from the HTML part (``<a href>`` with its anchor text) and the
text part (bare ``http(s)://`` URLs) without making any request. A link is of
kind ``reset`` when it is ``<public_url>/reset_password/<token>``; for those,
:func:`reset_info` decodes the token's claims (signature checked, expiry not)
to show them, and judges the token with the reset page's own
:func:`~resetd.reset.tokens.check_token`, without consuming anything.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .. import keys
from ..reset.tokens import TokenInvalid, TokenState, check_token

_URL = re.compile(r"""https?://[^\s<>"'`]+""", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""
MAX_LINKS = 500


@dataclass(frozen=True)
class Link:
    url: str
    text: str
    part: str  # "html" or "text"
    kind: str  # "reset" or "other"

    def as_json(self) -> dict[str, str]:
        return {"URL": self.url, "Text": self.text, "Part": self.part, "Kind": self.kind}


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._close()
            href = dict(attrs).get("href")
            self._href = href.strip() if href else None
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._close()

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def _close(self) -> None:
        if self._href:
            self.found.append((self._href, " ".join("".join(self._text).split())))
        self._href = None

    def close(self) -> None:
        super().close()
        self._close()


def extract_links(text: str, html: str, public_origin: str) -> list[Link]:
    """Every distinct (URL, part) in the mail, HTML first, in document order."""
    links: list[Link] = []
    seen: set[tuple[str, str]] = set()

    def add(url: str, anchor: str, part: str) -> None:
        if (url, part) in seen or len(links) >= MAX_LINKS:
            return
        seen.add((url, part))
        links.append(
            Link(url, anchor, part, "reset" if reset_token(url, public_origin) else "other")
        )

    if html:
        parser = _Anchors()
        parser.feed(html)
        parser.close()
        for href, anchor in parser.found:
            if href.lower().startswith(("http://", "https://", "mailto:")):
                add(href, anchor, "html")
    for match in _URL.finditer(text):
        add(match.group(0).rstrip(_TRAILING), "", "text")
    return links


def reset_token(url: str, public_origin: str) -> str | None:
    """The token of a ``<public_url>/reset_password/<token>`` link, else None."""
    prefix = f"{public_origin}/reset_password/"
    if not url.startswith(prefix):
        return None
    token = unquote(url[len(prefix) :].split("?", 1)[0].split("#", 1)[0])
    return token if token and "/" not in token else None


async def reset_info(app: web.Application, url: str) -> dict[str, Any]:
    """Claims and current state of the reset link ``url`` (nothing is consumed)."""
    token = reset_token(url, app[keys.config].public_origin) or ""
    info: dict[str, Any] = {"url": url, "state": "invalid", "reason": "", "claims": None}
    try:
        claims = app[keys.codec].decode(token, verify_exp=False)
    except TokenInvalid as exc:
        info["reason"] = exc.reason
        return info
    info["claims"] = {
        "user_id": claims.user_id,
        "jti": claims.jti,
        "issued_at": claims.issued_at,
        "expires_at": claims.expires_at,
    }
    info["expires_in"] = max(0, int(claims.expires_at - time.time()))
    try:
        await check_token(token, app[keys.codec], app[keys.ledger], app[keys.users])
        state = TokenState.VALID
    except TokenInvalid as exc:
        state = exc.state
    info["state"] = str(state)
    return info
