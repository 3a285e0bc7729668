"""``[database] url``: which engine holds resetd's tables, and where.

Two spellings are understood:

* ``sqlite:///resetd.db`` (a path relative to the working directory) or
  ``sqlite:////var/lib/resetd/resetd.db`` (absolute): the embedded default;
* ``postgresql://user:password@host1,host2:5433/db?target_session_attrs=read-write``
  (``postgres://`` too), or a Unix socket: ``postgresql:///db?host=/run/postgresql``.
  The text goes to libpq as it is, so every libpq URI parameter works.

A PostgreSQL URL may carry a password, in its user part or as ``?password=``.
:func:`redacted_url` is the only form of it that reaches a banner, a log line, an
error or the CLI's output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote

Engine = Literal["sqlite", "postgresql"]

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
HIDDEN = "***"

# Query parameters whose value is a secret (libpq's names).
_SECRET_PARAMS = frozenset({"password", "sslpassword"})
_PORT = re.compile(r"[0-9]{1,5}")


class UrlError(ValueError):
    """A URL resetd cannot use; the message never contains a password."""


@dataclass(frozen=True)
class DatabaseUrl:
    engine: Engine
    sqlite_path: str  # "" for PostgreSQL
    text: str  # as given (for libpq); never print it, print redacted_url(text)


def engine_of(url: str) -> Engine | None:
    """The engine a URL names by its scheme, or None for an unknown scheme."""
    low = url[: len("postgresql://")].lower()
    if low.startswith(POSTGRES_SCHEMES):
        return "postgresql"
    if low.startswith("sqlite:"):
        return "sqlite"
    return None


def sqlite_url(path: str) -> str:
    """The URL spelling of a SQLite file path (``resetd.db`` → ``sqlite:///resetd.db``)."""
    return SQLITE_PREFIX + path


def parse_url(url: str) -> DatabaseUrl:
    """Check ``url``'s shape. Raises UrlError (its text free of any password).

    libpq checks a PostgreSQL URL's parameters once more when resetd connects;
    here are the mistakes that can be named without a driver: a scheme, a
    port, a database name missing from a SQLite URL.
    """
    engine = engine_of(url)
    if engine == "sqlite":
        if not url.startswith(SQLITE_PREFIX) or len(url) == len(SQLITE_PREFIX):
            raise UrlError(
                "expected sqlite:///relative/path.db or sqlite:////absolute/path.db, "
                f"got {url[:40]!r}"
            )
        path = unquote(url[len(SQLITE_PREFIX) :])
        if "?" in path or path == ":memory:":
            raise UrlError(f"expected a file path after sqlite:///, got {path!r}")
        return DatabaseUrl("sqlite", path, url)
    if engine == "postgresql":
        _check_postgres(url)
        return DatabaseUrl("postgresql", "", url)
    raise UrlError(
        "expected sqlite:///path.db or postgresql://user:password@host/dbname, "
        f"got a URL starting {url.split(':', 1)[0][:20]!r}"
    )


def _split(url: str) -> tuple[str, str, str, str]:
    """scheme://, user info (or ""), hosts (or ""), the rest (/db?query)."""
    scheme, _, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if not slash:
        authority, _, query = authority.partition("?")
        tail = "?" + query if query else ""
    else:
        tail = "/" + tail
    userinfo, at, hosts = authority.rpartition("@")
    if not at:
        userinfo, hosts = "", authority
    return scheme + "://", userinfo, hosts, tail


def _check_postgres(url: str) -> None:
    # libpq ends the user part at the first "@" or "/": an unencoded one in a
    # password would make part of it a host or a database name, which its error
    # messages (and ours) would then print.
    rest = url.partition("://")[2]
    authority, _, after = rest.partition("/")
    if authority.count("@") > 1 or "@" in after.partition("?")[0]:
        raise UrlError('percent-encode "@" and "/" in the user name and password (%40, %2F)')
    _, _, hosts, tail = _split(url)
    for host in hosts.split(",") if hosts else ():
        if host.startswith("["):  # [::1]:5432
            end = host.find("]")
            if end < 0:
                raise UrlError(f"unclosed [ in host {host!r}")
            port = host[end + 2 :] if host[end + 1 : end + 2] == ":" else ""
        else:
            port = host.partition(":")[2]
        if port and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
            raise UrlError(f"expected a port 1-65535 after the host, got {port!r}")
    _, _, query = tail.partition("?")
    for key, _value in parse_qsl(query, keep_blank_values=True):
        if not key:
            raise UrlError("a query parameter without a name")


def redacted_url(url: str) -> str:
    """``url`` with every password replaced by ``***``: the user part's
    (``user:***@host``) and a ``password=`` (or ``sslpassword=``) parameter's.
    A SQLite URL, which holds none, comes back unchanged."""
    if engine_of(url) != "postgresql":
        return url
    scheme, userinfo, hosts, tail = _split(url)
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        userinfo = user + (":" + HIDDEN if colon else "") + "@"
    path, qmark, query = tail.partition("?")
    if qmark:
        parts = []
        for item in query.split("&"):
            key, eq, _value = item.partition("=")
            if unquote(key).lower() in _SECRET_PARAMS:
                item = key + eq + HIDDEN
            parts.append(item)
        query = "&".join(parts)
    return scheme + userinfo + hosts + path + qmark + query


def password_of(url: str) -> list[str]:
    """The secrets a URL carries (decoded and as written), for scrubbing them
    out of a driver's error text; [] when it carries none."""
    if engine_of(url) != "postgresql":
        return []
    _, userinfo, _, tail = _split(url)
    found = []
    if ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    for key, value in parse_qsl(tail.partition("?")[2], keep_blank_values=True):
        if key.lower() in _SECRET_PARAMS:
            found.append(value)
            found.append(quote(value, safe=""))
    out = set()
    for secret in found:
        if secret:
            out.add(secret)
            out.add(unquote(secret))
    return sorted(out, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) with its passwords hidden."""
    for secret in password_of(url):
        text = text.replace(secret, HIDDEN)
    return text
