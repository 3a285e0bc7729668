"""The Mailpit-compatible API: flags, delete, search syntax, message views, long-poll."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any

from aiohttp.test_utils import TestClient

from tests.inbox_helpers import api_json, make_message, send_smtplib

API = "/dev/inbox/api/v1"


async def _ids(client: TestClient[Any, Any], query: str) -> list[str]:
    data = await api_json(client, f"{API}/search?query={query}")
    return [m["Subject"] for m in data["messages"]]


async def _seed(client: TestClient[Any, Any]) -> None:
    app = client.app
    await send_smtplib(app, make_message("Welcome aboard", to="Susan <susan@example.com>"))
    await send_smtplib(
        app,
        make_message("Reset your password", to="bob@example.com", Cc="carol@example.com"),
        rcpt_tos=["bob@example.com", "carol@example.com", "audit@example.com"],
    )
    with_file = make_message(
        "Invoice", to="xsusan@example.com", text="Total: 42 euros", sender="billing@example.test"
    )
    with_file.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf",
                             filename="invoice.pdf")  # fmt: skip
    await send_smtplib(app, with_file, mail_from="billing@example.test")


async def test_search_terms(client: TestClient[Any, Any]) -> None:
    await _seed(client)
    assert await _ids(client, "to:susan@example.com") == ["Welcome aboard"]  # not xsusan@
    assert await _ids(client, "to:SUSAN@example.com") == ["Welcome aboard"]
    assert await _ids(client, "cc:carol@example.com") == ["Reset your password"]
    assert await _ids(client, "bcc:audit@example.com") == ["Reset your password"]
    assert await _ids(client, "addressed:audit@example.com") == ["Reset your password"]
    assert await _ids(client, "addressed:carol@example.com") == ["Reset your password"]
    assert await _ids(client, "from:app@example.test") == ["Reset your password", "Welcome aboard"]
    assert await _ids(client, "subject:password") == ["Reset your password"]
    assert await _ids(client, '"your password"') == ["Reset your password"]
    assert await _ids(client, "euros") == ["Invoice"]
    assert await _ids(client, "has:attachment") == ["Invoice"]
    assert await _ids(client, "-has:attachment -subject:reset") == ["Welcome aboard"]
    assert await _ids(client, "to:example.com") == [
        "Invoice",
        "Reset your password",
        "Welcome aboard",
    ]
    assert await _ids(client, "is:read") == []
    assert len(await _ids(client, "is:unread")) == 3
    assert len(await _ids(client, "after:2000-01-01")) == 3
    assert await _ids(client, "before:2000-01-01") == []
    # A term it cannot use is a 400, never ignored (which would widen a DELETE by search).
    await api_json(client, f"{API}/search?query=before:not-a-date", status=400)
    assert await _ids(client, "100%_") == []  # LIKE wildcards are literal


async def test_message_id_search_and_latest_query(client: TestClient[Any, Any]) -> None:
    app = client.app
    await send_smtplib(app, make_message("First", Message_ID="<one@example.test>"))
    await send_smtplib(app, make_message("Second", Message_ID="<two@example.test>"))
    assert await _ids(client, "message-id:one@example.test") == ["First"]
    latest = await api_json(client, f"{API}/message/latest")
    assert latest["Subject"] == "Second" and latest["MessageID"] == "two@example.test"
    first = await api_json(client, f"{API}/message/latest?query=subject:First")
    assert first["Subject"] == "First"
    await api_json(client, f"{API}/message/latest?query=subject:nothing", status=404)


async def test_read_flags_and_delete(client: TestClient[Any, Any]) -> None:
    await _seed(client)
    listing = await api_json(client, f"{API}/messages")
    ids = [m["ID"] for m in listing["messages"]]
    resp = await client.put(f"{API}/messages", json={"IDs": ids[:2], "Read": True})
    assert resp.status == 200
    listing = await api_json(client, f"{API}/messages")
    assert listing["unread"] == 1
    assert [m["Read"] for m in listing["messages"]] == [True, True, False]
    resp = await client.put(f"{API}/messages", json={"Read": False})  # no IDs: all
    assert (await api_json(client, f"{API}/messages"))["unread"] == 3
    resp = await client.delete(f"{API}/messages", json={"IDs": [ids[0]]})
    assert resp.status == 200
    assert (await api_json(client, f"{API}/messages"))["total"] == 2
    await api_json(client, f"{API}/message/{ids[0]}", status=404)
    resp = await client.delete(f"{API}/search?query=subject:welcome")
    assert resp.status == 200
    assert await _ids(client, "") == ["Reset your password"]
    resp = await client.delete(f"{API}/messages")  # no body: everything
    assert (await api_json(client, f"{API}/messages"))["total"] == 0


async def test_bad_api_input_is_400_json(client: TestClient[Any, Any]) -> None:
    resp = await client.put(
        f"{API}/messages", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400 and "Error" in await resp.json()
    resp = await client.put(f"{API}/messages", json={"IDs": "1", "Read": True})
    assert resp.status == 400
    resp = await client.put(f"{API}/messages", json={"Read": "yes"})
    assert resp.status == 400
    resp = await client.get(f"{API}/messages?limit=abc")
    assert resp.status == 400 and "Error" in await resp.json()
    resp = await client.delete(f"{API}/search")
    assert resp.status == 400


async def test_full_message_headers_raw_and_parts(client: TestClient[Any, Any]) -> None:
    msg = make_message("Report", text="See attached.", html='<p>See <img src="cid:logo@x"></p>')
    html_part = msg.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@x>")
    msg.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="data.csv")
    await send_smtplib(client.app, msg)
    full = await api_json(client, f"{API}/message/latest")
    assert full["Text"].strip() == "See attached."
    assert "cid:logo@x" in full["HTML"]
    assert full["Read"] is True
    (inline,) = full["Inline"]
    assert inline["ContentType"] == "image/png" and inline["ContentID"] == "logo@x"
    (attachment,) = full["Attachments"]
    assert attachment["FileName"] == "data.csv" and attachment["Size"] == 8
    mid = full["ID"]
    headers = await api_json(client, f"{API}/message/{mid}/headers")
    assert headers["Subject"] == ["Report"]
    raw = await client.get(f"{API}/message/{mid}/raw")
    assert raw.status == 200 and b"Subject: Report" in await raw.read()
    part = await client.get(f"{API}/message/{mid}/part/{attachment['PartID']}")
    assert part.status == 200 and await part.read() == b"a,b\n1,2\n"
    assert part.headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in part.headers["Content-Security-Policy"]
    image = await client.get(f"{API}/message/{mid}/part/{inline['PartID']}")
    assert image.headers["Content-Type"] == "image/png"
    assert (await client.get(f"{API}/message/{mid}/part/9.9")).status == 404
    page = await (await client.get(f"/dev/inbox/{mid}")).text()
    assert f"/dev/inbox/api/v1/message/{mid}/part/{inline['PartID']}" in page  # cid: rewritten


async def test_links_endpoint(client: TestClient[Any, Any]) -> None:
    html = (
        '<p><a href="http://localhost:8080/reset_password/abc.def.ghi">Reset it</a> '
        '<a href="https://example.org/help">Help &amp; <b>support</b></a></p>'
    )
    text = "Reset: http://localhost:8080/reset_password/abc.def.ghi\nDocs (https://example.org/docs).\n"
    await send_smtplib(client.app, make_message("Links", text=text, html=html))
    data = await api_json(client, f"{API}/message/latest/links")
    assert {"URL": "http://localhost:8080/reset_password/abc.def.ghi", "Text": "Reset it",
            "Part": "html", "Kind": "reset"} in data["Links"]  # fmt: skip
    assert {"URL": "https://example.org/help", "Text": "Help & support", "Part": "html",
            "Kind": "other"} in data["Links"]  # fmt: skip
    assert {"URL": "https://example.org/docs", "Text": "", "Part": "text",
            "Kind": "other"} in data["Links"]  # fmt: skip


async def test_latest_wait_long_polls_until_a_match_arrives(client: TestClient[Any, Any]) -> None:
    await send_smtplib(client.app, make_message("Other"))
    waiting = asyncio.create_task(client.get(f"{API}/message/latest?query=subject:awaited&wait=10"))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await send_smtplib(client.app, make_message("The awaited one"))
    resp = await asyncio.wait_for(waiting, 10)
    assert resp.status == 200
    assert (await resp.json())["Subject"] == "The awaited one"
    resp = await client.get(f"{API}/message/latest?query=subject:never&wait=1")
    assert resp.status == 404


async def test_info_and_health(client: TestClient[Any, Any]) -> None:
    await send_smtplib(client.app, make_message("Counted"))
    data = await api_json(client, f"{API}/info")
    assert data["Messages"] == 1 and data["Unread"] == 1 and data["DatabaseSize"] > 0
    assert data["RuntimeStats"]["SMTPAccepted"] == 1
    assert data["RuntimeStats"]["SMTPRejected"] == 0
    for path in ("/dev/inbox/livez", "/dev/inbox/readyz"):
        resp = await client.get(path)
        assert resp.status == 200 and await resp.text() == "ok"
