"""Answers field by field as Mailpit's swagger has them, and parts served with their own type."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd.inbox.unsubscribe import parse
from tests.inbox_helpers import api_json, make_message, send_smtplib

API = "/dev/inbox/api/v1"


async def _latest(client: TestClient[Any, Any]) -> dict[str, Any]:
    data: dict[str, Any] = await api_json(client, f"{API}/message/latest")
    return data


async def test_message_answer_has_mailpits_fields(client: TestClient[Any, Any]) -> None:
    message = make_message(
        "Fields",
        List_Unsubscribe="<mailto:off@example.com>, <https://example.com/off?u=1>",
        List_Unsubscribe_Post="List-Unsubscribe=One-Click",
    )
    content = b"%PDF-1.4 not really"
    message.add_attachment(content, maintype="application", subtype="pdf", filename="a.pdf")
    await send_smtplib(client.app, message)
    data = await _latest(client)
    swagger_message = {
        "ID", "MessageID", "From", "To", "Cc", "Bcc", "ReplyTo", "ReturnPath", "Subject",
        "ListUnsubscribe", "Date", "Tags", "Text", "HTML", "Size", "Inline", "Attachments",
    }  # fmt: skip
    assert swagger_message <= set(data)
    assert data["ListUnsubscribe"] == {
        "Header": "<mailto:off@example.com>, <https://example.com/off?u=1>",
        "Links": ["mailto:off@example.com", "https://example.com/off?u=1"],
        "Errors": "",
        "HeaderPost": "List-Unsubscribe=One-Click",
    }
    (attachment,) = data["Attachments"]
    assert attachment["Checksums"] == {
        "MD5": hashlib.md5(content).hexdigest(),
        "SHA1": hashlib.sha1(content).hexdigest(),
        "SHA256": hashlib.sha256(content).hexdigest(),
    }
    assert {"PartID", "FileName", "ContentType", "ContentID", "Size"} <= set(attachment)


async def test_message_without_list_unsubscribe_has_an_empty_one(
    client: TestClient[Any, Any],
) -> None:
    await send_smtplib(client.app, make_message("Plain"))
    data = await _latest(client)
    assert data["ListUnsubscribe"] == {"Header": "", "Links": [], "Errors": "", "HeaderPost": ""}


@pytest.mark.parametrize(
    ("header", "links", "error"),
    [
        ("<https://a.example/x>", ["https://a.example/x"], ""),
        ("https://a.example/x", [], "no valid unsubscribe links found"),
        ("<https://a.example/x> (comment)", ["https://a.example/x"], ""),
        ("<https://a.example/x> <mailto:x@a.example>", [], "split with a comma"),
        ("<a>, <b>, <c>", [], "maximum of one email and one HTTP link"),
        ("<ftp://a.example>", [], "should start with either http(s):// or mailto:"),
        ("<https://a.example/x>, <https://b.example/y>", ["https://a.example/x"], "one HTTP link"),
        ("<https://a.example/ x>", [], "should not contain spaces"),
        ("<" * 5000, [], "no valid unsubscribe links found"),
    ],
)
def test_list_unsubscribe_is_checked_as_mailpit_checks_it(
    header: str, links: list[str], error: str
) -> None:
    found, errors = parse(header)
    assert found == links
    assert error in errors and bool(errors) == bool(error)


async def test_info_has_runtime_memory_and_webui_answers(client: TestClient[Any, Any]) -> None:
    info = await api_json(client, f"{API}/info")
    assert info["RuntimeStats"]["Memory"] > 1024 * 1024
    webui = await api_json(client, f"{API}/webui")
    assert set(webui) == {
        "Label", "MessageRelay", "SpamAssassin", "ChaosEnabled", "DuplicatesIgnored",
        "HideDeleteAllButton",
    }  # fmt: skip
    assert set(webui["MessageRelay"]) >= {
        "Enabled", "SMTPServer", "ReturnPath", "AllowedRecipients", "BlockedRecipients",
        "OverrideFrom", "PreserveMessageIDs",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("maintype", "subtype", "served", "disposition"),
    [
        ("image", "png", "image/png", "inline"),
        ("text", "plain", "text/plain; charset=utf-8", "inline"),
        ("application", "pdf", "application/pdf", "attachment"),
        ("text", "html", "text/html; charset=utf-8", "attachment"),
        ("image", "svg+xml", "image/svg+xml", "attachment"),
        ("application", "xml", "application/xml", "attachment"),
        ("text", "javascript", "text/javascript; charset=utf-8", "attachment"),
    ],
)
async def test_a_part_is_served_with_its_own_type_and_runnable_ones_as_downloads(
    client: TestClient[Any, Any], maintype: str, subtype: str, served: str, disposition: str
) -> None:
    message = make_message("Part")
    data = b"<svg onload=alert(1)><script>alert(1)</script></svg>"
    if maintype == "text":
        message.add_attachment(data.decode(), subtype=subtype, filename="p")
    else:
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename="p")
    await send_smtplib(client.app, message)
    (part,) = (await _latest(client))["Attachments"]
    resp = await client.get(f"{API}/message/latest/part/{part['PartID']}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == served  # was application/octet-stream
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith(disposition + ";")
    assert "sandbox" in resp.headers["Content-Security-Policy"]
    assert (await resp.read()).rstrip() == data  # a text part ends with its line break


async def test_a_malformed_part_type_is_served_as_octet_stream(
    client: TestClient[Any, Any],
) -> None:
    raw = (
        b"From: a@example.test\r\nTo: b@example.com\r\nSubject: Odd\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n"
        b'hi\r\n--b\r\nContent-Type: text/html"<x>; name=p.html\r\n'
        b"Content-Disposition: attachment; filename=p.html\r\n\r\n<b>x</b>\r\n--b--\r\n"
    )
    await send_smtplib(client.app, raw)
    (part,) = (await _latest(client))["Attachments"]
    resp = await client.get(f"{API}/message/latest/part/{part['PartID']}")
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
