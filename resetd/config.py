"""resetd.toml + environment → frozen dataclasses.

The whole file is checked at start. Every problem is reported as one line that
names the key, e.g. ``[mail] port: expected an integer 1-65535, got 'abc'``, and
the CLI turns :class:`ConfigError` into exit code 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

# The shipped development value; `serve` refuses it unless public_url is local.
DEV_SECRET_KEY = "dev-only-secret-change-me-before-deploying-resetd"  # noqa: S105


class ConfigError(Exception):
    """A configuration problem, phrased for the operator in one line."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://localhost:8080"
    secret_key: str = ""
    secret_key_fallbacks: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    login_url: str = ""
    login_pages: bool = True


@dataclass(frozen=True)
class DatabaseConfig:
    path: str = "resetd.db"


@dataclass(frozen=True)
class MailConfig:
    server: str = "127.0.0.1"
    port: int = 8025
    use_tls: bool = False
    use_ssl: bool = False
    username: str = ""
    password: str = ""
    sender: str = "resetd <no-reply@localhost>"
    pool_size: int = 8
    timeout: float = 10.0
    max_age: int = 86400
    backoff_cap: float = 300.0
    retry_base: float = 2.0


@dataclass(frozen=True)
class ResetConfig:
    token_ttl: int = 600


@dataclass(frozen=True)
class LimitsConfig:
    mails_per_address: int = 3
    mails_per_address_window: int = 900
    requests_per_ip: int = 120
    requests_per_ip_window: int = 60
    failed_posts_per_token: int = 5


@dataclass(frozen=True)
class PasswordConfig:
    min_length: int = 15
    max_length: int = 256
    argon2_time_cost: int = 2
    argon2_memory_cost: int = 19456
    argon2_parallelism: int = 1


@dataclass(frozen=True)
class UsersConfig:
    store: str = "resetd"
    path: str = ""
    table: str = "user"
    id_column: str = "id"
    email_column: str = "email"
    username_column: str = "username"
    password_hash_column: str = "password_hash"  # noqa: S105 (a column name)
    hash_format: str = ""  # "" = argon2 for resetd's store, werkzeug for an app's

    @property
    def effective_hash_format(self) -> str:
        if self.hash_format:
            return self.hash_format
        return "argon2" if self.store == "resetd" else "werkzeug"


@dataclass(frozen=True)
class DevInboxConfig:
    enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    path: str = "resetd-inbox.db"
    max_messages: int = 5000
    max_message_size: int = 25 * 1024 * 1024
    allow_remote: bool = False
    password: str = ""
    starttls: bool = False


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    reset: ResetConfig = field(default_factory=ResetConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    passwords: PasswordConfig = field(default_factory=PasswordConfig)
    users: UsersConfig = field(default_factory=UsersConfig)
    dev_inbox: DevInboxConfig = field(default_factory=DevInboxConfig)
    source: str = "<defaults>"

    @property
    def public_origin(self) -> str:
        """``scheme://host[:port]`` of public_url, no trailing slash."""
        return self.server.public_url.rstrip("/")

    @property
    def is_https(self) -> bool:
        return self.server.public_url.lower().startswith("https://")

    @property
    def login_location(self) -> str:
        return self.server.login_url or "/login"


SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "mail": MailConfig,
    "reset": ResetConfig,
    "limits": LimitsConfig,
    "passwords": PasswordConfig,
    "users": UsersConfig,
    "dev_inbox": DevInboxConfig,
}

# The Flask Mega-Tutorial's variable names, honoured so its .env files work.
TUTORIAL_ENV = {
    "SECRET_KEY": ("server", "secret_key"),
    "MAIL_SERVER": ("mail", "server"),
    "MAIL_PORT": ("mail", "port"),
    "MAIL_USE_TLS": ("mail", "use_tls"),
    "MAIL_USERNAME": ("mail", "username"),
    "MAIL_PASSWORD": ("mail", "password"),
}

