"""What a loaded configuration must satisfy, and what ``serve`` refuses on top.

Each rule names its key in a one-line :class:`~resetd.config.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import os
import re
import ssl
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from .config import (
    DEV_SECRET_KEY,
    MIN_INBOX_PASSWORD,
    MIN_SECRET_KEY,
    MIN_WEBHOOK_SECRET,
    WEBHOOK_EVENTS,
    ApiConfig,
    Config,
    ConfigError,
    DevInboxConfig,
    LimitsConfig,
    MailConfig,
    PasswordConfig,
    ResetConfig,
    ServerConfig,
    UsersConfig,
    WebhooksConfig,
)
from .errors import UnsendableAddress
from .hosts import check_pattern, is_local_host, serialized_origin
from .i18n import SHIPPED
from .mail_headers import check_address

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MIN_RECIPIENTS = 100


def _check_sender(sender: str) -> None:
    """``[mail] sender`` goes into the From header and the envelope: no control
    characters (a line break would add headers to every mail), and an address
    the outbox can send from."""
    if not sender.isprintable():
        raise ConfigError(f"[mail] sender: control characters are not allowed, got {sender!r}")
    addr = parseaddr(sender)[1]
    if "@" not in sender or not addr:
        raise ConfigError(f"[mail] sender: expected an address, got {sender!r}")
    try:
        check_address(addr)
    except UnsendableAddress as exc:
        raise ConfigError(f"[mail] sender: {exc}, got {sender!r}") from None


def validate(cfg: Config) -> None:
    """Raises ConfigError for the first rule ``cfg`` breaks, section by section."""
    _check_server(cfg.server)
    _check_mail(cfg.mail)
    _check_reset(cfg.reset)
    _check_api(cfg.api)
    _check_limits(cfg.limits)
    _check_session_lifetimes(cfg)
    _check_passwords(cfg.passwords)
    _check_sign_in(cfg.server)
    _check_users(cfg.users)
    _check_dev_inbox(cfg.dev_inbox)
    _check_webhooks(cfg.webhooks)
    _check_paths(cfg)
    _check_database(cfg)
    token = cfg.metrics.token
    if token and (len(token) < MIN_SECRET_KEY or not token.isascii() or not token.isprintable()):
        raise ConfigError(
            f"[metrics] token: use at least {MIN_SECRET_KEY} random printable ASCII characters"
        )


def _check_server(s: ServerConfig) -> None:
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"[server] port: expected 0-65535, got {s.port}")
    parts = urlsplit(s.public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"[server] public_url: expected an absolute http:// or https:// URL, "
            f"got {s.public_url!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigError("[server] public_url: must not contain a query or fragment")
    _check_public_path(s.public_url, parts.path)
    if not s.secret_key:
        raise ConfigError("[server] secret_key: missing (set it in the file or SECRET_KEY)")
    if len(s.secret_key) < MIN_SECRET_KEY:
        raise ConfigError(
            f"[server] secret_key: too short, use at least {MIN_SECRET_KEY} random characters"
        )
    for n, fallback in enumerate(s.secret_key_fallbacks, start=1):
        if len(fallback) < MIN_SECRET_KEY:
            raise ConfigError(
                f"[server] secret_key_fallbacks: entry {n} is too short, use at least "
                f"{MIN_SECRET_KEY} random characters"
            )
    for pattern in s.allowed_hosts:
        if check_pattern(pattern) is None:
            raise ConfigError(
                f"[server] allowed_hosts: {pattern!r} is not a host name, an IP address, "
                "'.domain' (the domain and its subdomains) or '*' (ports are not part of it)"
            )
    _check_look(s)
    for key in ("header_timeout", "body_timeout"):
        seconds = getattr(s, key)
        if not 0 < seconds <= 3600:
            raise ConfigError(
                f"[server] {key}: expected more than 0 and at most 3600 seconds, got {seconds:g}"
            )
    for proxy in s.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"[server] trusted_proxies: {proxy!r} is not an IP address or network"
            ) from None


# A path resetd is served under: segments of unreserved characters, nothing a
# proxy or a browser would rewrite (no "..", no percent-escapes, no "//").
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,63}")


def _check_public_path(url: str, path: str) -> None:
    """public_url's path, when it has one, is where every route lives (``/auth``)."""
    trimmed = path.rstrip("/")
    if not trimmed:
        return
    segments = trimmed.split("/")[1:]
    if len(segments) > 8 or not all(_PATH_SEGMENT.fullmatch(seg) for seg in segments):
        raise ConfigError(
            f"[server] public_url: the path resetd is served under must be like /auth "
            f"(letters, digits, '-', '_', '~', '.'; no '..' or empty segments), got {url!r}"
        )


