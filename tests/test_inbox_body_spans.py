"""A body stored as its span in the raw source shows exactly what a stored copy showed.

Real SMTP over loopback into the real app and its SQLite file. Each message is
read through the page and the API twice: as stored at ingest (a UTF-8 or
quoted-printable body as its span in the raw source, other bodies as decoded
copies), and then with its view row deleted, when the view is made afresh
from the raw source by the parser process, as it was before spans were kept.
Both readings must be identical.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import sqlite3
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd.inbox import keys as ikeys
from tests.inbox_helpers import api_json, smtp_address

API = "/dev/inbox/api/v1"
LINK = "http://localhost:8080/reset_password/" + "t" * 60
TEXT = f"Grüße, Zoë €\n\nOpen {LINK} to choose a new password.\n" + "-" * 100 + "\n"
HTML = f'<p>Grüße, Zoë €</p><p><a href="{LINK}">Choose a new password</a> = done</p>'
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def _multipart(text_cte: str, html_cte: str, charset: str = "utf-8") -> bytes:
    msg = EmailMessage()
    msg["From"] = "App <app@example.test>"
    msg["To"] = "susan@example.com"
    msg["Subject"] = f"{text_cte} / {html_cte} / {charset}"
    msg.set_content(TEXT, charset=charset, cte=text_cte)
    msg.add_alternative(HTML, subtype="html", charset=charset, cte=html_cte)
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="logo.png")
    return msg.as_bytes().replace(b"\n", b"\r\n")


async def _send(client: TestClient[Any, Any], raw: bytes) -> None:
    host, port = smtp_address(client.app)

    def run() -> None:
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            smtp.sendmail("app@example.test", ["susan@example.com"], raw)

    await asyncio.to_thread(run)
    await asyncio.wait_for(client.app[ikeys.writer].flush(), 15)


def _db(client: TestClient[Any, Any]) -> sqlite3.Connection:
    return sqlite3.connect(client.app[ikeys.writer].store.db.path, isolation_level=None)


async def _shown(client: TestClient[Any, Any], mid: str) -> dict[str, Any]:
    """What the API and the page show of message ``mid``."""
    message = await api_json(client, f"{API}/message/{mid}")
    links = await api_json(client, f"{API}/message/{mid}/links")
    page = await client.get(f"/dev/inbox/{mid}")
    assert page.status == 200
    html = await page.text()
    part = message["Attachments"][0]["PartID"]
    download = await client.get(f"{API}/message/{mid}/part/{part}")
    assert download.status == 200
    # The page carries a fresh CSP nonce per answer; everything from the view is kept.
    body = html[html.index("<main") :] if "<main" in html else html
    return {
        "Text": message["Text"],
        "HTML": message["HTML"],
        "Attachments": message["Attachments"],
        "Links": links["Links"],
        "page": body,
        "part": await download.read(),
    }


@pytest.mark.parametrize(
    ("text_cte", "html_cte", "charset", "spans"),
    [
        ("8bit", "quoted-printable", "utf-8", True),
        ("quoted-printable", "8bit", "utf-8", True),
        ("base64", "base64", "utf-8", False),
        ("8bit", "quoted-printable", "windows-1252", False),
    ],
)
async def test_bodies_kept_as_spans_show_what_a_view_made_from_the_raw_source_shows(
    client: TestClient[Any, Any], text_cte: str, html_cte: str, charset: str, spans: bool
) -> None:
    await _send(client, _multipart(text_cte, html_cte, charset))
    mid = (await api_json(client, f"{API}/messages"))["messages"][0]["ID"]
    with contextlib.closing(_db(client)) as db:
        text, html, text_at, html_at = db.execute(
            "SELECT text, html, text_at, html_at FROM message_view WHERE id = ?", (mid,)
        ).fetchone()
    # UTF-8 as sent or quoted-printable: no second copy; base64 or Windows-1252: a copy.
    assert (text == "" and html == "") is spans
    assert (text_at is not None and html_at is not None) is spans

    stored = await _shown(client, mid)
    assert stored["Text"].replace("\r\n", "\n") == TEXT  # as the transfer encoding has it
    assert stored["HTML"].rstrip("\r\n") == HTML
    assert [(link["URL"], link["Text"]) for link in stored["Links"]] == [
        (LINK, "Choose a new password"),
        (LINK, ""),
    ]
    assert "Grüße, Zoë €" in stored["page"] and stored["part"] == PNG

    with contextlib.closing(_db(client)) as db:
        db.execute("DELETE FROM message_view WHERE id = ?", (mid,))  # made afresh when opened
    assert await _shown(client, mid) == stored


async def test_a_view_row_stored_before_spans_were_still_reads_its_copies(
    client: TestClient[Any, Any],
) -> None:
    await _send(client, _multipart("8bit", "quoted-printable"))
    mid = (await api_json(client, f"{API}/messages"))["messages"][0]["ID"]
    stored = await _shown(client, mid)
    with contextlib.closing(_db(client)) as db:
        # As migration 3 leaves an older row: the copies, no spans.
        db.execute(
            "UPDATE message_view SET text = ?, html = ?, text_at = NULL, text_len = NULL, "
            "html_at = NULL, html_len = NULL, qp = 0 WHERE id = ?",
            (stored["Text"], stored["HTML"], mid),
        )
    assert await _shown(client, mid) == stored
