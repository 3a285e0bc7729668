"""Mailpit's search syntax, filter by filter, and changes by search that touch only the matches."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from resetd.errors import BadSearch, SearchTooLarge
from resetd.inbox.search import parse_query, split_terms
from tests.helpers import csrf_from
from tests.inbox_helpers import api_json, make_message, send_smtplib

API = "/dev/inbox/api/v1"

TINY = b"From: a@example.test\r\nTo: tiny@example.com\r\nSubject: Tiny\r\n\r\nhi\r\n"


async def _subjects(client: TestClient[Any, Any], query: str) -> list[str]:
    data = await api_json(client, f"{API}/search?query={quote(query)}")
    return sorted(m["Subject"] for m in data["messages"])


async def _seed(client: TestClient[Any, Any]) -> None:
    app = client.app
    tagged = make_message(
        "Tagged",
        to="Una <u1@example.com>",
        text="Plain text body. " + "More words to be past 300 bytes. " * 3,
        X_Tags="Alpha, beta",
        Reply_To="Rita <r@example.org>",
    )
    await send_smtplib(app, tagged, rcpt_tos=["u1@example.com"])
    inline = make_message("Inline", to="u2@example.com", text=None, html='<img src="cid:logo">')
    inline.add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<logo>")
    await send_smtplib(app, inline, rcpt_tos=["u2@example.com"])
    big = make_message("Big", to="u3@example.com")
    big.add_attachment(b"x" * (1024 * 1024 + 10), maintype="application", subtype="octet-stream",
                       filename="big.bin")  # fmt: skip
    await send_smtplib(app, big, rcpt_tos=["u3@example.com"])
    await send_smtplib(app, TINY, rcpt_tos=["tiny@example.com"])


async def test_each_filter_matches_the_right_messages(client: TestClient[Any, Any]) -> None:
    await _seed(client)
    everyone = ["Big", "Inline", "Tagged", "Tiny"]
    assert await _subjects(client, "is:tagged") == ["Tagged"]  # matched everything before
    assert await _subjects(client, "-is:tagged") == ["Big", "Inline", "Tiny"]
    assert await _subjects(client, "!is:tagged") == ["Big", "Inline", "Tiny"]
    assert await _subjects(client, "is:untagged") == ["Big", "Inline", "Tiny"]
    assert await _subjects(client, "has:inline") == ["Inline"]  # matched everything before
    assert await _subjects(client, "has:attachment") == ["Big"]  # an inline image is not one
    assert await _subjects(client, "larger:1M") == ["Big"]  # matched nothing before
    assert await _subjects(client, "larger:1.5m") == []
    assert await _subjects(client, "-larger:1M") == ["Inline", "Tagged", "Tiny"]
    assert await _subjects(client, "smaller:300") == ["Tiny"]  # matched nothing before
    assert await _subjects(client, "smaller:2MB") == everyone
    assert await _subjects(client, "reply-to:r@example.org") == ["Tagged"]  # nothing before
    assert await _subjects(client, "reply-to:Rita") == ["Tagged"]
    assert await _subjects(client, "tag:alpha") == ["Tagged"]  # matched nothing before
    assert await _subjects(client, "tag:BETA") == ["Tagged"]
    assert await _subjects(client, "-tag:beta") == ["Big", "Inline", "Tiny"]
    assert await _subjects(client, "tag:gamma") == []
    assert await _subjects(client, "addressed:r@example.org") == ["Tagged"]
    assert await _subjects(client, "addressed:a@example.test") == ["Tiny"]  # From counts
    assert await _subjects(client, "to:u2@example.com") == ["Inline"]
    assert await _subjects(client, "to:Una") == ["Tagged"]  # a name, as Mailpit matches
    assert await _subjects(client, "from:app@example.test -subject:big") == ["Inline", "Tagged"]
    assert await _subjects(client, "is:unread has:inline") == ["Inline"]
    assert await _subjects(client, "after:2000-01-01 before:2999-12-31") == everyone
    assert await _subjects(client, "!after:2000-01-01") == []
    assert await _subjects(client, '"plain text body" -big') == ["Tagged"]
    assert await _subjects(client, "message-id:nothing-like-this") == []


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("foo:bar", 'Unknown search filter "foo:"'),
        ("is:blue", "is: takes"),
        ("has:wings", "has: takes"),
        ("larger:lots", "larger: takes a size"),
        ("smaller:1T", "smaller: takes a size"),
        ("after:someday", "after: takes a date"),
    ],
)
async def test_a_filter_it_does_not_know_is_400_with_a_message(
    client: TestClient[Any, Any], query: str, says: str
) -> None:
    await _seed(client)
    error = await api_json(client, f"{API}/search?query={quote(query)}", status=400)
    assert says in error["Error"]
    resp = await client.delete(f"{API}/search?query={quote('to:u2@example.com ' + query)}")
    assert resp.status == 400
    assert len(await _subjects(client, "")) == 4  # nothing was deleted


async def test_text_with_a_colon_is_text_when_quoted_or_a_url(client: TestClient[Any, Any]) -> None:
    message = make_message("re:hello", text="see https://example.com/x at 12:30")
    await send_smtplib(client.app, message)
    assert await _subjects(client, '"re:hello"') == ["re:hello"]
    assert await _subjects(client, "https://example.com/x") == ["re:hello"]
    assert await _subjects(client, "12:30") == ["re:hello"]


def test_the_scanner_is_linear_and_bounded() -> None:
    assert split_terms('a "b c" d"e f"g -"h"') == [
        ("a", False), ("b c", True), ("de fg", True), ("-h", True)
    ]  # fmt: skip
    with pytest.raises(SearchTooLarge):
        parse_query('"' * 1001)
    with pytest.raises(SearchTooLarge):
        parse_query("a " * 33)
    assert isinstance(SearchTooLarge(""), BadSearch)
    parse_query('"' * 1000)  # unbalanced quotes: one pass, no error
    parse_query(("-" * 999) + "x")


async def test_tz_names_the_zone_of_a_date(client: TestClient[Any, Any]) -> None:
    await send_smtplib(client.app, make_message("Now"))
    assert await _subjects(client, "after:2000-01-01") == ["Now"]
    data = await api_json(client, f"{API}/search?query=after:2000-01-01&tz=Pacific/Auckland")
    assert [m["Subject"] for m in data["messages"]] == ["Now"]
    error = await api_json(client, f"{API}/search?query=after:2000-01-01&tz=Mars/Base", status=400)
    assert "tz" in error["Error"]


async def _read_subjects(client: TestClient[Any, Any]) -> list[str]:
    data = await api_json(client, f"{API}/search?query=is:read")
    return sorted(m["Subject"] for m in data["messages"])


async def test_put_messages_by_search_changes_only_the_matches(
    client: TestClient[Any, Any],
) -> None:
    await _seed(client)
    resp = await client.put(f"{API}/messages", json={"Search": "to:u2@example.com", "Read": True})
    assert resp.status == 200
    assert await _read_subjects(client) == ["Inline"]  # before: every message was read
    # Mailpit reads the keys in any case.
    resp = await client.put(f"{API}/messages", json={"search": "to:u3@example.com", "read": True})
    assert resp.status == 200
    assert await _read_subjects(client) == ["Big", "Inline"]
    resp = await client.put(f"{API}/messages", json={"Search": "is:read", "Read": False})
    assert await _read_subjects(client) == []


@pytest.mark.parametrize(
    "body",
    [
        {"Search": "to:u2@example.com", "IDs": ["1"], "Read": True},  # both
        {"Query": "to:u2@example.com", "Read": True},  # a misspelt key
        {"Search": "larger:lots", "Read": True},  # a bad filter
        {"Search": '""', "Read": True},  # a search that filters on nothing
        {"Search": 3, "Read": True},
    ],
)
async def test_put_messages_that_cannot_name_messages_is_400_and_changes_nothing(
    client: TestClient[Any, Any], body: dict[str, Any]
) -> None:
    await _seed(client)
    resp = await client.put(f"{API}/messages", json=body)
    assert resp.status == 400, await resp.text()
    assert await _read_subjects(client) == []


async def test_delete_messages_by_search_deletes_only_the_matches(
    client: TestClient[Any, Any],
) -> None:
    await _seed(client)
    resp = await client.delete(f"{API}/messages", json={"Search": "to:u2@example.com"})
    assert resp.status == 200
    assert await _subjects(client, "") == ["Big", "Tagged", "Tiny"]
    resp = await client.delete(f"{API}/messages", json={"Query": "to:u3@example.com"})
    assert resp.status == 400  # not "delete everything"
    resp = await client.delete(f"{API}/search?query={quote('tag:alpha')}")
    assert resp.status == 200
    assert await _subjects(client, "") == ["Big", "Tiny"]
    listing = await api_json(client, f"{API}/messages")
    assert listing["tags"] == []  # the deleted message's tags went with it


async def test_search_counts_its_unread_matches(client: TestClient[Any, Any]) -> None:
    await _seed(client)
    await client.put(f"{API}/messages", json={"Search": "to:u2@example.com", "Read": True})
    found = await api_json(client, f"{API}/search?query={quote('to:example.com')}")
    assert found["messages_count"] == 4 and found["messages_unread"] == 3
    listing = await api_json(client, f"{API}/messages")
    assert listing["messages_unread"] == 3 and listing["unread"] == 3


async def test_before_parameter_pages_by_time_as_mailpit(client: TestClient[Any, Any]) -> None:
    await send_smtplib(client.app, make_message("Now"))
    old = await api_json(client, f"{API}/messages?before=2000-01-01")
    assert old["messages"] == [] and old["messages_count"] == 0
    later = await api_json(client, f"{API}/search?query=now&before=2999-01-01")
    assert [m["Subject"] for m in later["messages"]] == ["Now"]
    await api_json(client, f"{API}/messages?before=someday", status=400)


async def test_the_list_page_says_an_unknown_filter_beside_the_search_field(
    client: TestClient[Any, Any],
) -> None:
    await send_smtplib(client.app, make_message("Kept"))
    resp = await client.get(f"/dev/inbox?q={quote('foo:bar')}")
    assert resp.status == 400
    page = await resp.text()
    assert "Unknown search filter" in page and "No search was run." in page
    token = await csrf_from(client, "/dev/inbox")
    form = {"q": "subject:Kept larger:lots", "csrf_token": token}
    resp = await client.post("/dev/inbox/delete", data=form, allow_redirects=False)
    assert resp.status == 400 and "larger: takes a size" in await resp.text()
    assert await _subjects(client, "") == ["Kept"]  # "delete matching" deleted nothing
