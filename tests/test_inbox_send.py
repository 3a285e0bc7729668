"""POST /dev/inbox/api/v1/send: Mailpit's JSON message, stored and visible at once."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import ConfigFactory
from tests.inbox_helpers import api_json

API = "/dev/inbox/api/v1"
PNG = b"\x89PNG\r\n\x1a\n fake image"


async def _send(client: TestClient[Any, Any], body: Any, status: int = 200) -> Any:
    resp = await client.post(f"{API}/send", json=body)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_send_stores_the_message_and_answers_its_id_visible_at_once(
    client: TestClient[Any, Any],
) -> None:
    sent = await _send(
        client,
        {
            "From": {"Email": "app@example.test", "Name": "The App"},
            "To": [{"Email": "susan@example.com", "Name": "Susan"}],
            "Cc": [{"Email": "carol@example.com"}],
            "Bcc": ["audit@example.com"],
            "ReplyTo": [{"Email": "help@example.test"}],
            "Subject": "Welcome ünïcode",
            "Text": "Plain body",
            "HTML": '<p>Rich <img src="cid:logo"></p>',
            "Attachments": [
                {"Content": base64.b64encode(b"a,b\n").decode(), "Filename": "d.csv",
                 "ContentType": "text/csv"},
                {"Content": "data:image/png;base64," + base64.b64encode(PNG).decode(),
                 "Filename": "logo.png", "ContentType": "image/png", "ContentID": "logo"},
            ],
            "Headers": {"X-Campaign": "spring"},
            "Tags": ["signup", "test run"],
        },
    )  # fmt: skip
    # No flush: the answer comes only once the message is stored.
    full = await api_json(client, f"{API}/message/{sent['ID']}")
    assert full["Subject"] == "Welcome ünïcode"
    assert full["From"] == {"Name": "The App", "Address": "app@example.test"}
    assert [a["Address"] for a in full["To"]] == ["susan@example.com"]
    assert [a["Address"] for a in full["Cc"]] == ["carol@example.com"]
    assert [a["Address"] for a in full["ReplyTo"]] == ["help@example.test"]
    assert full["Envelope"]["RcptTo"] == [
        "susan@example.com", "carol@example.com", "audit@example.com",
    ]  # fmt: skip
    assert full["Text"].strip() == "Plain body"
    assert "cid:logo" in full["HTML"]
    assert [a["FileName"] for a in full["Attachments"]] == ["d.csv"]
    (inline,) = full["Inline"]
    assert inline["ContentID"] == "logo" and inline["ContentType"] == "image/png"
    part = await client.get(f"{API}/message/{sent['ID']}/part/{inline['PartID']}")
    assert await part.read() == PNG
    headers = await api_json(client, f"{API}/message/{sent['ID']}/headers")
    assert headers["X-Campaign"] == ["spring"]
    assert headers["X-Tags"] == ["signup, test run"]
    assert "Bcc" not in headers  # Bcc is the envelope's only, as in real sending


async def test_send_of_minimal_text_only_message(client: TestClient[Any, Any]) -> None:
    sent = await _send(client, {"From": {"Email": "a@example.test"}, "Subject": "Hi"})
    listing = await api_json(client, f"{API}/messages")
    assert listing["messages"][0]["ID"] == sent["ID"]
    assert listing["messages"][0]["Subject"] == "Hi"


async def test_send_refuses_bad_input_with_400_naming_the_field(
    client: TestClient[Any, Any],
) -> None:
    good = {"From": {"Email": "a@example.test"}, "To": [{"Email": "b@example.com"}]}
    cases: list[tuple[Any, str]] = [
        ([], "JSON object"),
        ({}, "From"),
        ({"From": {"Email": "not an address"}}, "From"),
        ({**good, "To": [{"Email": "x@y@z"}]}, "To"),
        ({**good, "To": "b@example.com"}, "To: expected a list"),
        ({**good, "Subject": "a\r\nBcc: victim@example.com"}, "Subject"),
        ({**good, "Headers": {"Subject": "again"}}, "cannot overwrite"),
        ({**good, "Headers": {"X-A": "b\r\nBcc: victim@example.com"}}, "line breaks"),
        ({**good, "Headers": {"Bad Name": "v"}}, "header name"),
        ({**good, "Tags": ["a", "b"], "Headers": {"X-Tags": "c"}}, "cannot overwrite"),
        ({**good, "Tags": ["a\nb"]}, "Tags"),
        ({**good, "Attachments": [{"Content": "%%%", "Filename": "x"}]}, "base64"),
        ({**good, "Attachments": [{"Content": "", "ContentType": "nonsense"}]}, "ContentType"),
        ({**good, "From": {"Email": "a@example.test", "Name": "A\r\nB"}}, "line breaks"),
    ]
    for body, said in cases:
        resp = await client.post(f"{API}/send", json=body)
        assert resp.status == 400, (body, await resp.text())
        error = (await resp.json())["Error"]
        assert said in error, (body, error)
    assert (await api_json(client, f"{API}/messages"))["total"] == 0


async def test_send_larger_than_max_message_size_is_refused(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    from resetd.app import create_app

    client = await aiohttp_client(create_app(make_config(dev_inbox={"max_message_size": 4096})))
    resp = await client.post(
        f"{API}/send", json={"From": {"Email": "a@example.test"}, "Text": "x" * 10_000}
    )
    assert resp.status == 413
    # Past the request body's own bound: refused before any of it is decoded.
    body = {"From": {"Email": "a@example.test"}, "Text": "x" * (2 * 1024 * 1024)}
    huge = io.BytesIO(json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    assert (await client.post(f"{API}/send", data=huge, headers=headers)).status == 413
    assert (await api_json(client, f"{API}/messages"))["total"] == 0


async def test_send_with_more_recipients_than_max_recipients_is_400(
    client: TestClient[Any, Any],
) -> None:
    many = [f"u{n}@example.com" for n in range(1001)]
    resp = await client.post(f"{API}/send", json={"From": {"Email": "a@example.test"}, "Bcc": many})
    assert resp.status == 400 and "at most 1000" in (await resp.json())["Error"]


async def test_send_takes_attachments_larger_than_other_request_bodies(
    client: TestClient[Any, Any],
) -> None:
    """Other API bodies stop at 1 MiB; a send carries mail up to max_message_size."""
    data = bytes(range(256)) * (3 * 4096)  # 3 MiB
    body = {
        "From": {"Email": "a@example.test"},
        "Attachments": [{"Content": base64.b64encode(data).decode(), "Filename": "big.bin"}],
    }
    resp = await client.post(
        f"{API}/send",
        data=io.BytesIO(json.dumps(body).encode()),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 200, await resp.text()
    full = await api_json(client, f"{API}/message/{(await resp.json())['ID']}")
    (attachment,) = full["Attachments"]
    assert attachment["Size"] == len(data)
