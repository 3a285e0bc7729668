"""resetd's tables: one migration per schema version, applied in order.

:meth:`resetd.db.Database.open` runs those the database has not seen yet
(``PRAGMA user_version`` counts them), each in its own transaction. A
migration is never edited once released: a change is a new one at the end.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: accounts, the reset-request queue, the token ledger, the outbox.
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL,
        username_norm TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        email_norm TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE reset_requests (
        id INTEGER PRIMARY KEY,
        email_norm TEXT NOT NULL,
        client_ip TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        created_at REAL NOT NULL,
        limited INTEGER NOT NULL DEFAULT 0,
        done_at REAL
    );
    CREATE INDEX reset_requests_pending ON reset_requests (done_at, id);
    CREATE TABLE reset_tokens (
        jti TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        issued_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL,
        failed_posts INTEGER NOT NULL DEFAULT 0,
        burned_at REAL
    );
    CREATE INDEX reset_tokens_user ON reset_tokens (user_id);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        subject TEXT NOT NULL,
        message BLOB NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        claimed_until REAL,
        sent_at REAL
    );
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
    """,
    # 2: fixed-window rate-limit counters and the audit trail.
    """
    CREATE TABLE rate_counters (
        bucket TEXT NOT NULL,
        window_start INTEGER NOT NULL,
        hits INTEGER NOT NULL,
        PRIMARY KEY (bucket, window_start)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        event TEXT NOT NULL,
        user_id TEXT,
        client_ip TEXT,
        user_agent TEXT,
        outcome TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);
    """,
    # 3: when the link in an outbox mail dies (reset mails); NULL = no link to expire.
    """
    ALTER TABLE outbox ADD COLUMN expires_at REAL;
    """,
    # 4: whose account a mail is for, so its delivery can be audited by account.
    """
    ALTER TABLE outbox ADD COLUMN user_id TEXT;
    """,
    # 5: what was typed (trimmed), to choose among accounts an app stored under two
    # spellings of one address; and why a request was set aside instead of mailed.
    """
    ALTER TABLE reset_requests ADD COLUMN email TEXT;
    ALTER TABLE reset_requests ADD COLUMN failure TEXT;
    CREATE INDEX reset_requests_failed ON reset_requests (done_at) WHERE failure IS NOT NULL;
    """,
    # 6: signed-in sessions, by the SHA-256 of the id their cookie carries. A cookie
    # is signed in only while its row exists: signing out deletes it.
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        remember INTEGER NOT NULL,
        created_at REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE INDEX sessions_user ON sessions (user_id);
    """,
    # 7: the relay's state as the outbox last saw it, for `resetd outbox` (one row).
    """
    CREATE TABLE relay_status (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        relay TEXT NOT NULL,
        state TEXT NOT NULL,
        since REAL NOT NULL,
        error TEXT NOT NULL,
        hint TEXT NOT NULL
    );
    """,
    # 8: the language of the page that asked for a reset: its mail is written in it.
    # NULL (requests queued before v8): English.
    """
    ALTER TABLE reset_requests ADD COLUMN lang TEXT;
    """,
    # 9: what an outbox row goes out through: 'mail' to the relay, or 'webhook' to
    # [webhooks] url (``message`` then holds the event's JSON, ``kind`` its type).
    """
    ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'mail';
    """,
    # 10: which process holds each claimed outbox mail (its instance id), so that
    # another one sharing the database releases only claims whose lease ran out
    # or whose owner died; and indexes for pruning by age ([database] keep_days).
    """
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE status = 'sent';
    CREATE INDEX reset_tokens_expires ON reset_tokens (expires_at);
    """,
]
