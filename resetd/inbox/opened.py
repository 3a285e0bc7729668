"""One stored message opened: its summary row and its digested view.

The view was made at ingest and is read back as stored. A message stored
before views were (an inbox database from an earlier version) has none: its
view is made from the raw source by the parser process, as new mail's is.
"""

from __future__ import annotations

from aiohttp import web

from . import keys as ikeys
from .schema import Stored
from .stored_view import People, StoredView


async def view_of(app: web.Application, message: Stored) -> StoredView | None:
    """The view of ``message``, or None when it is gone (deleted or pruned meanwhile)."""
    store = app[ikeys.store]
    found = await store.view(message)
    if found is not None:
        return found
    raw = await store.raw(message.id)
    if raw is None:
        return None
    digest = await app[ikeys.parser].digest(raw, message.rcpt_tos)
    s = digest.summary
    return StoredView(digest.view, People(s.sender, s.to, s.cc, s.bcc, s.reply_to), digest.links)