# RESETD_* variables that steer the process rather than name a config key.
PROCESS_ENV = {"RESETD_CONFIG", "RESETD_LOG_LEVEL", "RESETD_LOOP_STATS"}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(section: str, key: str, typ: Any, raw: Any, from_env: bool) -> Any:
    where = f"[{section}] {key}"
    if typ == "bool" or typ is bool:
        if isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    if typ == "int" or typ is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected an integer, got {raw!r}")
        if isinstance(raw, int):
            return raw
        if from_env and isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {raw!r}")
    if typ == "float" or typ is float:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected a number, got {raw!r}")
        if isinstance(raw, int | float):
            return float(raw)
        if from_env and isinstance(raw, str):
            try:
                return float(raw.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {raw!r}")
    if typ == "str" or typ is str:
        if isinstance(raw, str):
            return raw
        raise ConfigError(f"{where}: expected a string, got {raw!r}")
    if typ == "tuple[str, ...]":
        if from_env and isinstance(raw, str):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            return tuple(raw)
        raise ConfigError(f"{where}: expected a list of strings, got {raw!r}")
    raise AssertionError(f"unsupported config type {typ!r}")  # pragma: no cover


def _build_section(section: str, values: Mapping[str, tuple[Any, bool]]) -> Any:
    cls = SECTIONS[section]
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, (raw, from_env) in values.items():
        if key not in known:
            choices = ", ".join(sorted(known))
            raise ConfigError(f"[{section}] {key}: unknown key (known keys: {choices})")
        kwargs[key] = _coerce(section, key, known[key].type, raw, from_env)
    return cls(**kwargs)


def _is_local_host(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_loopback_bind(host: str) -> bool:
    """True when binding to ``host`` exposes nothing beyond this machine."""
    return _is_local_host(host)


def _validate(cfg: Config) -> None:
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
    for section, path in (("database", cfg.database.path), ("dev_inbox", d.path)):
        if path in ("", ":memory:"):
            # An in-memory database exists for one connection only, and each
            # database is written from a thread of its own beside the app's reads.
            raise ConfigError(f"[{section}] path: expected a file, got {path!r}")


def check_serve_safety(cfg: Config) -> None:
    """Refusals that apply to ``serve`` only (the CLI's user commands stay usable)."""
    host = urlsplit(cfg.server.public_url).hostname or ""
    if cfg.server.secret_key == DEV_SECRET_KEY and not _is_local_host(host):
        raise ConfigError(
            "[server] secret_key: still the development value while public_url is "
            f"{cfg.server.public_url!r}; set a random secret (SECRET_KEY) before exposing resetd"
        )
    d = cfg.dev_inbox
    if d.enabled and not _is_local_host(cfg.server.host):
        if not (d.allow_remote and d.password):
            raise ConfigError(
                f"[dev_inbox] enabled: refusing to serve the dev inbox on non-loopback "
                f"[server] host {cfg.server.host!r}; bind 127.0.0.1, disable the inbox, or set "
                "[dev_inbox] allow_remote = true with a password"
            )
    if d.enabled and not _is_local_host(d.smtp_host) and not (d.allow_remote and d.password):
        raise ConfigError(
            f"[dev_inbox] smtp_host: refusing to accept mail on non-loopback {d.smtp_host!r}"
        )


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read ``path`` (must exist), apply env overrides, validate, return a frozen Config.

    ``overrides`` (section → key → value) is applied last; tests use it instead of
    writing files. Raises ConfigError with a one-line message.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found (use --config PATH)") from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: config file is not UTF-8 text") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None

    values: dict[str, dict[str, tuple[Any, bool]]] = {name: {} for name in SECTIONS}
    for section, table in raw.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"[{section}]: unknown section (known: {', '.join(sorted(SECTIONS))})"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}]: expected a table")
        for key, value in table.items():
            values[section][key] = (value, False)

    for name, (section, key) in TUTORIAL_ENV.items():
        if name in env:
            values[section][key] = (env[name], True)
    for name, value in env.items():
        if not name.startswith("RESETD_") or name in PROCESS_ENV:
            continue
        rest = name[len("RESETD_") :].lower()
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                values[section][rest[len(section) + 1 :]] = (value, True)
                break
        else:
            raise ConfigError(f"{name}: unknown environment override (no such section)")

    for section, table in (overrides or {}).items():
        for key, value in table.items():
            values[section][key] = (value, False)

    built = {name: _build_section(name, vals) for name, vals in values.items()}
    cfg = Config(**built, source=source)
    _validate(cfg)
    return cfg
