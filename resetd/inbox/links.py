"""The links in a message, and what the server thinks of any reset link among them.

The links themselves are found once at ingest (:func:`.digest.extract_links`:
``<a href>`` with its anchor text from the HTML part, bare ``http(s)://``
URLs from the text part) and stored; nothing here fetches anything. A link
is of kind ``reset`` when it is ``<public_url>/reset_password/<token>``, or
the shape ``[reset] link_url`` gives it (``https://app.example.com/reset#token=<token>``); for
those, :func:`reset_info` decodes the token's claims (signature checked,
expiry not) to show them, and judges the token with the reset page's own
:func:`~resetd.reset.tokens.check_token`, without consuming anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .. import keys
from ..config import Config
from ..reset.tokens import TokenInvalid, TokenState, check_token


@dataclass(frozen=True)
class Link:
    url: str
    text: str
    part: str  # "html" or "text"
    kind: str  # "reset" or "other"

    def as_json(self) -> dict[str, str]:
        return {"URL": self.url, "Text": self.text, "Part": self.part, "Kind": self.kind}


def with_kinds(found: Iterable[tuple[str, str, str]], cfg: Config) -> list[Link]:
    """The stored (URL, text, part) links, each with its kind."""
    return [
        Link(url, text, part, "reset" if reset_token(url, cfg) else "other")
        for url, text, part in found
    ]


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def reset_token(url: str, cfg: Config) -> str | None:
    """The token of a ``<public_url>/reset_password/<token>`` link, or of a link
    of ``[reset] link_url``'s shape, else None."""
    if cfg.reset.link_url:
        before, _, after = cfg.reset.link_url.partition("{token}")
        if len(url) > len(before) + len(after) and url.startswith(before) and url.endswith(after):
            token = url[len(before) : len(url) - len(after)]
            if all(c in _TOKEN_CHARS for c in token):
                return token
    prefix = f"{cfg.public_origin}/reset_password/"
    if not url.startswith(prefix):
        return None
    token = unquote(url[len(prefix) :].split("?", 1)[0].split("#", 1)[0])
    return token if token and "/" not in token else None


async def reset_info(app: web.Application, url: str) -> dict[str, Any]:
    """Claims and current state of the reset link ``url`` (nothing is consumed)."""
    token = reset_token(url, app[keys.config]) or ""
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
