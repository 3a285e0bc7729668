"""Nothing that carries a reset link or captured mail may be kept by a cache.

The inbox API's JSON (message, links, search, latest …), raw mail, downloads,
the event stream, pages and redirects all answer ``Cache-Control: no-store``;
only the static assets may be cached.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from .inbox_helpers import make_message, send_smtplib

RESET_LINK = "http://localhost:8080/reset_password/eyJhbGciOiJIUzI1NiJ9.e30.c2ln"

CARRYING_LINKS = [
    "/dev/inbox/api/v1/messages",
    "/dev/inbox/api/v1/search?query=reset",
    "/dev/inbox/api/v1/message/latest",
    "/dev/inbox/api/v1/message/latest?query=to:susan@example.com&wait=1",
    "/dev/inbox/api/v1/message/{id}",
    "/dev/inbox/api/v1/message/{id}/links",
    "/dev/inbox/api/v1/message/latest/links",
    "/dev/inbox/api/v1/message/{id}/headers",
    "/dev/inbox/api/v1/message/{id}/raw",
    "/dev/inbox/api/v1/message/{id}/part/1",
    "/dev/inbox/api/v1/info",
    "/dev/inbox/api/v1/message/no-such-id",  # an error answer, JSON too
    "/dev/inbox",
    "/dev/inbox/{id}",
    "/dev/inbox/{id}/download",
    "/login",
]


async def test_every_inbox_answer_carrying_mail_or_links_is_no_store(
    client: TestClient[Any, Any],
) -> None:
    await send_smtplib(client.app, make_message("Reset", text=f"Reset: {RESET_LINK}\n"))
    latest = await client.get("/dev/inbox/api/v1/message/latest")
    message_id = (await latest.json())["ID"]
    for template in CARRYING_LINKS:
        path = template.format(id=message_id)
        resp = await client.get(path, allow_redirects=False)
        assert resp.status < 500, path
        assert resp.headers.get("Cache-Control") == "no-store", f"{path}: {resp.headers}"


async def test_event_stream_and_redirects_are_no_store(client: TestClient[Any, Any]) -> None:
    async with client.get("/dev/inbox/events") as resp:
        assert resp.status == 200
        assert resp.headers.get("Cache-Control") == "no-store"
    resp = await client.get("/", allow_redirects=False)
    assert resp.status in (302, 303)
    assert resp.headers.get("Cache-Control") == "no-store"


async def test_static_assets_stay_cacheable(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/static/resetd.css")
    assert resp.status == 200
    assert "no-store" not in resp.headers.get("Cache-Control", "")
