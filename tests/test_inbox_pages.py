"""Inbox pages: delete forms, search box, live updates, the reset-link panel."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.users import fingerprint
from tests.helpers import add_user, csrf_from
from tests.inbox_helpers import api_json, make_message, send_smtplib

from .sqlite_rows import app_db, consume_token, record_token

API = "/dev/inbox/api/v1"


async def test_delete_one_and_all_from_the_page(client: TestClient[Any, Any]) -> None:
    app = client.app
    for subject in ("keep me", "drop me", "and me"):
        await send_smtplib(app, make_message(subject))
    listing = await api_json(client, f"{API}/messages")
    drop = next(m["ID"] for m in listing["messages"] if m["Subject"] == "drop me")
    token = await csrf_from(client, "/dev/inbox")
    resp = await client.post(f"/dev/inbox/{drop}/delete", data={}, allow_redirects=False)
    assert resp.status == 400  # no CSRF token, nothing deleted
    assert (await api_json(client, f"{API}/messages"))["total"] == 3
    resp = await client.post(
        f"/dev/inbox/{drop}/delete", data={"csrf_token": token}, allow_redirects=False
    )
    assert resp.status == 303
    assert (await api_json(client, f"{API}/messages"))["total"] == 2
    resp = await client.post(
        "/dev/inbox/delete", data={"csrf_token": token, "q": "subject:and"}, allow_redirects=False
    )
    assert resp.status == 303
    subjects = [m["Subject"] for m in (await api_json(client, f"{API}/messages"))["messages"]]
    assert subjects == ["keep me"]
    await client.post("/dev/inbox/delete", data={"csrf_token": token})
    assert (await api_json(client, f"{API}/messages"))["total"] == 0


async def test_list_page_search_unread_markers_and_paging(client: TestClient[Any, Any]) -> None:
    app = client.app
    for n in range(53):
        await send_smtplib(app, make_message(f"Note {n:02d}", to=f"user{n % 2}@example.com"))
    page = await (await client.get("/dev/inbox")).text()
    assert page.count('class="message unread"') == 50
    assert "<title>(53) Dev inbox" in page
    assert 'href="/dev/inbox?start=50"' in page
    older = await (await client.get("/dev/inbox?start=50")).text()
    assert "Note 00" in older and "Note 52" not in older
    found = await (await client.get("/dev/inbox?q=to:user1@example.com")).text()
    assert "26 messages match" in found and "Note 01" in found and "Note 02" not in found
    assert 'value="to:user1@example.com"' in found
    latest = await api_json(client, f"{API}/messages?limit=1")
    await client.get(f"/dev/inbox/{latest['messages'][0]['ID']}")  # opening marks it read
    assert (await api_json(client, f"{API}/messages"))["unread"] == 52


async def _next_event(resp: Any, kind: str) -> dict[str, Any]:
    current = ""
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
        if line.startswith("event: "):
            current = line[len("event: ") :]
        elif line.startswith("data: ") and current == kind:
            data: dict[str, Any] = json.loads(line[len("data: ") :])
            return data


async def test_live_updates_over_server_sent_events(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/dev/inbox/events")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert await _next_event(resp, "stats") == {"total": 0, "unread": 0}
    await send_smtplib(client.app, make_message("Live one"))
    new = await _next_event(resp, "new")
    assert new["Subject"] == "Live one"
    stats = await _next_event(resp, "stats")
    assert stats["unread"] == 1
    await client.put(f"{API}/messages", json={"IDs": [new["ID"]], "Read": True})
    assert await _next_event(resp, "read") == {"IDs": [new["ID"]], "Read": True}
    resp.close()


async def _following_event(resp: Any) -> tuple[str, dict[str, Any]]:
    """The next event on the stream, whatever its kind (keepalives skipped)."""
    kind = ""
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            data: dict[str, Any] = json.loads(line[len("data: ") :])
            return kind, data


async def test_deletes_from_the_page_publish_the_new_counts(client: TestClient[Any, Any]) -> None:
    for subject in ("first", "second", "third"):
        await send_smtplib(client.app, make_message(subject))
    listing = await api_json(client, f"{API}/messages")
    drop = next(m["ID"] for m in listing["messages"] if m["Subject"] == "second")
    token = await csrf_from(client, "/dev/inbox")
    resp = await client.get("/dev/inbox/events")
    assert await _following_event(resp) == ("stats", {"total": 3, "unread": 3})
    posted = await client.post(
        f"/dev/inbox/{drop}/delete", data={"csrf_token": token}, allow_redirects=False
    )
    assert posted.status == 303
    assert await _following_event(resp) == ("delete", {"IDs": [drop]})
    assert await _following_event(resp) == ("stats", {"total": 2, "unread": 2})
    posted = await client.post(
        "/dev/inbox/delete", data={"csrf_token": token, "q": "subject:third"}, allow_redirects=False
    )
    assert posted.status == 303
    assert await _following_event(resp) == ("delete", {"IDs": None})
    assert await _following_event(resp) == ("stats", {"total": 1, "unread": 1})
    await client.post("/dev/inbox/delete", data={"csrf_token": token}, allow_redirects=False)
    assert await _following_event(resp) == ("delete", {"IDs": None})
    assert await _following_event(resp) == ("stats", {"total": 0, "unread": 0})
    resp.close()


async def _mail_reset_link(client: TestClient[Any, Any]) -> tuple[str, str]:
    """A real token for a real user, mailed like the app does; returns (message ID, jti)."""
    app = client.app
    user = await add_user(app)
    token, claims = app[keys.codec].mint(user.id, fingerprint(user))
    async with app_db(app).transaction() as conn:
        await record_token(conn, claims)
    link = f"http://localhost:8080/reset_password/{token}"
    html = f'<p><a href="{link}">Reset your password</a></p>'
    await send_smtplib(app, make_message("Reset", text=f"Open {link}\n", html=html))
    latest = await api_json(client, f"{API}/messages?limit=1")
    return latest["messages"][0]["ID"], claims.jti


async def test_reset_link_panel_shows_claims_and_live_state(client: TestClient[Any, Any]) -> None:
    app = client.app
    mid, jti = await _mail_reset_link(client)
    page = await (await client.get(f"/dev/inbox/{mid}")).text()
    panel = page[page.index('class="reset-panel') :]
    assert 'data-state="valid"' in panel and jti in panel
    assert re.search(r'class="countdown" data-expires="\d+">expires in \d\d:\d\d<', panel)
    assert 'href="http://localhost:8080/reset_password/' in panel
    # The link is in the text part and the HTML part: one panel, and both links listed.
    assert page.count('class="reset-panel') == 1
    assert page.count('<li class="link-reset">') == 2
    # Viewing the page and following the link do not consume the token.
    link = (await api_json(client, f"{API}/message/{mid}/links"))["Links"][0]["URL"]
    assert (await client.get(link.removeprefix("http://localhost:8080"))).status == 200
    page = await (await client.get(f"/dev/inbox/{mid}")).text()
    assert 'data-state="valid"' in page
    async with app_db(app).transaction() as conn:
        assert await consume_token(conn, jti, time.time())
    page = await (await client.get(f"/dev/inbox/{mid}")).text()
    assert 'data-state="used"' in page


async def test_reset_link_panel_sees_superseded_and_forged_tokens(
    client: TestClient[Any, Any],
) -> None:
    app = client.app
    mid, _ = await _mail_reset_link(client)
    user = await app[keys.users].get(1)
    assert user is not None
    await app[keys.users].set_password_hash(user.id, "$argon2id$changed")
    page = await (await client.get(f"/dev/inbox/{mid}")).text()
    assert 'data-state="superseded"' in page
    forged = "http://localhost:8080/reset_password/eyJhbGciOiJub25lIn0.eyJ4IjoxfQ."
    await send_smtplib(app, make_message("Forged", text=f"Try {forged}\n"))
    latest = (await api_json(client, f"{API}/messages?limit=1"))["messages"][0]["ID"]
    page = await (await client.get(f"/dev/inbox/{latest}")).text()
    assert 'data-state="invalid"' in page and "does not verify" in page


async def test_counts_on_the_list_page_agree_with_their_nouns(client: TestClient[Any, Any]) -> None:
    app = client.app
    page = await (await client.get("/dev/inbox")).text()
    assert ">0 messages</span>" in page
    await send_smtplib(app, make_message("Only one", to="one@example.com"))
    page = await (await client.get("/dev/inbox")).text()
    assert ">1 message</span>," in page and "1 messages" not in page
    found = await (await client.get("/dev/inbox?q=to:one@example.com")).text()
    assert "1 message matches" in found
    await send_smtplib(app, make_message("And another"))
    page = await (await client.get("/dev/inbox")).text()
    assert ">2 messages</span>," in page
    latest = (await api_json(client, f"{API}/messages?limit=1"))["messages"][0]
    page = await (await client.get(f"/dev/inbox/{latest['ID']}")).text()
    assert re.search(r"<dt>Size</dt><dd>\d+ bytes", page)


def _directives(csp: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in csp.split(";"):
        name, *values = item.split()
        found[name] = values
    return found


async def test_list_page_policy_allows_the_favicon_badge_and_no_inline_script(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.get("/dev/inbox")
    policy = _directives(resp.headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert "data:" in policy["img-src"]  # the badge is a canvas PNG as a data: URL
    assert policy["connect-src"] == ["'self'"]  # the EventSource
    body = await resp.text()
    assert re.findall(r"<script[^>]*>", body) == ['<script src="/static/inbox.js" defer>']
    assert '<link rel="icon" href="/static/favicon.svg"' in body
