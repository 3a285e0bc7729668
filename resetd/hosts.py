"""Which host a request names, whether resetd answers to it, and whether it is local.

resetd never builds a link from the Host header (``public_url`` is the only
source), but a Host it does not expect still means trouble: a DNS-rebinding
page that made a browser talk to the loopback port, or a proxy forwarding a
name nobody configured. As Django's ``ALLOWED_HOSTS`` does, such requests get
400. Loopback names and addresses are always accepted, whatever the port: no
outside page can make a browser send them, and local tools use them.

A request without any Host header names no host at all (HTTP/1.0 allows
that, and a load balancer's health check such as HAProxy's ``option httpchk``
sends exactly that); it is answered, since what the list guards against is a
Host an attacker chose, and a browser always sends one.

:func:`outside_reason` decides whether a request from a loopback peer may still
come from elsewhere (through a proxy on this host, from a DNS-rebinding page):
the dev inbox refuses such requests, and ``/readyz`` shows them no relay details.

Everything here scans untrusted text with plain string operations, in time
linear in its length (no regular expressions).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import urlsplit

from aiohttp import hdrs, web

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_DIGITS = frozenset("0123456789")
MAX_NAME = 253


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def normalise_name(name: str) -> str | None:
    """A bare host name or IP address, lower-cased, without a trailing dot.

    Returns None unless it is an ASCII DNS name (letters, digits, ``-`` and
    dots between non-empty labels), an IPv4 address, or an IPv6 address
    (without brackets).
    """
    if not name.isascii():  # before lower(): "K" (Kelvin sign) lowers to ASCII "k"
        return None
    name = name.lower()
    if ":" in name:
        address = _ip(name)
        return None if address is None or address.version != 6 else str(address)
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_NAME or not set(name) <= _NAME_CHARS:
        return None
    if name.startswith(".") or ".." in name:
        return None
    return name


# Nearly every request names one of a few hosts: its verdicts are remembered
# (bounded, so a stream of made-up names only evicts older ones).
@lru_cache(maxsize=1024)
def parse_host(value: str) -> str | None:
    """The host of a Host header (``name``, ``name:port``, ``[v6]:port``), or None if malformed."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if ":" not in name:
            return None
    else:
        name, sep, port = value.partition(":")
        rest = sep + port
    if rest and (rest[0] != ":" or len(rest) > 6 or not set(rest[1:]) <= _DIGITS):
        return None
    return normalise_name(name)


def is_loopback_name(name: str) -> bool:
    """``localhost``, a name under ``.localhost`` (RFC 6761), or a loopback address.

    ``name`` is one :func:`normalise_name` returned. An IPv4-mapped IPv6
    address counts as its IPv4 address.
    """
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return is_loopback_address(name)