def _check_mail(m: MailConfig) -> None:
    if not 0 <= m.port <= 65535:
        raise ConfigError(f"[mail] port: expected 0-65535, got {m.port}")
    if m.use_tls and m.use_ssl:
        raise ConfigError("[mail] use_tls: cannot be combined with use_ssl; choose one")
    if m.pool_size < 1 or m.pool_size > 64:
        raise ConfigError(f"[mail] pool_size: expected 1-64, got {m.pool_size}")
    if m.timeout <= 0:
        raise ConfigError(f"[mail] timeout: expected a positive number, got {m.timeout}")
    if m.data_timeout <= 0:
        raise ConfigError(f"[mail] data_timeout: expected a positive number, got {m.data_timeout}")
    if m.ca_file:
        _check_ca_file(m.ca_file, m.use_tls or m.use_ssl)
    if m.max_age <= 0:
        raise ConfigError(f"[mail] max_age: expected a positive number, got {m.max_age}")
    if m.backoff_cap <= 0:
        raise ConfigError(f"[mail] backoff_cap: expected a positive number, got {m.backoff_cap}")
    if not 0 < m.retry_base <= m.backoff_cap:
        raise ConfigError(
            f"[mail] retry_base: expected a positive number up to backoff_cap, got {m.retry_base}"
        )
    _check_sender(m.sender)


def _check_reset(r: ResetConfig) -> None:
    if r.token_ttl < 30 or r.token_ttl > 86400:
        raise ConfigError(f"[reset] token_ttl: expected 30-86400 seconds, got {r.token_ttl}")
    if r.link_url:
        _check_link_url(r.link_url)


