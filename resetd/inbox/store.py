"""Captured mail in its own SQLite file; every SQL statement of the inbox is here.

The list and the searches read only the ``messages`` table (summary fields)
and the ``addresses`` table (one row per sender/recipient, for whole-address
matching through an index); raw sources and body text live in their own
tables, read only when one message is opened or a free-text search runs.
IDs are the ``AUTOINCREMENT`` rowid as a string, never reused after a
delete, so a stale link cannot show a different message.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..db import Database, Row
from .parse import Address, Summary
from .search import Query

INBOX_MIGRATIONS: list[str] = [
    # 1: summaries, raw sources, body text for free-text search, addresses, counters.
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created REAL NOT NULL,
        message_id TEXT NOT NULL,
        from_name TEXT NOT NULL,
        from_addr TEXT NOT NULL,
        to_json TEXT NOT NULL,
        cc_json TEXT NOT NULL,
        bcc_json TEXT NOT NULL,
        reply_to_json TEXT NOT NULL,
        subject TEXT NOT NULL,
        sent_at REAL,
        size INTEGER NOT NULL,
        attachments INTEGER NOT NULL,
        snippet TEXT NOT NULL,
        mail_from TEXT NOT NULL,
        rcpt_json TEXT NOT NULL,
        read INTEGER NOT NULL DEFAULT 0,
        problem TEXT NOT NULL
    );
    CREATE INDEX messages_unread ON messages (id) WHERE read = 0;
    CREATE INDEX messages_created ON messages (created);
    CREATE INDEX messages_message_id ON messages (message_id);
    CREATE TABLE message_raw (
        id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        raw BLOB NOT NULL
    );
    CREATE TABLE message_text (
        id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        text TEXT NOT NULL
    );
    CREATE TABLE addresses (
        message INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        address TEXT NOT NULL
    );
    CREATE INDEX addresses_lookup ON addresses (address, kind, message);
    CREATE INDEX addresses_message ON addresses (message);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
]

_SUMMARY_COLUMNS = (
    "m.id, m.created, m.message_id, m.from_name, m.from_addr, m.to_json, m.cc_json, "
    "m.bcc_json, m.reply_to_json, m.subject, m.sent_at, m.size, m.attachments, m.snippet, "
    "m.mail_from, m.rcpt_json, m.read, m.problem"
)


@dataclass(frozen=True)
class Incoming:
    """One accepted message as the sink hands it over (parsed in the writer)."""

    received: float
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes


@dataclass(frozen=True)
class Stored:
    """A message's summary row (no body)."""

    id: str
    created: float
    message_id: str
    sender: Address | None
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    reply_to: list[Address]
    subject: str
    sent_at: float | None
    size: int
    attachments: int
    snippet: str
    mail_from: str
    rcpt_tos: list[str]
    read: bool
    problem: str

    def as_json(self) -> dict[str, Any]:
        """Mailpit's message-summary shape."""
        return {
            "ID": self.id,
            "MessageID": self.message_id,
            "Read": self.read,
            "From": self.sender.as_json() if self.sender else {"Name": "", "Address": ""},
            "To": [a.as_json() for a in self.to],
            "Cc": [a.as_json() for a in self.cc],
            "Bcc": [a.as_json() for a in self.bcc],
            "ReplyTo": [a.as_json() for a in self.reply_to],
            "Subject": self.subject,
            "Created": rfc3339(self.created),
            "Tags": [],
            "Size": self.size,
            "Attachments": self.attachments,
            "Snippet": self.snippet,
        }


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _addrs(data: str) -> list[Address]:
    return [Address(a["Name"], a["Address"]) for a in json.loads(data)]


def _dump(addrs: Sequence[Address]) -> str:
    return json.dumps([a.as_json() for a in addrs], ensure_ascii=False)


def _stored(row: Row) -> Stored:
    sender = Address(row["from_name"], row["from_addr"])
    return Stored(
        id=str(row["id"]),
        created=row["created"],
        message_id=row["message_id"],
        sender=sender if sender.name or sender.address else None,
        to=_addrs(row["to_json"]),
        cc=_addrs(row["cc_json"]),
        bcc=_addrs(row["bcc_json"]),
        reply_to=_addrs(row["reply_to_json"]),
        subject=row["subject"],
        sent_at=row["sent_at"],
        size=row["size"],
        attachments=row["attachments"],
        snippet=row["snippet"],
        mail_from=row["mail_from"],
        rcpt_tos=list(json.loads(row["rcpt_json"])),
        read=bool(row["read"]),
        problem=row["problem"],
    )


