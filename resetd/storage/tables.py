"""resetd's tables and their columns as the newest migration leaves them.

What ``resetd db copy`` moves from SQLite to PostgreSQL, table by table and
column by column. tests/test_db_copy.py compares this list with both engines'
migrated schemas, so a migration that adds a table or a column fails that test
until it is named here, and so copied, too.

The dev inbox's database (``[dev_inbox] path``) and an app's users table are
other databases: they are not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What a column holds, by its SQLite declaration: INTEGER, REAL (epoch seconds
# and other floats), TEXT, BLOB. PostgreSQL declares them INTEGER or BIGINT,
# DOUBLE PRECISION, TEXT, BYTEA (resetd/storage/postgres/migrations.py).
Kind = Literal["integer", "real", "text", "blob"]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, Kind], ...]
    key: tuple[str, ...]  # the primary key: the order rows are copied in
    identity: str | None = None  # the column PostgreSQL numbers (an identity column)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _kind in self.columns)


TABLES: tuple[Table, ...] = (
    Table(
        "users",
        (
            ("id", "integer"),
            ("username", "text"),
            ("username_norm", "text"),
            ("email", "text"),
            ("email_norm", "text"),
            ("password_hash", "text"),
            ("created_at", "real"),
            ("updated_at", "real"),
        ),
        key=("id",),
        identity="id",
    ),
    Table(
        "reset_requests",
        (
            ("id", "integer"),
            ("email_norm", "text"),
            ("client_ip", "text"),
            ("user_agent", "text"),
            ("created_at", "real"),
            ("limited", "integer"),
            ("done_at", "real"),
            ("email", "text"),
            ("failure", "text"),
            ("lang", "text"),
        ),
        key=("id",),
        identity="id",
    ),
    Table(
        "reset_tokens",
        (
            ("jti", "text"),
            ("user_id", "text"),
            ("issued_at", "real"),
            ("expires_at", "real"),
            ("used_at", "real"),
            ("failed_posts", "integer"),
            ("burned_at", "real"),
        ),
        key=("jti",),
    ),
    Table(
        "outbox",
        (
            ("id", "integer"),
            ("kind", "text"),
            ("sender", "text"),
            ("recipient", "text"),
            ("subject", "text"),
            ("message", "blob"),
            ("created_at", "real"),
            ("attempts", "integer"),
            ("next_attempt_at", "real"),
            ("last_error", "text"),
            ("status", "text"),
            ("claimed_until", "real"),
            ("sent_at", "real"),
            ("expires_at", "real"),
            ("user_id", "text"),
            ("channel", "text"),
            ("claimed_by", "text"),
        ),
        key=("id",),
        identity="id",
    ),
    Table(
        "rate_counters",
        (("bucket", "text"), ("window_start", "integer"), ("hits", "integer")),
        key=("bucket", "window_start"),
    ),
    Table(
        "audit",
        (
            ("id", "integer"),
            ("at", "real"),
            ("event", "text"),
            ("user_id", "text"),
            ("client_ip", "text"),
            ("user_agent", "text"),
            ("outcome", "text"),
        ),
        key=("id",),
        identity="id",
    ),
    Table(
        "sessions",
        (
            ("id", "text"),
            ("user_id", "text"),
            ("remember", "integer"),
            ("created_at", "real"),
            ("last_seen", "real"),
        ),
        key=("id",),
    ),
    Table(
        "relay_status",
        (
            ("id", "integer"),
            ("relay", "text"),
            ("state", "text"),
            ("since", "real"),
            ("error", "text"),
            ("hint", "text"),
        ),
        key=("id",),
    ),
)