def _check_link_url(url: str) -> None:
    """The mailed link, pointing at a front end: an https URL (or http on this
    machine) holding ``{token}`` once. It comes from the configuration only;
    nothing in a request can change it."""
    where = "[reset] link_url"
    if url.count("{token}") != 1:
        raise ConfigError(f"{where}: must contain {{token}} exactly once, got {url!r}")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise ConfigError(f"{where}: white space and control characters are not allowed")
    parts = urlsplit(url.replace("{token}", "TOKEN"))
    try:
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        raise ConfigError(f"{where}: the port is not valid, got {url!r}") from None
    if "{" in url.replace("{token}", "") or "}" in url.replace("{token}", ""):
        raise ConfigError(f"{where}: only {{token}} may stand in braces, got {url!r}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ConfigError(f"{where}: expected an absolute URL with a host, got {url!r}")
    if "TOKEN" in parts.netloc:
        raise ConfigError(f"{where}: {{token}} cannot be part of the host, got {url!r}")
    local = is_local_host(parts.hostname)
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise ConfigError(
            f"{where}: expected an https:// URL (http:// only on this machine), got {url!r}"
        )


def _check_api(a: ApiConfig) -> None:
    for origin in a.cors_origins:
        if serialized_origin(origin) != origin:
            raise ConfigError(
                "[api] cors_origins: expected origins such as https://app.example.com (scheme, "
                f"lower-case host, port if not the default; no path, no '*'), got {origin!r}"
            )


MAX_HASHES_QUEUED = 1000


def _check_limits(limits: LimitsConfig) -> None:
    for f in dataclasses.fields(LimitsConfig):
        value = getattr(limits, f.name)
        if value < 1:
            raise ConfigError(f"[limits] {f.name}: expected a positive integer, got {value}")
    if limits.logins_in_progress > MAX_HASHES_QUEUED:
        # The hashing queue scans its waiting hashes on every arrival; and at ~25
        # hashes a second per thread, a thousand waiting is a wait of 40 s already.
        raise ConfigError(
            f"[limits] logins_in_progress: expected at most {MAX_HASHES_QUEUED}, "
            f"got {limits.logins_in_progress}"
        )
    for key in ("failed_logins_per_account_window", "failed_logins_per_ip_window"):
        # Counters are purged two days after their window starts.
        if getattr(limits, key) > 86400:
            raise ConfigError(
                f"[limits] {key}: expected at most 86400 seconds, got {getattr(limits, key)}"
            )


def _check_passwords(p: PasswordConfig) -> None:
    if p.min_length < 8:
        raise ConfigError(f"[passwords] min_length: must be at least 8, got {p.min_length}")
    if p.max_length < max(64, p.min_length):
        raise ConfigError(
            f"[passwords] max_length: must be at least 64 and min_length, got {p.max_length}"
        )
    if p.argon2_memory_cost < 8192 or p.argon2_time_cost < 1 or p.argon2_parallelism < 1:
        raise ConfigError(
            "[passwords] argon2_*: below OWASP's floor (memory_cost >= 8192 KiB, time_cost >= 1)"
        )


MAX_SITE_NAME = 100


def _check_look(s: ServerConfig) -> None:
    """The name, the template and static directories, the languages."""
    name = s.site_name
    # It goes into every subject line and page title: one printable line.
    if not name.strip() or not name.isprintable() or len(name) > MAX_SITE_NAME:
        raise ConfigError(
            f"[server] site_name: expected 1-{MAX_SITE_NAME} printable characters "
            f"on one line, got {name!r}"
        )
    for key in ("templates", "static"):
        path = getattr(s, key)
        if path and not Path(path).is_dir():
            raise ConfigError(f"[server] {key}: not a directory: {path!r}")
    for lang in s.languages:
        if lang not in SHIPPED:
            raise ConfigError(
                f"[server] languages: {lang!r} is not shipped (shipped: {', '.join(SHIPPED)})"
            )
    if len(set(s.languages)) != len(s.languages):
        raise ConfigError("[server] languages: a language is listed twice")


def _check_sign_in(s: ServerConfig) -> None:
    """Where users sign in: resetd's own pages, or the host application's."""
    if s.login_url and not (
        (s.login_url.startswith("/") and not s.login_url.startswith("//"))
        or urlsplit(s.login_url).scheme in ("http", "https")
    ):
        raise ConfigError(
            "[server] login_url: expected a path like /login or an http(s) URL, "
            f"got {s.login_url!r}"
        )
    if not s.login_pages and not s.login_url:
        raise ConfigError(
            "[server] login_pages: false needs [server] login_url (where users sign in instead)"
        )


def _check_users(u: UsersConfig) -> None:
    if u.store not in ("resetd", "sqlite", "postgresql"):
        raise ConfigError(
            f'[users] store: expected "resetd", "sqlite" or "postgresql", got {u.store!r}'
        )
    if u.hash_format and u.hash_format not in ("argon2", "werkzeug", "bcrypt"):
        raise ConfigError(
            f"[users] hash_format: expected argon2, werkzeug or bcrypt, got {u.hash_format!r}"
        )
    if u.store != "postgresql":
        for key in ("url", "schema"):
            if getattr(u, key):
                raise ConfigError(f'[users] {key}: only for store = "postgresql"; remove it')
    if u.store == "sqlite" and not u.path:
        raise ConfigError('[users] path: required when store = "sqlite" (the app\'s database)')
    if u.store == "postgresql":
        if u.path:
            raise ConfigError(
                '[users] path: only for store = "sqlite"; the app\'s PostgreSQL '
                "database is [users] url"
            )
        if not _IDENTIFIER.fullmatch(u.schema) or u.schema.lower().startswith("pg_"):
            raise ConfigError(
                "[users] schema: expected a plain SQL identifier (not starting with pg_), "
                f"got {u.schema!r}"
            )
        _check_driver("[users] url")
    if u.store in ("sqlite", "postgresql"):
        for key in (
            "table",
            "id_column",
            "email_column",
            "username_column",
            "password_hash_column",
        ):
            value = getattr(u, key)
            if not _IDENTIFIER.fullmatch(value):
                raise ConfigError(f"[users] {key}: expected a plain SQL identifier, got {value!r}")


def _check_dev_inbox(d: DevInboxConfig) -> None:
    if d.allow_remote and len(d.password) < MIN_INBOX_PASSWORD:
        raise ConfigError(
            f"[dev_inbox] password: allow_remote = true needs a password of at least "
            f"{MIN_INBOX_PASSWORD} characters (it guards every captured reset link)"
        )
    if not 0 <= d.smtp_port <= 65535:
        raise ConfigError(f"[dev_inbox] smtp_port: expected 0-65535, got {d.smtp_port}")
    if not -1 <= d.smtps_port <= 65535:
        raise ConfigError(
            f"[dev_inbox] smtps_port: expected 0-65535 (or -1: off), got {d.smtps_port}"
        )
    if d.smtps_port > 0 and d.smtps_port == d.smtp_port:
        raise ConfigError(f"[dev_inbox] smtps_port: the same port as smtp_port ({d.smtp_port})")
    if d.tls_cert or d.tls_key:
        _check_tls_pair(d)
    if d.max_messages < 1:
        raise ConfigError(f"[dev_inbox] max_messages: expected >= 1, got {d.max_messages}")
    if d.max_message_size < 1024:
        raise ConfigError(
            f"[dev_inbox] max_message_size: expected >= 1024 bytes, got {d.max_message_size}"
        )
    if d.max_recipients < MIN_RECIPIENTS:
        # RFC 5321 §4.5.3.1.8: a server must take at least 100 recipients per message.
        raise ConfigError(
            f"[dev_inbox] max_recipients: expected >= {MIN_RECIPIENTS}, got {d.max_recipients}"
        )

    if not 0 < d.parse_timeout <= 600:
        raise ConfigError(
            f"[dev_inbox] parse_timeout: expected 0-600 seconds (not 0), got {d.parse_timeout}"
        )
    _check_inbox_outbound(d)


def _check_inbox_outbound(d: DevInboxConfig) -> None:
    """The keys for mail leaving the inbox: its webhook and releases."""
    if d.webhook_url and not d.webhook_url.lower().startswith(("http://", "https://")):
        raise ConfigError(
            f"[dev_inbox] webhook_url: expected an http:// or https:// URL, got {d.webhook_url!r}"
        )
    if not 1 <= d.release_port <= 65535:
        raise ConfigError(f"[dev_inbox] release_port: expected 1-65535, got {d.release_port}")
    for pattern in d.release_allowed:
        if pattern.count("@") != 1 or any(c.isspace() or c in '<>,"' for c in pattern):
            raise ConfigError(
                f"[dev_inbox] release_allowed: expected address patterns like "
                f"'*@example.com', got {pattern!r}"
            )


def _check_webhooks(w: WebhooksConfig) -> None:
    """The app's endpoint gets every event with its account's address: over TLS,
    or over plain HTTP only to this machine."""
    if not w.url:
        if w.secret:
            raise ConfigError("[webhooks] url: missing, while [webhooks] secret is set")
        return
    if not (w.url.isascii() and w.url.isprintable()) or " " in w.url:
        # Checked first: urlsplit quietly drops tabs and line breaks.
        raise ConfigError(
            "[webhooks] url: expected printable ASCII without spaces (percent-encode the rest)"
        )
    parts = urlsplit(w.url)
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        raise ConfigError(f"[webhooks] url: not a valid port in {w.url!r}") from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"[webhooks] url: expected an absolute https:// URL, got {w.url!r}")
    if parts.scheme == "http" and not is_local_host(host):
        raise ConfigError(
            f"[webhooks] url: plain http is allowed to a loopback host only; use https:// "
            f"for {host!r}"
        )
    if parts.username is not None or parts.password is not None:
        # Shown by `resetd outbox` and in logs; the secret authenticates resetd.
        raise ConfigError("[webhooks] url: must not contain a user name or password")
    if parts.fragment:
        raise ConfigError("[webhooks] url: must not contain a fragment")
    if len(w.secret) < MIN_WEBHOOK_SECRET:
        raise ConfigError(
            f"[webhooks] secret: {'missing' if not w.secret else 'too short'}, use at least "
            f"{MIN_WEBHOOK_SECRET} random characters (the app checks each event's signature "
            "with it)"
        )
    if not w.events:
        raise ConfigError(f"[webhooks] events: expected one or more of {', '.join(WEBHOOK_EVENTS)}")
    for event in w.events:
        if event not in WEBHOOK_EVENTS:
            raise ConfigError(
                f"[webhooks] events: unknown event {event!r} (known: {', '.join(WEBHOOK_EVENTS)})"
            )
    if not 0 < w.timeout <= 60:
        raise ConfigError(
            f"[webhooks] timeout: expected more than 0 and at most 60 seconds, got {w.timeout:g}"
        )