def parse_id(value: str) -> int | None:
    """The rowid behind a message ID, or None when ``value`` cannot be one."""
    if not value.isdigit() or len(value) > 18:
        return None
    return int(value)


class InboxStore:
    """Captured messages: batched inserts, retention, list, search, flags, delete."""

    def __init__(self, db: Database, max_messages: int) -> None:
        self.db = db
        self.max_messages = max_messages
        self._writer: sqlite3.Connection | None = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        await self.db.close()

    def open_writer(self) -> None:
        """Open the connection batches are written through (from a worker thread).

        One plain sqlite3 connection, so a whole batch (parse, insert, prune,
        commit) costs one thread hop instead of one per statement; WAL lets the
        pages keep reading through the aiosqlite connection meanwhile.
        """
        conn = sqlite3.connect(self.db.path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                       "busy_timeout=5000"):  # fmt: skip
            conn.execute(f"PRAGMA {pragma}")
        self._writer = conn

    def add_batch_blocking(
        self, items: Sequence[tuple[Incoming, Summary]]
    ) -> tuple[list[Stored], int]:
        """Store ``items`` in one transaction, then prune to ``max_messages``.

        Runs in a worker thread (blocking sqlite3). Returns the stored
        summaries (oldest first) and how many old messages were pruned.
        """
        conn = self._writer
        if conn is None:
            raise RuntimeError("InboxStore.open_writer() was not called")
        conn.execute("BEGIN IMMEDIATE")
        try:
            stored, pruned = _insert(conn, items, self.max_messages)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return stored, pruned

    async def counts(self) -> tuple[int, int]:
        """(total, unread)."""
        row = await self.db.fetchone(
            "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM messages WHERE read = 0)"
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def pruned(self) -> int:
        row = await self.db.fetchone("SELECT value FROM counters WHERE name = 'pruned'")
        return int(row[0]) if row else 0

    async def search(self, query: Query, start: int, limit: int) -> tuple[list[Stored], int]:
        """A page of matches, newest first, and the number of matches."""
        where, params = query.where()
        rows = await self.db.fetchall(
            f"SELECT {_SUMMARY_COLUMNS} FROM messages m WHERE {where} "
            "ORDER BY m.id DESC LIMIT ? OFFSET ?",
            [*params, limit, start],
        )
        if query.is_empty:
            total, _ = await self.counts()
        else:
            row = await self.db.fetchone(
                f"SELECT COUNT(*) FROM messages m WHERE {where}",
                params,
            )
            total = int(row[0]) if row else 0
        return [_stored(r) for r in rows], total

    async def latest(self, query: Query) -> Stored | None:
        found, _ = await self.search(query, 0, 1)
        return found[0] if found else None

    async def get(self, message_id: str) -> Stored | None:
        rowid = parse_id(message_id)
        if rowid is None:
            return None
        row = await self.db.fetchone(
            f"SELECT {_SUMMARY_COLUMNS} FROM messages m WHERE m.id = ?",
            (rowid,),
        )
        return _stored(row) if row else None

    async def raw(self, message_id: str) -> bytes | None:
        rowid = parse_id(message_id)
        if rowid is None:
            return None
        row = await self.db.fetchone("SELECT raw FROM message_raw WHERE id = ?", (rowid,))
        return bytes(row[0]) if row else None

    async def set_read(self, ids: Sequence[str] | None, read: bool) -> list[str]:
        """Mark ``ids`` (None: every message) read or unread; returns the IDs changed."""
        async with self.db.transaction() as conn:
            if ids is None:
                cur = await conn.execute(
                    "UPDATE messages SET read = ? WHERE read <> ? RETURNING id", (read, read)
                )
            else:
                rowids = _rowids(ids)
                marks = ", ".join("?" * len(rowids)) or "NULL"
                cur = await conn.execute(
                    f"UPDATE messages SET read = ? WHERE read <> ? AND id IN ({marks}) "
                    "RETURNING id",
                    (read, read, *rowids),
                )
            changed = [str(r[0]) for r in await cur.fetchall()]
            await cur.close()
        return changed

    async def delete(self, ids: Sequence[str] | None) -> int:
        """Delete ``ids`` (None: every message); returns how many went."""
        async with self.db.transaction() as conn:
            if ids is None:
                cur = await conn.execute("DELETE FROM messages")
            else:
                rowids = _rowids(ids)
                marks = ", ".join("?" * len(rowids)) or "NULL"
                cur = await conn.execute(
                    f"DELETE FROM messages WHERE id IN ({marks})",
                    rowids,
                )
            return cur.rowcount

    async def delete_matching(self, query: Query) -> int:
        where, params = query.where()
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                f"DELETE FROM messages WHERE id IN (SELECT m.id FROM messages m WHERE {where})",
                params,
            )
            return cur.rowcount

    def file_size(self) -> int:
        """Bytes on disk (database plus write-ahead log)."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.db.path + suffix)
            except OSError:
                pass
        return total


def _rowids(ids: Sequence[str]) -> list[int]:
    return [r for r in (parse_id(i) for i in ids[:10_000]) if r is not None]


def _search_text(s: Summary) -> str:
    people = " ".join(f"{a.name} {a.address}" for a in [*(s.to), *s.cc, *s.bcc])
    sender = f"{s.sender.name} {s.sender.address}" if s.sender else ""
    return f"{s.subject}\n{sender} {people}\n{s.search_text}".casefold()


def _insert(
    conn: sqlite3.Connection, items: Sequence[tuple[Incoming, Summary]], max_messages: int
) -> tuple[list[Stored], int]:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    next_id = (int(row[0]) if row else 0) + 1
    messages, raws, texts, addrs = [], [], [], []
    stored: list[Stored] = []
    for offset, (inc, s) in enumerate(items):
        mid = next_id + offset
        sender = s.sender or Address("", "")
        size = len(inc.raw)
        rcpt_json = json.dumps(inc.rcpt_tos, ensure_ascii=False)
        messages.append(
            (mid, inc.received, s.message_id, sender.name, sender.address, _dump(s.to),
             _dump(s.cc), _dump(s.bcc), _dump(s.reply_to), s.subject, s.date, size,
             s.attachments, s.snippet, inc.mail_from, rcpt_json, s.problem)
        )  # fmt: skip
        raws.append((mid, inc.raw))
        texts.append((mid, _search_text(s)))
        seen: set[tuple[str, str]] = set()
        for kind, group in (("from", [sender]), ("to", s.to), ("cc", s.cc), ("bcc", s.bcc)):
            for a in group:
                key = (kind, a.address.lower())
                if a.address and key not in seen:
                    seen.add(key)
                    addrs.append((mid, kind, key[1]))
        stored.append(
            Stored(str(mid), inc.received, s.message_id, s.sender, s.to, s.cc, s.bcc,
                   s.reply_to, s.subject, s.date, size, s.attachments, s.snippet,
                   inc.mail_from, inc.rcpt_tos, False, s.problem)
        )  # fmt: skip
    conn.executemany(
        "INSERT INTO messages (id, created, message_id, from_name, from_addr, to_json, cc_json, "
        "bcc_json, reply_to_json, subject, sent_at, size, attachments, snippet, mail_from, "
        "rcpt_json, problem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        messages,
    )
    conn.executemany("INSERT INTO message_raw (id, raw) VALUES (?, ?)", raws)
    conn.executemany("INSERT INTO message_text (id, text) VALUES (?, ?)", texts)
    conn.executemany("INSERT INTO addresses (message, kind, address) VALUES (?, ?, ?)", addrs)
    cutoff = conn.execute(
        "SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?", (max_messages,)
    ).fetchone()
    pruned = 0
    if cutoff is not None:
        pruned = conn.execute("DELETE FROM messages WHERE id <= ?", (cutoff[0],)).rowcount
        conn.execute(
            "INSERT INTO counters (name, value) VALUES ('pruned', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (pruned,),
        )
    return stored, pruned
