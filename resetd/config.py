"""The configuration: one frozen dataclass per section of ``resetd.toml``.

:mod:`resetd.config_load` reads the file and the environment into them and
:mod:`resetd.config_rules` checks the result. Every problem is reported as one
line that names the key, e.g. ``[mail] port: expected an integer 1-65535, got
'abc'``, and the CLI turns :class:`ConfigError` into exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    # Seconds the parser process may spend on one mail before it is stored unparsed.
    parse_timeout: float = 10.0


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