def _check_paths(cfg: Config) -> None:
    for section, path in (("database", cfg.database.path), ("dev_inbox", cfg.dev_inbox.path)):
        if path in ("", ":memory:"):
            # An in-memory database exists for one connection only, and each
            # database is written from a thread of its own beside the app's reads.
            raise ConfigError(f"[{section}] path: expected a file, got {path!r}")
    if not 0 <= cfg.database.keep_days <= 36500:
        raise ConfigError(
            "[database] keep_days: expected 0 (keep everything) to 36500 days, "
            f"got {cfg.database.keep_days}"
        )


# A schema name as PostgreSQL folds an unquoted one: lower case, at most 63 bytes.
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
MAX_POOL_SIZE = 1000


def _check_database(cfg: Config) -> None:
    d = cfg.database
    if not 1 <= d.pool_size <= MAX_POOL_SIZE:
        raise ConfigError(
            f"[database] pool_size: expected 1-{MAX_POOL_SIZE} connections, got {d.pool_size}"
        )
    if d.engine == "sqlite":
        if d.schema:
            raise ConfigError(
                "[database] schema: only for a postgresql:// url (a SQLite file holds "
                "one resetd's tables); remove it"
            )
        return
    if not _SCHEMA.fullmatch(d.schema) or d.schema.startswith("pg_"):
        raise ConfigError(
            "[database] schema: expected a plain lower-case name (a-z, 0-9, _; at most 63, "
            f"not starting with pg_), got {d.schema!r}"
        )
    if d.schema == "information_schema":
        raise ConfigError("[database] schema: information_schema is PostgreSQL's own")
    _check_driver("[database] url")