def is_local_host(host: str) -> bool:
    """A host to listen on, or a URL's host, that only this machine can reach
    (a bracketed IPv6 address is taken too)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    name = normalise_name(bare)
    return name is not None and is_loopback_name(name)


def is_loopback_address(text: str | None) -> bool:
    """True for a loopback IP address (``127.0.0.0/8``, ``::1``, ``::ffff:127.x``).

    A scope suffix (``::1%lo``) is ignored; anything else, including None, is False.
    """
    if not text:
        return False
    address = _ip(text.split("%", 1)[0])
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


# What request_host returns for a request that names no host (no Host header,
# an origin-form target): falsy, and no name or pattern equals it.
NO_HOST = ""


def request_host(request: web.Request) -> str | None:
    """The host a request is addressed to; :data:`NO_HOST` when it names none,
    None when it names several or a malformed one.

    That is its one Host header, except for an absolute-form target
    (``GET http://name/ HTTP/1.1``), whose authority wins (RFC 9112 3.2.2).
    """
    values = request.headers.getall(hdrs.HOST, [])
    if len(values) > 1:
        return None
    target = request.raw_path  # the request target as sent
    if not target.startswith("/") and target != "*":  # absolute-form
        raw = request.url.raw_host
        return normalise_name(raw) if raw else None
    if not values:  # aiohttp takes HTTP/1.0 without Host (and refuses HTTP/1.1)
        return NO_HOST
    return parse_host(values[0])


def check_pattern(pattern: str) -> str | None:
    """An ``allowed_hosts`` entry, normalised; None if it is not one.

    ``*`` matches every host, ``.example.com`` the name and every name under
    it, anything else one name or address exactly. Ports are not part of it.
    """
    if pattern == "*":
        return pattern
    if pattern.startswith("."):
        name = normalise_name(pattern[1:])
        return None if name is None or ":" in name else "." + name
    bare = pattern[1:-1] if pattern.startswith("[") and pattern.endswith("]") else pattern
    if bare != pattern and ":" not in bare:
        return None
    return normalise_name(bare)


@lru_cache(maxsize=1024)
def host_allowed(name: str, patterns: tuple[str, ...]) -> bool:
    """Is ``name`` (from :func:`request_host`) a loopback name or matched by ``patterns``?"""
    if is_loopback_name(name):
        return True
    for pattern in patterns:
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith(".") and (name == pattern[1:] or name.endswith(pattern)):
            return True
    return False


# Headers a proxy adds: the standard ones and the common ad-hoc ones. Names are
# compared lower-cased with "_" read as "-" (some servers and CGI-style
# gateways treat them alike: ``X_Forwarded_For``); any ``X-Forwarded…`` or
# ``Forwarded-…`` header counts too.
PROXY_HEADERS = frozenset(
    {
        "forwarded",
        "via",
        "x-real-ip",
        "client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "akamai-client-ip",
        "x-original-forwarded-for",
        "x-originating-ip",
        "x-remote-ip",
        "x-remote-addr",
        "x-proxyuser-ip",
        "x-envoy-external-address",
        "x-host",
        "x-original-host",
    }
)


def proxy_header(request: web.Request) -> str | None:
    """The name of the first proxy header the request carries, or None."""
    for name in request.headers:
        lowered = name.lower().replace("_", "-")
        if (
            lowered in PROXY_HEADERS
            or lowered.startswith("x-forwarded")
            or lowered.startswith("forwarded-")
        ):
            return name
    return None


def _origin_is_local(origin: str) -> bool:
    scheme, sep, authority = origin.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return False  # includes "null": a sandboxed frame, a privacy redirect
    name = parse_host(authority)
    return name is not None and is_loopback_name(name)


def outside_reason(request: web.Request) -> str | None:
    """Why a request from a loopback peer may still come from elsewhere, or None.

    A reverse proxy on this host connects from loopback too, for whoever is on
    the other side: it shows in its headers. A DNS-rebinding page reaches the
    loopback port under its own name: it shows in the Host (a request without
    one counts as elsewhere too) and the Origin. A request another site's page
    makes (``Sec-Fetch-Site: cross-site``, other than following a link) is
    from elsewhere as well.
    """
    header = proxy_header(request)
    if header is not None:
        return f"it carries the proxy header {header}"
    name = request_host(request)
    if not name or not is_loopback_name(name):
        return "its Host is not a loopback name or address"
    origin = request.headers.getall("Origin", [])
    if len(origin) > 1 or (origin and not _origin_is_local(origin[0])):
        return "its Origin is not a loopback origin"
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site" and not (
        request.method in ("GET", "HEAD")
        and request.headers.get("Sec-Fetch-Mode", "").lower() == "navigate"
    ):
        return "a page of another site sent it"
    return None


def is_local_request(request: web.Request) -> bool:
    """From a loopback peer, and nothing says it comes from elsewhere (:func:`outside_reason`)."""
    return is_loopback_address(request.remote) and outside_reason(request) is None


def serialized_origin(url: str) -> str | None:
    """The origin of ``url`` as a browser sends it in ``Origin``
    (``https://app.example.com``, ``http://127.0.0.1:5173``), or None when it is
    not an http(s) URL with a host. A non-ASCII host is None too: browsers send
    its A-label (``xn--…``), so that is what a configuration must name."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    if not parts.hostname.isascii():
        return None
    if parts.path or parts.query or parts.fragment or url.endswith(("?", "#")):
        return None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")
