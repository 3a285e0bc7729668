"""Storing captured mail: rows built on the loop, the INSERTs in one transaction.

:func:`prepare` turns a message and its digest (:mod:`.digest`) into rows on
the event loop: JSON of bounded lists, a few microseconds. :func:`store_batch`
then writes a whole batch in one transaction through a sqlite3 connection of
the writer's: on the loop for a small batch, in a worker thread for a large one
(see writer.py); WAL lets the pages keep reading through the store's
aiosqlite connection.

Only SQL runs in that thread, which releases the GIL while SQLite works:
Python code there (parsing, building rows) would hold the GIL against the
event loop and delay every SMTP reply by up to a switch interval.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from ..db import insert_rows
from .addresses import Address
from .digest import Digest
from .headertext import valid
from .schema import LIST_ADDRESSES, Stored, dump_addresses, dump_json
from .stored_view import VIEW_COLUMNS, view_row
from .summary import Summary
from .tags import PRUNE_SQL, link_tags

MESSAGE_COLUMNS = (
    "id", "created", "message_id", "from_name", "from_addr", "to_json", "cc_json", "bcc_json",
    "reply_to_json", "subject", "sent_at", "size", "attachments", "snippet", "mail_from",
    "rcpt_json", "problem", "recipients", "inline", "username",
)  # fmt: skip


# Raw messages larger than this are written into SQLite in chunks of RAW_CHUNK.
RAW_INLINE = 256 * 1024
RAW_CHUNK = 1024 * 1024


class Incoming(NamedTuple):
    """One accepted message as the sink hands it over."""

    received: float
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    username: str = ""  # the SMTP AUTH user name, "" without AUTH


class Prepared(NamedTuple):
    """A message ready to insert: its rows, less the ID the batch assigns."""

    incoming: Incoming
    summary: Summary
    row: tuple[object, ...]  # the messages row after its id column
    view: tuple[object, ...]  # the message_view row after its id column
    text: str  # for free-text search
    addresses: list[tuple[str, str]]  # (kind, lower-cased address)


def prepare(inc: Incoming, digest: Digest) -> Prepared:
    s = digest.summary
    sender = s.sender or Address("", "")
    # aiosmtpd decodes the envelope strictly, but whatever reaches SQLite, a page or a
    # log must be valid Unicode whoever produced it.
    if not (
        inc.mail_from.isascii()
        and inc.username.isascii()
        and all(r.isascii() for r in inc.rcpt_tos)
    ):
        inc = inc._replace(
            mail_from=valid(inc.mail_from),
            rcpt_tos=[valid(r) for r in inc.rcpt_tos],
            username=valid(inc.username),
        )
    row = (
        inc.received, s.message_id, sender.name, sender.address,
        dump_addresses(s.to[:LIST_ADDRESSES]), dump_addresses(s.cc[:LIST_ADDRESSES]),
        dump_addresses(s.bcc[:LIST_ADDRESSES]), dump_addresses(s.reply_to[:LIST_ADDRESSES]),
        s.subject, s.date, len(inc.raw), s.attachments, s.snippet, inc.mail_from,
        dump_json(inc.rcpt_tos), s.problem, s.recipients, s.inline, inc.username,
    )  # fmt: skip
    view = view_row(digest.view, s, digest.links, len(inc.raw) <= RAW_INLINE)
    names = " ".join(f"{a.name} {a.address}" for a in [*s.to, *s.cc, *s.bcc])
    who = f"{sender.name} {sender.address}" if s.sender else ""
    text = f"{s.subject}\n{who} {names}\n{s.search_text}".casefold()
    seen: set[tuple[str, str]] = set()
    addrs: list[tuple[str, str]] = []
    kinds = (("from", [sender]), ("to", s.to), ("cc", s.cc), ("bcc", s.bcc))
    for kind, group in (*kinds, ("reply-to", s.reply_to)):
        for a in group:
            key = (kind, a.address.lower())
            if a.address and key not in seen:
                seen.add(key)
                addrs.append(key)
    return Prepared(inc, s, row, view, text, addrs)


def stored(first_id: int, batch: Sequence[Prepared]) -> list[Stored]:
    """The summaries of a batch stored from ``first_id`` on (for live listeners)."""
    return [
        Stored(str(first_id + n), p.incoming.received, s.message_id, s.sender,
               s.to[:LIST_ADDRESSES], s.cc[:LIST_ADDRESSES], s.bcc[:LIST_ADDRESSES],
               s.reply_to[:LIST_ADDRESSES], s.subject, s.date, len(p.incoming.raw),
               s.attachments, s.snippet, p.incoming.mail_from, p.incoming.rcpt_tos, False,
               s.problem, s.recipients, s.inline, tuple(s.tags),
               p.incoming.username)
        for n, p in enumerate(batch)
        for s in (p.summary,)
    ]  # fmt: skip


def store_batch(
    conn: sqlite3.Connection, batch: Sequence[Prepared], max_messages: int
) -> tuple[int, int]:
    """Insert ``batch``, then prune to ``max_messages`` — inside the transaction a
    :class:`~resetd.db.BatchWriter` opens around it, in its thread. Returns the first ID assigned
    (the batch has consecutive IDs, oldest first) and how many old messages
    were pruned.
    """
    found = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    first_id = (int(found[0]) if found else 0) + 1
    ids = range(first_id, first_id + len(batch))
    pairs = list(zip(ids, batch, strict=True))
    insert_rows(conn, "messages", MESSAGE_COLUMNS, [(mid, *p.row) for mid, p in pairs])
    inline = [(mid, p.incoming.raw) for mid, p in pairs if len(p.incoming.raw) <= RAW_INLINE]
    insert_rows(conn, "message_raw", ("id", "raw"), inline)
    for mid, p in pairs:
        if len(p.incoming.raw) > RAW_INLINE:
            _insert_raw_in_chunks(conn, mid, p.incoming.raw)
    insert_rows(conn, "message_text", ("id", "text"), [(mid, p.text) for mid, p in pairs])
    insert_rows(conn, "message_view", ("id", *VIEW_COLUMNS), [(mid, *p.view) for mid, p in pairs])
    insert_rows(
        conn,
        "addresses",
        ("message", "kind", "address"),
        [(mid, *a) for mid, p in pairs for a in p.addresses],
    )
    link_tags(conn, [(mid, p.summary.tags) for mid, p in pairs if p.summary.tags])
    pruned = _prune(conn, first_id + len(batch) - 1, max_messages)
    return first_id, pruned


def _insert_raw_in_chunks(conn: sqlite3.Connection, mid: int, raw: bytes) -> None:
    """Store a large raw message through an incremental blob handle.

    Bound as a parameter, SQLite copies the value and then builds its record
    from the copy: twice the message's size in memory again. A zeroblob of
    the right size, filled a chunk at a time, costs one page cache's worth.
    """
    conn.execute("INSERT INTO message_raw (id, raw) VALUES (?, zeroblob(?))", (mid, len(raw)))
    view = memoryview(raw)
    with conn.blobopen("message_raw", "raw", mid) as blob:
        for start in range(0, len(raw), RAW_CHUNK):
            blob.write(view[start : start + RAW_CHUNK])


def _prune(conn: sqlite3.Connection, last_id: int, max_messages: int) -> int:
    oldest = conn.execute("SELECT MIN(id) FROM messages").fetchone()[0]
    if oldest is None or last_id - oldest < max_messages:
        return 0  # IDs only grow, so fewer IDs in use than the limit means fewer rows
    cutoff = conn.execute(
        "SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?", (max_messages,)
    ).fetchone()
    if cutoff is None:
        return 0
    pruned: int = conn.execute("DELETE FROM messages WHERE id <= ?", (cutoff[0],)).rowcount
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('pruned', ?) "
        "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        (pruned,),
    )
    conn.execute(PRUNE_SQL)  # the tags only pruned messages carried
    return pruned
