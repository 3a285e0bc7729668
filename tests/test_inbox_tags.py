"""Tags as Mailpit has them: X-Tags and plus-addresses at ingest, the tag calls, bounds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp.test_utils import TestClient

from resetd.db import Database
from resetd.inbox.schema import INBOX_MIGRATIONS
from resetd.inbox.tags import MAX_TAG_LENGTH, MAX_TAGS_PER_MESSAGE, clean_tag, unique_tags
from tests.inbox_helpers import api_json, make_message, send_smtplib

API = "/dev/inbox/api/v1"


async def _tags_by_subject(client: TestClient[Any, Any]) -> dict[str, list[str]]:
    listing = await api_json(client, f"{API}/messages")
    return {m["Subject"]: m["Tags"] for m in listing["messages"]}


async def _id_of(client: TestClient[Any, Any], subject: str) -> str:
    found = await api_json(client, f"{API}/search?query={quote('subject:' + subject)}")
    return str(found["messages"][0]["ID"])


def test_names_are_cleaned_as_mailpit_cleans_them() -> None:
    assert clean_tag("  Hello,   World!  ") == "Hello World"
    assert clean_tag("a<script>b") == "a script b"
    assert clean_tag("user@example.com_v1.2-x") == "user@example.com_v1.2-x"
    assert clean_tag("!!!") == ""
    assert len(clean_tag("x" * 10_000)) == MAX_TAG_LENGTH
    assert unique_tags(["b", "B", "a", " ", "a"]) == ["a", "b"]
    assert len(unique_tags([f"t{n}" for n in range(1000)])) == MAX_TAGS_PER_MESSAGE


async def test_x_tags_and_plus_addresses_become_tags(client: TestClient[Any, Any]) -> None:
    app = client.app
    await send_smtplib(app, make_message("Header", X_Tags="Signup, urgent!, signup,  "))
    plus = "dev+reset+eu@example.com"
    await send_smtplib(app, make_message("Plus", to=plus), rcpt_tos=[plus])
    await send_smtplib(app, make_message("None"))
    tags = await _tags_by_subject(client)
    assert tags == {"Header": ["Signup", "urgent"], "Plus": ["eu", "reset"], "None": []}
    listing = await api_json(client, f"{API}/messages")
    assert listing["tags"] == ["Signup", "eu", "reset", "urgent"]
    assert await api_json(client, f"{API}/tags") == ["Signup", "eu", "reset", "urgent"]
    message = await api_json(client, f"{API}/message/{await _id_of(client, 'Header')}")
    assert message["Tags"] == ["Signup", "urgent"]
    info = await api_json(client, f"{API}/info")
    assert info["Tags"] == {"Signup": 1, "eu": 1, "reset": 1, "urgent": 1}


async def test_a_mail_with_many_long_tags_is_bounded(client: TestClient[Any, Any]) -> None:
    many = ",".join(f"tag{n}-" + "x" * 200 for n in range(500))
    await send_smtplib(client.app, make_message("Many", X_Tags=many))
    (tags,) = (await _tags_by_subject(client)).values()
    assert 0 < len(tags) <= MAX_TAGS_PER_MESSAGE
    assert all(len(t) <= MAX_TAG_LENGTH for t in tags)


async def test_put_tags_sets_rename_and_delete(client: TestClient[Any, Any]) -> None:
    app = client.app
    for subject in ("One", "Two", "Three"):
        await send_smtplib(app, make_message(subject))
    one, two = await _id_of(client, "One"), await _id_of(client, "Two")
    body = {"Tags": ["Blue", "red", "blue"], "IDs": [one, two]}
    resp = await client.put(f"{API}/tags", json=body)
    assert resp.status == 200 and await resp.text() == "ok"
    assert await _tags_by_subject(client) == {"One": ["Blue", "red"], "Two": ["Blue", "red"],
                                               "Three": []}  # fmt: skip
    # Replaces, as Mailpit's call does; an empty list removes them all.
    await client.put(f"{API}/tags", json={"Tags": ["green"], "IDs": [one]})
    await client.put(f"{API}/tags", json={"Tags": [], "IDs": [two]})
    assert await _tags_by_subject(client) == {"One": ["green"], "Two": [], "Three": []}
    assert await api_json(client, f"{API}/tags") == ["green"]  # unused tags are gone
    # No IDs: nothing changes (never every message).
    await client.put(f"{API}/tags", json={"Tags": ["all"]})
    assert await api_json(client, f"{API}/tags") == ["green"]
    # By search, beyond Mailpit.
    await client.put(f"{API}/tags", json={"Tags": ["found"], "Search": "subject:Three"})
    assert (await _tags_by_subject(client))["Three"] == ["found"]

    resp = await client.put(f"{API}/tags/green", json={"Name": "Teal colour"})
    assert resp.status == 200
    assert (await _tags_by_subject(client))["One"] == ["Teal colour"]
    teal = quote('tag:"teal colour"')
    found = await api_json(client, f"{API}/search?query={teal}")
    assert [m["Subject"] for m in found["messages"]] == ["One"]
    resp = await client.put(f"{API}/tags/{quote('Teal colour')}", json={"Name": "found"})
    assert resp.status == 400  # taken
    resp = await client.put(f"{API}/tags/nothing", json={"Name": "x"})
    assert resp.status == 404
    resp = await client.put(f"{API}/tags/found", json={"Name": "!!!"})
    assert resp.status == 400

    resp = await client.delete(f"{API}/tags/{quote('Teal colour')}")
    assert resp.status == 200
    assert await _tags_by_subject(client) == {"One": [], "Two": [], "Three": ["found"]}
    assert (await client.delete(f"{API}/tags/nothing")).status == 404


async def test_put_tags_with_bad_input_is_400(client: TestClient[Any, Any]) -> None:
    await send_smtplib(client.app, make_message("One"))
    one = await _id_of(client, "One")
    for body in (
        {"Tags": "red", "IDs": [one]},
        {"Tags": [1], "IDs": [one]},
        {"Tags": ["red"], "IDs": [one], "Search": "subject:One"},
        {"Tags": ["red"], "Ids": [one], "Colour": "x"},
        {"Tags": ["x"] * 1001, "IDs": [one]},
    ):
        resp = await client.put(f"{API}/tags", json=body)
        assert resp.status == 400, body
    assert await api_json(client, f"{API}/tags") == []


async def test_tag_chips_show_in_the_list_and_message_pages(client: TestClient[Any, Any]) -> None:
    await send_smtplib(client.app, make_message("Chips", X_Tags="Signup <b>x</b>"))
    page = await (await client.get("/dev/inbox")).text()
    assert 'class="tag"' in page and "Signup b x b" in page and "<b>x</b>" not in page
    message_page = await (await client.get(f"/dev/inbox/{await _id_of(client, 'Chips')}")).text()
    assert 'class="tag"' in message_page and "Signup b x b" in message_page


async def test_migration_4_fills_inline_counts_and_reply_to_of_rows_stored_before(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "inbox.db")
    db = await Database.open(path, migrations=INBOX_MIGRATIONS[:3])
    reply_to = json.dumps([{"Name": "Rita", "Address": "Rita@Example.org"}])
    parts = [{"PartID": "2", "FileName": "", "ContentType": "image/png", "ContentID": "logo",
              "Size": 3, "Inline": True}]  # fmt: skip
    await db.execute(
        "INSERT INTO messages (id, created, message_id, from_name, from_addr, to_json, cc_json, "
        "bcc_json, reply_to_json, subject, size, attachments, snippet, mail_from, rcpt_json, "
        "problem) VALUES (1, 0, '', '', '', '[]', '[]', '[]', ?, 'Old', 10, 1, '', '', '[]', '')",
        (reply_to,),
    )
    await db.execute(
        "INSERT INTO message_view (id, text, html, view_json) VALUES (1, '', '', ?)",
        (json.dumps({"Headers": [], "Parts": parts, "People": None, "Links": []}),),
    )
    await db.close()
    db = await Database.open(path, migrations=INBOX_MIGRATIONS)
    try:
        row = await db.fetchone("SELECT inline FROM messages WHERE id = 1")
        assert row is not None and row[0] == 1
        found = await db.fetchall("SELECT address FROM addresses WHERE kind = 'reply-to'")
        assert [r[0] for r in found] == ["rita@example.org"]
    finally:
        await db.close()


async def test_live_updates_carry_the_new_mails_tags(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/dev/inbox/events")
    await send_smtplib(client.app, make_message("Live", X_Tags="signup"))
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode()
        if line.startswith("event: new"):
            data = json.loads((await resp.content.readline()).decode()[len("data: ") :])
            break
    assert data["Subject"] == "Live" and data["Tags"] == ["signup"]
    resp.close()
