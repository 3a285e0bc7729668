"""Reading and changing captured mail: list, search, flags, delete, counts.

Every statement runs on the inbox database's aiosqlite connection; the
batched INSERTs of new mail are in ingest.py (their own connection, in a
worker thread). Schema and row shapes are in schema.py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from ..db import Database
from .schema import SUMMARY_COLUMNS, Stored, parse_id, stored_from_row
from .search import Query
from .stored_view import VIEW_SELECT, StoredView, stored_view_from_row
from .tags import PRUNE_SQL, tags_of

# Which messages a change applies to: these IDs, the matches of a search, or
# (None) every message.
Selection = Sequence[str] | Query | None


class InboxStore:
    """Captured messages: batched inserts, retention, list, search, flags, delete."""

    def __init__(self, db: Database, max_messages: int) -> None:
        self.db = db
        self.max_messages = max_messages

    async def close(self) -> None:
        await self.db.close()

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
        """A page of matches, newest first (with their tags), and the number of matches."""
        where, params = query.where()
        rows = await self.db.fetchall(
            f"SELECT {SUMMARY_COLUMNS} FROM messages m WHERE {where} "
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
        return await self.with_tags([stored_from_row(r) for r in rows]), total

    async def unread_matching(self, query: Query) -> int:
        """How many of the matches of ``query`` are unread."""
        if query.is_empty:
            return (await self.counts())[1]
        where, params = query.where()
        row = await self.db.fetchone(
            f"SELECT COUNT(*) FROM messages m WHERE m.read = 0 AND ({where})", params
        )
        return int(row[0]) if row else 0

    async def with_tags(self, messages: list[Stored]) -> list[Stored]:
        """``messages`` with their tags read (one query for them all)."""
        found = await tags_of(self.db, [int(m.id) for m in messages])
        return [dataclasses.replace(m, tags=found[int(m.id)]) if int(m.id) in found else m
                for m in messages]  # fmt: skip

    async def latest(self, query: Query) -> Stored | None:
        found, _ = await self.search(query, 0, 1)
        return found[0] if found else None

    async def get(self, message_id: str) -> Stored | None:
        rowid = parse_id(message_id)
        if rowid is None:
            return None
        row = await self.db.fetchone(
            f"SELECT {SUMMARY_COLUMNS} FROM messages m WHERE m.id = ?",
            (rowid,),
        )
        return (await self.with_tags([stored_from_row(row)]))[0] if row else None

    async def id_of_message_id(self, message_id: str) -> str | None:
        """The ID of the newest message with this Message-ID (no angle brackets), or None."""
        row = await self.db.fetchone(
            "SELECT MAX(id) FROM messages WHERE message_id = ?", (message_id,)
        )
        return str(row[0]) if row and row[0] is not None else None

    async def view(self, message: Stored) -> StoredView | None:
        """The view digested at ingest; None when there is none (deleted, or stored before)."""
        rowid = parse_id(message.id)
        if rowid is None:
            return None
        row = await self.db.fetchone(VIEW_SELECT, (rowid,))
        return stored_view_from_row(row, message) if row else None

    async def raw_head(self, message_id: str, length: int) -> tuple[bytes, int] | None:
        """The first ``length`` bytes of the raw source and its whole size, or None."""
        rowid = parse_id(message_id)
        if rowid is None:
            return None
        row = await self.db.fetchone(
            "SELECT substr(raw, 1, ?), length(raw) FROM message_raw WHERE id = ?", (length, rowid)
        )
        return (bytes(row[0] or b""), int(row[1] or 0)) if row else None

    async def raw(self, message_id: str) -> bytes | None:
        rowid = parse_id(message_id)
        if rowid is None:
            return None
        row = await self.db.fetchone("SELECT raw FROM message_raw WHERE id = ?", (rowid,))
        return bytes(row[0]) if row else None

    async def set_read(self, selection: Selection, read: bool) -> list[str]:
        """Mark the ``selection`` read or unread; returns the IDs that changed."""
        async with self.db.transaction() as conn:
            if not isinstance(selection, Query | None):
                changed = []
                for chunk in _rowid_chunks(selection):
                    marks = ", ".join("?" * len(chunk))
                    cur = await conn.execute(
                        f"UPDATE messages SET read = ? WHERE read <> ? AND id IN ({marks}) "
                        "RETURNING id",
                        (read, read, *chunk),
                    )
                    changed += [str(r[0]) for r in await cur.fetchall()]
                    await cur.close()
                return changed
            where, params = (selection or Query()).where()
            cur = await conn.execute(
                f"UPDATE messages SET read = ? WHERE read <> ? AND id IN "
                f"(SELECT m.id FROM messages m WHERE {where}) RETURNING id",
                (read, read, *params),
            )
            changed = [str(r[0]) for r in await cur.fetchall()]
            await cur.close()
            return changed

    async def delete(self, selection: Selection) -> list[str] | None:
        """Delete the ``selection``; returns the IDs deleted (None: every message went)."""
        async with self.db.transaction() as conn:
            if selection is None:
                await conn.execute("DELETE FROM messages")
                await conn.execute("DELETE FROM tags")
                return None
            deleted: list[str] = []
            if isinstance(selection, Query):
                where, params = selection.where()
                cur = await conn.execute(
                    f"DELETE FROM messages WHERE id IN (SELECT m.id FROM messages m WHERE {where}) "
                    "RETURNING id",
                    params,
                )
                deleted = [str(r[0]) for r in await cur.fetchall()]
                await cur.close()
            else:
                for chunk in _rowid_chunks(selection):
                    marks = ", ".join("?" * len(chunk))
                    cur = await conn.execute(
                        f"DELETE FROM messages WHERE id IN ({marks}) RETURNING id", chunk
                    )
                    deleted += [str(r[0]) for r in await cur.fetchall()]
                    await cur.close()
            if deleted:
                await conn.execute(PRUNE_SQL)
            return deleted

    def file_size(self) -> int:
        """Bytes on disk (database plus write-ahead log)."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.db.path + suffix)
            except OSError:
                pass
        return total


# Bound parameters per statement: SQLite before 3.32 allows 999.
_IDS_PER_STATEMENT = 500


def _rowid_chunks(ids: Sequence[str]) -> list[list[int]]:
    """The rowids behind ``ids`` (the API bounds how many), a statement's worth each."""
    rowids = [r for r in (parse_id(i) for i in ids) if r is not None]
    return [rowids[n : n + _IDS_PER_STATEMENT] for n in range(0, len(rowids), _IDS_PER_STATEMENT)]
