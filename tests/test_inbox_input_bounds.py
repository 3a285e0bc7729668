"""What a client sends to the inbox is bounded, and past a bound it gets a 400, never a 500.

A search with a thousand terms used to reach SQLite as a thousand ANDed
conditions (``Expression tree is too large``: a 500); a search over 2 000
characters was silently cut short, which could make ``DELETE search`` remove
more than it was asked to. Numbers and lists out of range were clamped or
cut without a word, JSON nested deeply enough was a 500, and any number of
long-polls could each hold a queue of events.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from resetd.inbox import keys as ikeys
from resetd.inbox.events import MAX_SUBSCRIBERS
from resetd.inbox.search import MAX_QUERY_LENGTH, MAX_TERMS
from tests.helpers import csrf_from, eventually
from tests.inbox_helpers import api_json, make_message, send_smtplib

API = "/dev/inbox/api/v1"


def terms(n: int) -> str:
    return " ".join(["a"] * n)


async def _seed(client: TestClient[Any, Any]) -> None:
    await send_smtplib(client.app, make_message("keep", text="a body"))
    await send_smtplib(client.app, make_message("drop", text="a body"))


async def _subjects(client: TestClient[Any, Any]) -> list[str]:
    listing = await api_json(client, f"{API}/messages")
    return sorted(m["Subject"] for m in listing["messages"])


@pytest.mark.parametrize(
    "search",
    [terms(1000), terms(MAX_TERMS + 1), "x" * (MAX_QUERY_LENGTH + 1)],
    ids=["1000 terms", "one term too many", "one character too many"],
)
async def test_a_search_past_its_bounds_is_400_on_every_endpoint(
    client: TestClient[Any, Any], search: str
) -> None:
    await _seed(client)
    for method, path, params in [
        ("GET", f"{API}/search", {"query": search}),
        ("DELETE", f"{API}/search", {"query": search}),
        ("GET", f"{API}/message/latest", {"query": search}),
        ("GET", f"{API}/message/latest/links", {"query": search}),
        ("GET", f"{API}/message/latest/raw", {"query": search, "wait": "5"}),
    ]:
        resp = await client.request(method, path, params=params)
        assert resp.status == 400, (method, path, await resp.text())
        error = (await resp.json())["Error"]
        assert "A search may" in error and "this one has" in error
    # The list page says so next to the search field, keeping what was typed.
    resp = await client.get("/dev/inbox", params={"q": search})
    assert resp.status == 400
    page = await resp.text()
    assert 'aria-describedby="q-error"' in page and 'id="q-error"' in page
    assert "A search may" in page and "No search was run." in page
    resp = await client.get("/dev/inbox/latest", params={"q": search})
    assert resp.status == 400 and "A search may" in await resp.text()
    token = await csrf_from(client, "/dev/inbox")
    resp = await client.post("/dev/inbox/delete", data={"csrf_token": token, "q": search})
    assert resp.status == 400
    assert await _subjects(client) == ["drop", "keep"]  # nothing was deleted


async def test_a_search_at_its_bounds_runs(client: TestClient[Any, Any]) -> None:
    await _seed(client)
    found = await api_json(client, f"{API}/search?query={'+'.join(['body'] * MAX_TERMS)}")
    assert found["messages_count"] == 2
    longest = "subject:keep" + " " * (MAX_QUERY_LENGTH - len("subject:keep"))
    found = await api_json(client, f"{API}/search?query={longest}")
    assert found["messages_count"] == 1
    resp = await client.get("/dev/inbox", params={"q": longest})
    assert resp.status == 200 and 'maxlength="1000"' in await resp.text()


async def test_a_long_search_is_refused_rather_than_cut_short_into_a_wider_delete(
    client: TestClient[Any, Any],
) -> None:
    await _seed(client)
    # Matches nothing as a whole; its first 2 000 characters alone match "drop".
    search = "subject:drop" + " " * 2000 + "subject:nothing-has-this"
    resp = await client.delete(f"{API}/search", params={"query": search})
    assert resp.status == 400
    assert await _subjects(client) == ["drop", "keep"]


@pytest.mark.parametrize(
    "path",
    [
        "messages?limit=1001",
        "messages?limit=-1",
        "messages?start=-1",
        "messages?start=10000000000",
        "search?query=keep&limit=100000",
        "message/latest?wait=nan",
        "message/latest?wait=inf",
        "message/latest?wait=-1",
        "message/latest?wait=301",
        "message/latest/links?wait=1e999",
    ],
)
async def test_numbers_out_of_range_are_400_json(client: TestClient[Any, Any], path: str) -> None:
    resp = await client.get(f"{API}/{path}")
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["Error"]
    assert error.startswith(("limit:", "start:", "wait:")), error


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_id_lists_and_json_bodies_past_their_bounds_are_400_json(
    client: TestClient[Any, Any], method: str
) -> None:
    await _seed(client)
    too_many: dict[str, Any] = {"IDs": [str(n) for n in range(10_001)]}
    if method == "PUT":
        too_many["Read"] = True
    resp = await client.request(method, f"{API}/messages", json=too_many)
    assert resp.status == 400 and "at most 10000" in (await resp.json())["Error"]
    deep = b"[" * 100_000 + b"]" * 100_000  # valid JSON, deeper than the decoder recurses
    resp = await client.request(
        method, f"{API}/messages", data=deep, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400 and "Error" in await resp.json()
    huge = io.BytesIO(b'{"IDs": ["' + b"1" * (2 * 1024 * 1024) + b'"]}')
    resp = await client.request(
        method, f"{API}/messages", data=huge, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413 and "Error" in await resp.json()
    assert await _subjects(client) == ["drop", "keep"]


async def test_the_most_ids_at_once_are_all_applied(client: TestClient[Any, Any]) -> None:
    await _seed(client)
    listing = await api_json(client, f"{API}/messages")
    ids = [m["ID"] for m in listing["messages"]]
    # 10 000 IDs: more than one SQL statement may bind on older SQLite builds.
    padded = [str(n) for n in range(1000, 10_998)] + ids
    resp = await client.put(f"{API}/messages", json={"IDs": padded, "Read": True})
    assert resp.status == 200
    assert (await api_json(client, f"{API}/messages"))["unread"] == 0
    resp = await client.delete(f"{API}/messages", json={"IDs": padded})
    assert resp.status == 200
    assert await _subjects(client) == []


async def test_live_listeners_past_the_limit_get_503_and_lookups_that_do_not_wait_answer(
    client: TestClient[Any, Any],
) -> None:
    never = f"{API}/message/latest?query=to:nobody@example.com"
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    polls = [
        asyncio.create_task(http.get(client.make_url(f"{never}&wait=60")))
        for _ in range(MAX_SUBSCRIBERS)
    ]
    try:
        hub = client.app[ikeys.events]
        await eventually(lambda: _async(hub.subscribers == MAX_SUBSCRIBERS))
        resp = await client.get(f"{never}&wait=1")
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
        assert "Error" in await resp.json()
        assert (await client.get("/dev/inbox/events")).status == 503
        assert (await client.get(never)).status == 404  # no wait, no subscription
    finally:
        for poll in polls:
            poll.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        await http.close()

    await eventually(lambda: _async(hub.subscribers == 0))
    resp = await client.get(f"{never}&wait=0.1")
    assert resp.status == 404


async def _async(value: Any) -> Any:
    return value
