"""Storing a batch of captured mail: the inbox's only INSERTs, run in a worker thread.

One plain sqlite3 connection, so a whole batch (parse, insert, prune, commit)
costs one thread hop instead of one per statement; WAL lets the pages keep
reading through the store's aiosqlite connection meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from ..db import PRAGMAS
from .parse import Address, Summary, summarize
from .schema import Stored, dump_addresses


@dataclass(frozen=True)
class Incoming:
    """One accepted message as the sink hands it over (parsed in the writer)."""

    received: float
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes


def connect(path: str) -> sqlite3.Connection:
    """The connection batches are written through (usable from a worker thread)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def store_batch(
    conn: sqlite3.Connection, batch: Sequence[Incoming], max_messages: int
) -> tuple[list[Stored], int]:
    """Parse and store ``batch`` in one transaction, then prune to ``max_messages``.

    Blocking (call it in a worker thread). Returns the stored summaries
    (oldest first) and how many old messages were pruned.
    """
    items = [(item, summarize(item.raw, item.rcpt_tos)) for item in batch]
    conn.execute("BEGIN IMMEDIATE")
    try:
        stored, pruned = _insert(conn, items, max_messages)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return stored, pruned


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
            (mid, inc.received, s.message_id, sender.name, sender.address,
             dump_addresses(s.to), dump_addresses(s.cc), dump_addresses(s.bcc),
             dump_addresses(s.reply_to), s.subject, s.date, size, s.attachments, s.snippet,
             inc.mail_from, rcpt_json, s.problem)
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
