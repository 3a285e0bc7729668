"""The inbox database's schema and its summary and view rows as Python values.

The list and the searches read only the ``messages`` table (summary fields,
with at most LIST_ADDRESSES addresses per field and the total count) and the
``addresses`` table (one row per sender/recipient, for whole-address
matching through an index); raw sources, body text for search and the
digested view (bodies, headers, parts, full address lists, links; its row is
in stored_view.py) live in their own tables, read only when one message is
opened or a free-text search runs.
IDs are the ``AUTOINCREMENT`` rowid as a string, never reused after a
delete, so a stale link cannot show a different message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..db import Row
from .addresses import Address

# Addresses per field in a summary (the list page, the API's lists, live
# updates); the message itself has them all.
LIST_ADDRESSES = 10

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
    # 2: the digest of each message, made once at ingest so that opening it parses
    # nothing; the summary's address lists are cut to LIST_ADDRESSES, with the count.
    # Messages stored before have no view row: theirs is made when opened.
    """
    ALTER TABLE messages ADD COLUMN recipients INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE message_view (
        id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        html TEXT NOT NULL,
        view_json TEXT NOT NULL  -- {"Headers", "Parts", "People", "Links"}
    );
    """,
    # 3: a body that reads back the same from the raw source (UTF-8 or ASCII, as sent
    # or quoted-printable) is stored as where it lies there instead of as a second
    # copy: text and html are then "", the span is [*_at, *_at + *_len) in bytes, and
    # qp says which span is quoted-printable (1: text, 2: html). Rows stored before
    # have null spans and their copies.
    """
    ALTER TABLE message_view ADD COLUMN text_at INTEGER;
    ALTER TABLE message_view ADD COLUMN text_len INTEGER;
    ALTER TABLE message_view ADD COLUMN html_at INTEGER;
    ALTER TABLE message_view ADD COLUMN html_len INTEGER;
    ALTER TABLE message_view ADD COLUMN qp INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: tags (Mailpit's: from X-Tags and plus-addresses at ingest, or set through the
    # API), a count of inline parts for has:inline, and Reply-To in the address index
    # for reply-to:. Rows stored before get their inline count and Reply-To addresses
    # from what they already hold.
    """
    CREATE TABLE tags (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE
    );
    CREATE TABLE message_tags (
        message INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        tag INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
        PRIMARY KEY (message, tag)
    ) WITHOUT ROWID;
    CREATE INDEX message_tags_tag ON message_tags (tag, message);
    ALTER TABLE messages ADD COLUMN inline INTEGER NOT NULL DEFAULT 0;
    UPDATE messages SET inline = (
        SELECT COUNT(*) FROM message_view v, json_each(v.view_json, '$.Parts') p
        WHERE v.id = messages.id AND json_extract(p.value, '$.Inline')
    );
    INSERT INTO addresses (message, kind, address)
        SELECT DISTINCT m.id, 'reply-to', lower(json_extract(j.value, '$.Address'))
        FROM messages m, json_each(m.reply_to_json) j
        WHERE json_extract(j.value, '$.Address') <> '';
    """,
    # 5: the SMTP AUTH user name the message was sent with (Mailpit's "Username"),
    # "" when the client did not authenticate, as for every row stored before.
    """
    ALTER TABLE messages ADD COLUMN username TEXT NOT NULL DEFAULT '';
    """,
]

SUMMARY_COLUMNS = (
    "m.id, m.created, m.message_id, m.from_name, m.from_addr, m.to_json, m.cc_json, "
    "m.bcc_json, m.reply_to_json, m.subject, m.sent_at, m.size, m.attachments, m.snippet, "
    "m.mail_from, m.rcpt_json, m.read, m.problem, m.recipients, m.inline, m.username"
)


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
    recipients: int = 0  # To + Cc + Bcc in all (0 in rows stored before it was counted)
    inline: int = 0  # inline parts (a Content-ID, not an attachment)
    tags: tuple[str, ...] = ()  # sorted; read beside the row (store.with_tags)
    username: str = ""  # the SMTP AUTH user name it was sent with, if any

    @property
    def people(self) -> list[Address]:
        """The first LIST_ADDRESSES recipients (To, then Cc, then Bcc)."""
        return (self.to + self.cc + self.bcc)[:LIST_ADDRESSES]

    @property
    def more_people(self) -> int:
        """How many recipients :attr:`people` leaves out."""
        return max(self.recipients, len(self.to) + len(self.cc) + len(self.bcc)) - len(self.people)

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
            "Tags": list(self.tags),
            "Size": self.size,
            "Attachments": self.attachments,
            "Snippet": self.snippet,
            "Username": self.username,
        }


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# One encoder for every row: json.dumps(…, ensure_ascii=False) builds a new one per call.
_JSON = json.JSONEncoder(ensure_ascii=False)


def _c_encoder() -> Callable[[Any], str]:
    """``_JSON.encode`` without its per-call set-up: JSONEncoder.encode builds a
    new C encoder and a dict for cycle checks on every call, three times per
    captured message. The rows hold only dicts, lists, strings and numbers
    made at ingest (no cycles), so the one C encoder made here gives the same
    text. Without the C accelerator, the encoder itself."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _JSON.encode
    encode = make(
        None, _JSON.default, json.encoder.encode_basestring, None, ": ", ", ", False, False, True
    )

    def dump(value: Any) -> str:
        return "".join(encode(value, 0))

    return dump


dump_json = _c_encoder()


def dump_addresses(addrs: Sequence[Address]) -> str:
    if not addrs:
        return "[]"  # most Cc, Bcc and Reply-To lists, without the encoder
    return dump_json([a.as_json() for a in addrs])


def _addrs(data: str) -> list[Address]:
    return [Address(a["Name"], a["Address"]) for a in json.loads(data)]


def stored_from_row(row: Row) -> Stored:
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
        recipients=row["recipients"],
        inline=row["inline"],
        username=row["username"],
    )


def parse_id(value: str) -> int | None:
    """The rowid behind a message ID, or None when ``value`` cannot be one."""
    if not value.isdigit() or len(value) > 18:
        return None
    return int(value)