def _check_driver(where: str) -> None:
    # Present, not imported: only the storage layer imports the driver.
    if not all(importlib.util.find_spec(name) for name in ("psycopg", "psycopg_pool")):
        raise ConfigError(
            f"{where}: PostgreSQL needs the postgresql extra: pip install 'resetd[postgresql]'"
        )


def _check_session_lifetimes(cfg: Config) -> None:
    s = cfg.server
    for key in (
        "session_idle",
        "session_max_age",
        "session_remember_idle",
        "session_remember_max_age",
    ):
        value = getattr(s, key)
        if not 60 <= value <= 366 * 86400:
            raise ConfigError(f"[server] {key}: expected 60-31622400 seconds, got {value}")
    pairs = (
        ("session_idle", "session_max_age"),
        ("session_remember_idle", "session_remember_max_age"),
        ("session_idle", "session_remember_idle"),
        ("session_max_age", "session_remember_max_age"),
    )
    for shorter, longer in pairs:
        if getattr(s, shorter) > getattr(s, longer):
            raise ConfigError(
                f"[server] {shorter}: must not exceed [server] {longer} "
                f"({getattr(s, shorter)} > {getattr(s, longer)})"
            )


def _check_tls_pair(d: DevInboxConfig) -> None:
    if not (d.tls_cert and d.tls_key):
        missing = "tls_key" if d.tls_cert else "tls_cert"
        raise ConfigError(f"[dev_inbox] {missing}: needed with the other of tls_cert / tls_key")
    if not d.tls:
        raise ConfigError(
            "[dev_inbox] tls_cert: only used over TLS; set [dev_inbox] starttls = true "
            "or smtps_port as well"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for key in ("tls_cert", "tls_key"):
        path = getattr(d, key)
        if not os.path.isfile(path):
            raise ConfigError(f"[dev_inbox] {key}: no such file: {path!r}")
    try:
        context.load_cert_chain(d.tls_cert, d.tls_key)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise ConfigError(
            f"[dev_inbox] tls_cert: cannot use {d.tls_cert!r} with {d.tls_key!r}: {exc}"
        ) from None


def _check_ca_file(path: str, tls: bool) -> None:
    if not tls:
        raise ConfigError(
            "[mail] ca_file: only used over TLS; set [mail] use_tls or use_ssl as well"
        )
    try:
        context = ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise ConfigError(f"[mail] ca_file: no such file: {path!r}") from None
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise ConfigError(f"[mail] ca_file: cannot read {path!r}: {exc}") from None
    if not context.cert_store_stats()["x509"]:
        raise ConfigError(f"[mail] ca_file: no CA certificate (PEM) in {path!r}")


def check_serve_safety(cfg: Config) -> None:
    """Refusals that apply to ``serve`` only (the CLI's user commands stay usable).

    Both the development secret and the dev inbox are for a resetd that only
    this machine can reach: listening on loopback, with a loopback public_url.
    """
    s = cfg.server
    public_host = urlsplit(s.public_url).hostname or ""
    local_url, local_bind = is_local_host(public_host), is_local_host(s.host)
    if DEV_SECRET_KEY in (s.secret_key, *s.secret_key_fallbacks) and not (local_url and local_bind):
        key = "secret_key" if s.secret_key == DEV_SECRET_KEY else "secret_key_fallbacks"
        where = f"public_url is {s.public_url!r}" if not local_url else f"host is {s.host!r}"
        raise ConfigError(
            f"[server] {key}: still the development value while {where}; set a random "
            "secret (SECRET_KEY) before exposing resetd"
        )
    d = cfg.dev_inbox
    if not d.enabled or d.allow_remote:  # allow_remote implies a password (validate)
        return
    if not local_bind:
        raise ConfigError(
            f"[dev_inbox] enabled: refusing to serve the dev inbox on non-loopback "
            f"[server] host {s.host!r}; bind 127.0.0.1, disable the inbox, or set "
            "[dev_inbox] allow_remote = true with a password"
        )
    if not local_url:
        raise ConfigError(
            f"[dev_inbox] enabled: refusing to serve the dev inbox while [server] public_url "
            f"{s.public_url!r} is not a loopback URL (a proxy in front would expose it); "
            "disable the inbox, or set [dev_inbox] allow_remote = true with a password"
        )
    if not is_local_host(d.smtp_host):
        raise ConfigError(
            f"[dev_inbox] smtp_host: refusing to accept mail on non-loopback {d.smtp_host!r}"
        )
