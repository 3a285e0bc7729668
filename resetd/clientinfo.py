"""Who is asking: the client IP (proxy-aware only for trusted peers) and user agent."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from . import keys
from .logs import UNSAFE_CHARS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(s, strict=False) for s in specs)


def _in(addr: str, nets: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in n for n in nets)


def client_ip(request: web.Request) -> str:
    """The socket peer, unless it is a trusted proxy: then the nearest untrusted
    address in X-Forwarded-For (walking right to left, as each proxy appends)."""
    peer = request.remote or "unknown"
    nets = request.app[keys.config].server.trusted_proxies
    if not nets:
        return peer
    trusted = parse_networks(nets)
    if not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


def user_agent(request: web.Request) -> str:
    """The User-Agent header, cut to 300 characters, as valid Unicode without controls.

    aiohttp decodes header bytes that are not UTF-8 to lone surrogates, which
    SQLite refuses (a 500, and the reset-request batch it was in); C1 controls
    would reach the terminal of whoever reads ``resetd audit``.
    """
    return UNSAFE_CHARS.sub("\ufffd", request.headers.get("User-Agent", "")[:300])
