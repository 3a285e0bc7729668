"""Message tags, as Mailpit has them: cleaned names, set at ingest or through the API.

At ingest a message gets the tags of its ``X-Tags`` header (comma-separated)
and of its plus-addresses (``user+tag@example.com`` tags ``tag``), both on by
default in Mailpit. Every name goes through :func:`clean_tag`, Mailpit's
``CleanTag``: characters other than letters, digits, ``-``, ``_``, ``.``,
``@`` and space become spaces, runs of spaces one, and the name is cut to
MAX_TAG_LENGTH. Names are unique case-insensitively (the first spelling
stays), and sorted.

Bounds, so no mail or API call can make the list every answer carries
huge: at most MAX_TAGS_PER_MESSAGE on one message and MAX_TAGS distinct
names in the inbox (a new name past it is not created; tags no message
carries any more are removed after deletes and pruning).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Literal

from ..db import Database

MAX_TAG_LENGTH = 100
MAX_TAGS_PER_MESSAGE = 32
MAX_TAGS = 1000
# Characters of an X-Tags header read (32 tags of 100 characters, and separators).
X_TAGS_SCAN = 4096
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@ ")

# Tags no message carries any more (after deletes, pruning, a rename's merge).
PRUNE_SQL = (
    "DELETE FROM tags WHERE NOT EXISTS (SELECT 1 FROM message_tags mt WHERE mt.tag = tags.id)"
)
_CREATE_SQL = (
    "INSERT INTO tags (name) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM tags WHERE name = ?) "
    "AND (SELECT COUNT(*) FROM tags) < ?"
)
_LINK_SQL = (
    "INSERT OR IGNORE INTO message_tags (message, tag) SELECT ?, id FROM tags WHERE name = ?"
)


def clean_tag(name: str) -> str:
    """Mailpit's CleanTag, in one pass: "" when nothing usable is left."""
    out: list[str] = []
    space = False
    for ch in name[: MAX_TAG_LENGTH * 4]:
        if ch in _ALLOWED and ch != " ":
            if space and out:
                out.append(" ")
            out.append(ch)
            space = False
        else:
            space = True
    return "".join(out)[:MAX_TAG_LENGTH].rstrip()


def unique_tags(names: Iterable[str]) -> list[str]:
    """``names`` cleaned, without empty ones or case-insensitive repeats, sorted,
    at most MAX_TAGS_PER_MESSAGE (the first ones given)."""
    seen: dict[str, str] = {}
    for name in names:
        tag = clean_tag(name)
        if tag and tag.lower() not in seen:
            seen[tag.lower()] = tag
            if len(seen) >= MAX_TAGS_PER_MESSAGE:
                break
    return sorted(seen.values())


def x_tags(value: str) -> list[str]:
    """The tags of an ``X-Tags`` header's (decoded) value."""
    return value[:X_TAGS_SCAN].split(",")


def plus_tags(address: str) -> list[str]:
    """The tags of a plus-address: ``a+b+c@example.com`` → b, c (Mailpit's reading)."""
    plus = address.find("+")
    if plus < 0:
        return []
    at = address.find("@", plus)
    return address[plus + 1 : at].split("+") if at > plus else []


def link_tags(conn: sqlite3.Connection, pairs: Iterable[tuple[int, Sequence[str]]]) -> None:
    """Give each message ID its tags, creating names up to MAX_TAGS (in the
    writer's transaction, on its thread)."""
    for message, names in pairs:
        for name in names:
            conn.execute(_CREATE_SQL, (name, name, MAX_TAGS))
            conn.execute(_LINK_SQL, (message, name))


async def tags_of(db: Database, rowids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """Each of ``rowids``' tags, sorted (IDs without tags are left out)."""
    if not rowids:
        return {}
    marks = ", ".join("?" * len(rowids))
    rows = await db.fetchall(
        "SELECT mt.message, t.name FROM message_tags mt JOIN tags t ON t.id = mt.tag "
        f"WHERE mt.message IN ({marks}) ORDER BY mt.message, t.name COLLATE BINARY",
        list(rowids),
    )
    found: dict[int, list[str]] = {}
    for message, name in rows:
        found.setdefault(int(message), []).append(str(name))
    return {k: tuple(v) for k, v in found.items()}


async def all_tags(db: Database) -> dict[str, int]:
    """Every tag a message carries, sorted, and how many carry it."""
    rows = await db.fetchall(
        "SELECT t.name, COUNT(*) FROM tags t JOIN message_tags mt ON mt.tag = t.id "
        "GROUP BY t.id ORDER BY t.name COLLATE BINARY"
    )
    return {str(name): int(count) for name, count in rows}


async def set_tags(db: Database, rowids: Sequence[int], names: Sequence[str]) -> list[int]:
    """Replace the tags of each of ``rowids`` by ``names`` (cleaned: see unique_tags);
    returns the IDs that exist. Names past MAX_TAGS in the inbox are not created."""
    tags = unique_tags(names)
    done: list[int] = []
    async with db.transaction() as conn:
        for rowid in rowids:
            cur = await conn.execute("SELECT 1 FROM messages WHERE id = ?", (rowid,))
            exists = await cur.fetchone()
            await cur.close()
            if exists is None:
                continue
            done.append(rowid)
            await conn.execute("DELETE FROM message_tags WHERE message = ?", (rowid,))
            for name in tags:
                await conn.execute(_CREATE_SQL, (name, name, MAX_TAGS))
                await conn.execute(_LINK_SQL, (rowid, name))
        await conn.execute(PRUNE_SQL)
    return done


Renamed = Literal["ok", "missing", "taken", "invalid"]


async def rename_tag(db: Database, old: str, new: str) -> Renamed:
    """Rename the tag ``old`` (any case) to ``new`` (cleaned)."""
    name = clean_tag(new)
    if not name:
        return "invalid"
    async with db.transaction() as conn:
        cur = await conn.execute("SELECT id FROM tags WHERE name = ?", (old,))
        found = await cur.fetchone()
        await cur.close()
        if found is None:
            return "missing"
        cur = await conn.execute("SELECT id FROM tags WHERE name = ? AND id <> ?", (name, found[0]))
        other = await cur.fetchone()
        await cur.close()
        if other is not None:
            return "taken"
        await conn.execute("UPDATE tags SET name = ? WHERE id = ?", (name, found[0]))
    return "ok"


async def delete_tag(db: Database, name: str) -> bool:
    """Take the tag ``name`` (any case) off every message; False when there is none."""
    async with db.transaction() as conn:
        cur = await conn.execute("DELETE FROM tags WHERE name = ?", (name,))
        return cur.rowcount > 0


async def prune_tags(db: Database) -> None:
    """Remove tags no message carries any more (after deletes)."""
    async with db.transaction() as conn:
        await conn.execute(PRUNE_SQL)
