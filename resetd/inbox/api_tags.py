"""Mailpit's tag calls under ``/dev/inbox/api/v1``, and its web UI configuration.

``GET tags`` lists the tags in use; ``PUT tags`` with ``{"Tags": […], "IDs":
[…]}`` replaces the tags of those messages (an empty list removes them all);
``PUT tags/{tag}`` with ``{"Name": …}`` renames a tag; ``DELETE tags/{tag}``
takes it off every message. Beyond Mailpit, ``PUT tags`` also takes
``"Search"`` instead of ``IDs``; with neither it changes nothing, as in
Mailpit (never every message). Names are cleaned as Mailpit cleans them
(:mod:`.tags`).
"""

from __future__ import annotations

from aiohttp import web

from .. import keys as app_keys
from . import keys as ikeys
from .api import change_body, selection
from .release import relay_for
from .schema import parse_id
from .search import Query
from .stream import publish_change
from .tags import all_tags, clean_tag, delete_tag, rename_tag, set_tags

# Names one PUT may give (each is cleaned, and at most tags.MAX_TAGS_PER_MESSAGE kept).
MAX_NAMES = 1000


async def list_tags(request: web.Request) -> web.StreamResponse:
    return web.json_response(list(await all_tags(request.app[ikeys.store].db)))


async def put_tags(request: web.Request) -> web.StreamResponse:
    body = await change_body(request, frozenset({"tags", "ids", "search"}))
    names = body.get("tags")
    if names is None:
        names = []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise web.HTTPBadRequest(text="Tags: expected a list of tag names.")
    if len(names) > MAX_NAMES:
        raise web.HTTPBadRequest(text=f"Tags: at most {MAX_NAMES} names at once.")
    chosen = selection(request, body)
    if chosen is None:
        return web.Response(text="ok")  # no IDs: nothing to tag, as in Mailpit
    store = request.app[ikeys.store]
    if isinstance(chosen, Query):
        found, _ = await store.search(chosen, 0, 10_000)
        rowids = [int(m.id) for m in found]
    else:
        rowids = [r for r in (parse_id(i) for i in chosen) if r is not None]
    done = await set_tags(store.db, rowids, names)
    await publish_change(request.app, "tags", {"IDs": [str(r) for r in done]})
    return web.Response(text="ok")


async def rename(request: web.Request) -> web.StreamResponse:
    body = await change_body(request, frozenset({"name"}))
    new = body.get("name")
    if not isinstance(new, str):
        raise web.HTTPBadRequest(text="Name: expected the tag's new name.")
    old = request.match_info["tag"]
    outcome = await rename_tag(request.app[ikeys.store].db, old, new)
    if outcome == "missing":
        raise web.HTTPNotFound(text=f"No tag {old[:100]!r}.")
    if outcome == "invalid":
        raise web.HTTPBadRequest(
            text="Name: a tag needs a letter, digit, '-', '_', '.' or '@' to keep."
        )
    if outcome == "taken":
        raise web.HTTPBadRequest(text=f"A tag {clean_tag(new)!r} exists already.")
    await publish_change(request.app, "tags", {"IDs": None})
    return web.Response(text="ok")


async def delete(request: web.Request) -> web.StreamResponse:
    name = request.match_info["tag"]
    if not await delete_tag(request.app[ikeys.store].db, name):
        raise web.HTTPNotFound(text=f"No tag {name[:100]!r}.")
    await publish_change(request.app, "tags", {"IDs": None})
    return web.Response(text="ok")


async def webui(request: web.Request) -> web.StreamResponse:
    """Mailpit's ``webui`` answer: what its web UI shows of the configuration.

    ``MessageRelay`` describes release (``[dev_inbox] release_*``): enabled when
    ``release_allowed`` lists anyone, with its patterns as the allowed recipients.
    """
    cfg = request.app[app_keys.config]
    allowed = cfg.dev_inbox.release_allowed
    relay = relay_for(cfg)
    return web.json_response(
        {
            "Label": "",
            "MessageRelay": {
                "Enabled": bool(allowed),
                "SMTPServer": f"{relay.host}:{relay.port}" if allowed else "",
                "ReturnPath": "",
                "AllowedRecipients": ",".join(allowed),
                "BlockedRecipients": "",
                "OverrideFrom": "",
                "PreserveMessageIDs": False,
                "RecipientAllowlist": "",
            },
            "SpamAssassin": False,
            "ChaosEnabled": False,
            "DuplicatesIgnored": False,
            "HideDeleteAllButton": False,
        }
    )
