"""What resetd cannot yet do on PostgreSQL, refused up front.

The engine and the migrations are here; each concern's storage on PostgreSQL
comes next. Until every one exists, a command that would use a postgresql://
url stops with one line instead of running half on PostgreSQL and half on
nothing. Each concern that lands drops its name; with none left, this module
and its one call (resetd/cli.py) go.
"""

from __future__ import annotations

from ...config import Config, ConfigError

NOT_YET_ON_POSTGRES: tuple[str, ...] = (
    "accounts",
    "sessions",
    "ledger",
    "limits",
    "requests",
    "outbox",
    "audit",
    "retention",
)


def refuse_incomplete(cfg: Config) -> None:
    """Raise ConfigError when ``[database] url`` is PostgreSQL and some concern's
    PostgreSQL storage does not exist yet; nothing for SQLite."""
    if cfg.database.engine != "postgresql" or not NOT_YET_ON_POSTGRES:
        return
    raise ConfigError(
        f"[database] url: {cfg.database.redacted_url()}: not yet available on PostgreSQL: "
        f"{', '.join(NOT_YET_ON_POSTGRES)} (its tables and migrations are ready; "
        "use a sqlite:/// url to serve for now)"
    )
