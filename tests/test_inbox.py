"""The dev inbox end to end: real SMTP in, pages and the API out."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from resetd.app import create_app
from tests.helpers import ConfigFactory
from tests.inbox_helpers import api_json, make_message, send_aiosmtplib, send_smtplib

API = "/dev/inbox/api/v1"


async def test_message_sent_with_smtplib_is_listed_and_shown(client: TestClient[Any, Any]) -> None:
    app = client.app
    await send_smtplib(
        app, make_message("Your reset link", text="Hi Susan,\nhttps://example.org/x\n")
    )
    page = await (await client.get("/dev/inbox")).text()
    assert "Your reset link" in page
    assert "susan@example.com" in page
    listing = await api_json(client, f"{API}/messages")
    assert listing["total"] == 1 and listing["unread"] == 1 and listing["count"] == 1
    (item,) = listing["messages"]
    assert item["Subject"] == "Your reset link"
    assert item["From"] == {"Name": "App", "Address": "app@example.test"}
    assert item["To"] == [{"Name": "", "Address": "susan@example.com"}]
    assert item["Read"] is False and item["Snippet"].startswith("Hi Susan,")
    resp = await client.get(f"/dev/inbox/{item['ID']}")
    assert resp.status == 200
    body = await resp.text()
    assert "Hi Susan," in body
    assert 'href="https://example.org/x"' in body


async def test_list_shape_matches_mailpit(client: TestClient[Any, Any]) -> None:
    app = client.app
    for n in range(3):
        await send_smtplib(app, make_message(f"Message {n}"))
    listing = await api_json(client, f"{API}/messages?start=1&limit=1")
    assert set(listing) == set(
        "total unread count messages_count messages_unread start tags messages".split()
    )
    assert listing["total"] == 3 and listing["count"] == 1 and listing["start"] == 1
    (item,) = listing["messages"]
    assert item["Subject"] == "Message 1"  # newest first: 2, 1, 0
    fields = (
        "ID MessageID Read From To Cc Bcc ReplyTo Subject Created Tags Size Attachments "
        "Snippet Username"
    )
    assert set(item) == set(fields.split())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["Created"])


async def test_aiosmtplib_bcc_recipients_come_from_the_envelope(
    client: TestClient[Any, Any],
) -> None:
    app = client.app
    msg = make_message("Team news", to="a@example.com", Cc="B <b@example.com>")
    await send_aiosmtplib(
        app, msg, rcpt_tos=["a@example.com", "b@example.com", "hidden@example.com"]
    )
    (item,) = (await api_json(client, f"{API}/messages"))["messages"]
    assert item["Cc"] == [{"Name": "B", "Address": "b@example.com"}]
    assert item["Bcc"] == [{"Name": "", "Address": "hidden@example.com"}]
    full = await api_json(client, f"{API}/message/{item['ID']}")
    assert full["Envelope"]["RcptTo"] == ["a@example.com", "b@example.com", "hidden@example.com"]
    page = await (await client.get(f"/dev/inbox/{item['ID']}")).text()
    assert "hidden@example.com" in page


async def test_script_in_mail_never_runs(client: TestClient[Any, Any]) -> None:
    app = client.app
    html = (
        "<p>Hello</p><script>alert('pwned')</script>"
        '<img src="x" onerror="alert(2)"><a href="javascript:alert(3)">x</a>'
    )
    await send_smtplib(app, make_message("Evil", html=html))
    (item,) = (await api_json(client, f"{API}/messages"))["messages"]
    resp = await client.get(f"/dev/inbox/{item['ID']}")
    body = await resp.text()
    frame = re.search(r"<iframe[^>]*>", body)
    assert frame is not None
    tag = frame.group(0)
    sandbox = re.search(r'sandbox="([^"]*)"', tag)
    assert sandbox is not None and "allow-scripts" not in sandbox.group(1)
    assert "allow-same-origin" not in sandbox.group(1)
    assert "srcdoc=" in tag and "&lt;script&gt;alert(" in tag  # escaped into the attribute
    assert "<script>alert(" not in body and 'onerror="alert' not in body
    csp = resp.headers["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]*)", csp)
    assert script_src is not None and script_src.group(1).strip() == "'self'"
    assert "script-src &#39;none&#39;" in tag  # the srcdoc's own meta CSP
    # The only scripts on the page are our own file.
    assert re.findall(r"<script[^>]*>", body) == ['<script src="/static/inbox.js" defer>']


async def test_disabled_inbox_has_no_routes(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(dev_inbox={"enabled": False})))
    for path in ("/dev/inbox", "/dev/inbox/1", f"{API}/messages", "/dev/inbox/events"):
        assert (await client.get(path)).status == 404, path


async def test_disabled_inbox_leaves_its_api_paths_ordinary(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    """The inbox registers its API's rules itself: off, its paths are like any other."""
    client = await aiohttp_client(create_app(make_config(dev_inbox={"enabled": False})))
    resp = await client.get(f"{API}/messages")
    assert resp.status == 404 and resp.content_type == "text/html"
    resp = await client.delete(f"{API}/messages")
    # No route: the page's 404, as for any path nothing is served at (no JSON).
    assert resp.status == 404 and resp.content_type == "text/html"


async def test_inbox_api_errors_are_json_and_need_no_form_token(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.get(f"{API}/message/12345")
    assert resp.status == 404 and resp.content_type == "application/json"
    resp = await client.put(f"{API}/messages", json={"IDs": [], "Read": "yes"})
    assert resp.status == 400
    assert await resp.json() == {"Error": "Read: expected true or false."}


async def test_unknown_message_is_404(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/dev/inbox/12345")).status == 404
    assert (await client.get("/dev/inbox/not-an-id")).status == 404
    resp = await client.get(f"{API}/message/12345")
    assert resp.status == 404
    assert "Error" in await resp.json()
