"""The configuration: one frozen dataclass per section of ``resetd.toml``.

:mod:`resetd.config_load` reads the file and the environment into them and
:mod:`resetd.config_rules` checks the result. Every problem is reported as one
line that names the key, e.g. ``[mail] port: expected an integer 1-65535, got
'abc'``, and the CLI turns :class:`ConfigError` into exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from .db_url import Engine, engine_of, redacted_url
from .i18n import SHIPPED

# The shipped development value; `serve` refuses it unless resetd is local only.
DEV_SECRET_KEY = "dev-only-secret-change-me-before-deploying-resetd"  # noqa: S105
MIN_SECRET_KEY = 32
# The dev inbox's password guards every captured reset link once allow_remote is on.
MIN_INBOX_PASSWORD = 16

# Keys whose values are never repeated in an error message, a log line or a banner.
SECRET_KEYS = frozenset(
    {
        ("server", "secret_key"),
        ("server", "secret_key_fallbacks"),
        ("mail", "password"),
        ("dev_inbox", "password"),
        ("webhooks", "secret"),
        ("dev_inbox", "release_password"),
        ("metrics", "token"),
        # They may hold a password; shown through redacted_url() only.
        ("database", "url"),
        ("users", "url"),
    }
)


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
    # Host header values answered besides loopback names; empty: public_url's host.
    allowed_hosts: tuple[str, ...] = ()
    login_url: str = ""
    login_pages: bool = True
    # Signed-in sessions, enforced on the server (seconds): idle = without a request.
    session_idle: int = 30 * 60
    session_max_age: int = 12 * 3600
    # With "remember me" ticked.
    session_remember_idle: int = 7 * 86400
    session_remember_max_age: int = 30 * 86400
    header_timeout: float = 15.0
    body_timeout: float = 30.0
    # The application's name as users see it: mail subjects, page titles and
    # header, the banner. The mail's sender stays [mail] sender.
    site_name: str = "resetd"
    # Directories whose files replace the shipped templates / static files of the
    # same relative name; "" = the shipped ones only.
    templates: str = ""
    static: str = ""
    # Languages offered, chosen from Accept-Language; empty = every shipped one.
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatabaseConfig:
    # sqlite:///file.db or postgresql://…; the loader fills it in from path when
    # only path is given, and path from it for a sqlite:/// url (resetd/db_url.py).
    url: str = field(default="sqlite:///resetd.db", repr=False)  # may hold a password
    path: str = "resetd.db"
    # PostgreSQL: connections each instance holds open, and the schema its tables
    # live in (several apps share one cluster); "" on SQLite.
    pool_size: int = 10
    schema: str = ""
    # Days of history kept: sent mail, expired tokens, audit events (0: all).
    keep_days: int = 30

    @property
    def engine(self) -> Engine:
        return engine_of(self.url) or "sqlite"

    def redacted_url(self) -> str:
        """The url as banners, logs and errors may show it: no password."""
        return redacted_url(self.url)


@dataclass(frozen=True)
class MailConfig:
    server: str = "127.0.0.1"
    port: int = 1025
    use_tls: bool = False
    use_ssl: bool = False
    username: str = ""
    password: str = ""
    sender: str = "resetd <no-reply@localhost>"
    pool_size: int = 8
    timeout: float = 10.0
    # The end-of-data reply: RFC 5321 §4.5.3.2.6's 10 minutes, because a timeout
    # there cannot tell a lost mail from a delivered one.
    data_timeout: float = 600.0
    ca_file: str = ""  # trust only this CA (PEM) for the relay's certificate
    max_age: int = 86400
    backoff_cap: float = 300.0
    retry_base: float = 2.0


@dataclass(frozen=True)
class ResetConfig:
    token_ttl: int = 600
    # Where the mailed link points instead of resetd's own page, "{token}" in it
    # replaced by the token (a front end's page); empty: public_url/reset_password/….
    link_url: str = ""


@dataclass(frozen=True)
class LimitsConfig:
    mails_per_address: int = 3
    mails_per_address_window: int = 900
    requests_per_ip: int = 120
    requests_per_ip_window: int = 60
    failed_posts_per_token: int = 5
    # Failed sign-ins, per normalised identifier typed (known or not) and per client.
    failed_logins_per_account: int = 10
    failed_logins_per_account_window: int = 900
    failed_logins_per_ip: int = 50
    failed_logins_per_ip_window: int = 900
    # Password checks under way at once: per client, and in the whole process.
    logins_in_progress_per_ip: int = 2
    logins_in_progress: int = 16


@dataclass(frozen=True)
class PasswordConfig:
    min_length: int = 15
    max_length: int = 256
    argon2_time_cost: int = 2
    argon2_memory_cost: int = 19456
    argon2_parallelism: int = 1


@dataclass(frozen=True)
class UsersConfig:
    # "resetd" (its own table), or an app's table: "sqlite" (path) or "postgresql" (url).
    store: str = "resetd"
    path: str = ""
    # store = "postgresql": the app's database (the loader fills in [database] url
    # when that is PostgreSQL) and the schema its table is in.
    url: str = field(default="", repr=False)  # may hold a password
    schema: str = ""
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

    def redacted_url(self) -> str:
        """``[users] url`` as banners, logs and errors may show it: no password."""
        return redacted_url(self.url)


@dataclass(frozen=True)
class DevInboxConfig:
    enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    path: str = "resetd-inbox.db"
    max_messages: int = 5000
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 1000
    allow_remote: bool = False
    password: str = ""
    starttls: bool = False
    # The certificate and key the sink presents ("" = a self-signed one it makes).
    tls_cert: str = ""
    tls_key: str = ""
    # Implicit TLS (SMTPS) on this port as well; -1 = off, 0 = any free port.
    smtps_port: int = -1
    # Seconds the parser process may spend on one mail before it is stored unparsed.
    parse_timeout: float = 10.0
    # POSTed Mailpit's summary of each new message (empty: no webhook).
    webhook_url: str = ""
    # Who a captured mail may be released to (patterns like "*@example.com");
    # empty: release is off.
    release_allowed: tuple[str, ...] = ()
    # The relay for releases; an empty host means [mail]'s relay.
    release_host: str = ""
    release_port: int = 25
    release_username: str = ""
    release_password: str = ""
    release_starttls: bool = False

    @property
    def tls(self) -> bool:
        """Whether the sink speaks TLS at all (STARTTLS, SMTPS or both)."""
        return self.starttls or self.smtps_port >= 0


# What [webhooks] events may list: a password changed, and a reset mail queued
# for a known account.
WEBHOOK_EVENTS = ("password.changed", "reset.requested")
MIN_WEBHOOK_SECRET = 32


@dataclass(frozen=True)
class WebhooksConfig:
    url: str = ""  # empty: no webhooks
    secret: str = ""
    events: tuple[str, ...] = ("password.changed",)
    timeout: float = 10.0  # seconds for one delivery, connecting included

    @property
    def enabled(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class MetricsConfig:
    # Bearer token that opens /metrics to other hosts (local requests need none).
    token: str = ""


@dataclass(frozen=True)
class ApiConfig:
    # Origins (scheme://host[:port]) whose pages may call the JSON API from a browser.
    cors_origins: tuple[str, ...] = ()


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
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    source: str = "<defaults>"

    @property
    def public_origin(self) -> str:
        """public_url without its trailing slash: ``scheme://host[:port]`` and the
        path resetd is served under, if any (links in mail start with it)."""
        return self.server.public_url.rstrip("/")

    @cached_property  # read on every request
    def prefix(self) -> str:
        """The path of public_url without its trailing slash: ``""`` (the whole
        host, the default) or e.g. ``"/auth"``. Every route is served under it."""
        return urlsplit(self.server.public_url).path.rstrip("/")

    @property
    def is_https(self) -> bool:
        return self.server.public_url.lower().startswith("https://")

    @property
    def languages(self) -> tuple[str, ...]:
        """``[server] languages``, or every shipped language (English first)."""
        return self.server.languages or SHIPPED

    @property
    def login_location(self) -> str:
        return self.server.login_url or f"{self.prefix}/login"

    @property
    def relay_is_inbox(self) -> bool:
        """Whether ``[mail]`` points at the dev inbox's SMTP sink (its configured
        address: the outbox then sends to the port the sink really bound)."""
        sink = (self.dev_inbox.smtp_host, self.dev_inbox.smtp_port)
        return self.dev_inbox.enabled and (self.mail.server, self.mail.port) == sink


SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "mail": MailConfig,
    "reset": ResetConfig,
    "limits": LimitsConfig,
    "passwords": PasswordConfig,
    "users": UsersConfig,
    "dev_inbox": DevInboxConfig,
    "webhooks": WebhooksConfig,
    "metrics": MetricsConfig,
    "api": ApiConfig,
}
