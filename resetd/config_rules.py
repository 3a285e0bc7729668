"""What a loaded configuration must satisfy, and what ``serve`` refuses on top.

Each rule names its key in a one-line :class:`~resetd.config.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from urllib.parse import urlsplit

from .config import DEV_SECRET_KEY, Config, ConfigError, LimitsConfig

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def is_local_host(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate(cfg: Config) -> None:
    s = cfg.server
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
    if not s.secret_key:
        raise ConfigError("[server] secret_key: missing (set it in the file or SECRET_KEY)")
    if len(s.secret_key) < 16:
        raise ConfigError("[server] secret_key: too short, use at least 32 random characters")
    for proxy in s.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"[server] trusted_proxies: {proxy!r} is not an IP address or network"
            ) from None
    m = cfg.mail
    if not 0 <= m.port <= 65535:
        raise ConfigError(f"[mail] port: expected 0-65535, got {m.port}")
    if m.use_tls and m.use_ssl:
        raise ConfigError("[mail] use_tls: cannot be combined with use_ssl; choose one")
    if m.pool_size < 1 or m.pool_size > 64:
        raise ConfigError(f"[mail] pool_size: expected 1-64, got {m.pool_size}")
    if m.timeout <= 0:
        raise ConfigError(f"[mail] timeout: expected a positive number, got {m.timeout}")
    if m.max_age <= 0:
        raise ConfigError(f"[mail] max_age: expected a positive number, got {m.max_age}")
    if m.backoff_cap <= 0:
        raise ConfigError(f"[mail] backoff_cap: expected a positive number, got {m.backoff_cap}")
    if not 0 < m.retry_base <= m.backoff_cap:
        raise ConfigError(
            f"[mail] retry_base: expected a positive number up to backoff_cap, got {m.retry_base}"
        )
    if "@" not in m.sender:
        raise ConfigError(f"[mail] sender: expected an address, got {m.sender!r}")
    if cfg.reset.token_ttl < 30 or cfg.reset.token_ttl > 86400:
        raise ConfigError(
            f"[reset] token_ttl: expected 30-86400 seconds, got {cfg.reset.token_ttl}"
        )
    for f in dataclasses.fields(LimitsConfig):
        value = getattr(cfg.limits, f.name)
        if value < 1:
            raise ConfigError(f"[limits] {f.name}: expected a positive integer, got {value}")
    p = cfg.passwords
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
    u = cfg.users
    if u.store not in ("resetd", "sqlite"):
        raise ConfigError(f'[users] store: expected "resetd" or "sqlite", got {u.store!r}')
    if u.hash_format and u.hash_format not in ("argon2", "werkzeug", "bcrypt"):
        raise ConfigError(
            f"[users] hash_format: expected argon2, werkzeug or bcrypt, got {u.hash_format!r}"
        )
    if u.store == "sqlite":
        if not u.path:
            raise ConfigError('[users] path: required when store = "sqlite" (the app\'s database)')
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
    d = cfg.dev_inbox
    if not 0 <= d.smtp_port <= 65535:
        raise ConfigError(f"[dev_inbox] smtp_port: expected 0-65535, got {d.smtp_port}")
    if d.max_messages < 1:
        raise ConfigError(f"[dev_inbox] max_messages: expected >= 1, got {d.max_messages}")
    if d.max_message_size < 1024:
        raise ConfigError(
            f"[dev_inbox] max_message_size: expected >= 1024 bytes, got {d.max_message_size}"
        )
    if not 0 < d.parse_timeout <= 600:
        raise ConfigError(
            f"[dev_inbox] parse_timeout: expected 0-600 seconds (not 0), got {d.parse_timeout}"
        )
    for section, path in (("database", cfg.database.path), ("dev_inbox", d.path)):
        if path in ("", ":memory:"):
            # An in-memory database exists for one connection only, and each
            # database is written from a thread of its own beside the app's reads.
            raise ConfigError(f"[{section}] path: expected a file, got {path!r}")


def check_serve_safety(cfg: Config) -> None:
    """Refusals that apply to ``serve`` only (the CLI's user commands stay usable)."""
    host = urlsplit(cfg.server.public_url).hostname or ""
    if cfg.server.secret_key == DEV_SECRET_KEY and not is_local_host(host):
        raise ConfigError(
            "[server] secret_key: still the development value while public_url is "
            f"{cfg.server.public_url!r}; set a random secret (SECRET_KEY) before exposing resetd"
        )
    d = cfg.dev_inbox
    if d.enabled and not is_local_host(cfg.server.host):
        if not (d.allow_remote and d.password):
            raise ConfigError(
                f"[dev_inbox] enabled: refusing to serve the dev inbox on non-loopback "
                f"[server] host {cfg.server.host!r}; bind 127.0.0.1, disable the inbox, or set "
                "[dev_inbox] allow_remote = true with a password"
            )
    if d.enabled and not is_local_host(d.smtp_host) and not (d.allow_remote and d.password):
        raise ConfigError(
            f"[dev_inbox] smtp_host: refusing to accept mail on non-loopback {d.smtp_host!r}"
        )
