"""One mail never kills the inbox writer, and SMTP never says 250 for mail it drops.

Real SMTP over loopback into the real app; storage failures are made real
with SQLite triggers on the inbox database (added from a second connection,
as another process could), not with stand-ins. The shutdown test runs
``resetd serve`` as a process and sends SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import smtplib
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiohttp.test_utils import TestClient

from resetd.app import create_app
from resetd.inbox import keys as ikeys
from tests.helpers import ConfigFactory
from tests.inbox_helpers import api_json, make_message, smtp_address
from tests.processes import Server, inbox_serve_config
from tests.relays import free_port

API = "/dev/inbox/api/v1"
LONE_SURROGATE = "=?utf-7?q?+2AA-?="  # UTF-7 for U+D800 alone


def send(client: TestClient[Any, Any], raw: bytes, rcpt: str = "susan@example.com") -> Any:
    """Send ``raw`` with smtplib in a thread; returns the DATA reply (code, text)."""
    host, port = smtp_address(client.app)

    def run() -> tuple[int, bytes]:
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            smtp.ehlo()
            smtp.mail("app@example.test")
            smtp.rcpt(rcpt)
            return smtp.data(raw)

    return asyncio.to_thread(run)


async def stored(client: TestClient[Any, Any]) -> None:
    # Bounded: the writer this file is about may be the thing that hangs.
    await asyncio.wait_for(client.app[ikeys.writer].flush(), 15)


def inbox_db(client: TestClient[Any, Any]) -> sqlite3.Connection:
    path = client.app[ikeys.writer].store.db.path
    return sqlite3.connect(path, isolation_level=None, timeout=5)


def mail(subject: str, **headers: str) -> bytes:
    return make_message(subject, **headers).as_bytes().replace(b"\n", b"\r\n")


async def subjects(client: TestClient[Any, Any]) -> list[str]:
    listing = await api_json(client, f"{API}/messages")
    return [m["Subject"] for m in listing["messages"]]


async def test_lone_surrogates_in_headers_are_stored_and_later_mail_still_is(
    client: TestClient[Any, Any],
) -> None:
    raw = (
        f"From: {LONE_SURROGATE} <app@example.test>\r\nTo: susan@example.com\r\n"
        f"Subject: {LONE_SURROGATE}\r\nX-Note: a {LONE_SURROGATE} b\r\n"
        "Content-Type: text/plain; charset=utf-7\r\n\r\nbody +2AA- text\r\n"
    ).encode()
    assert (await send(client, raw))[0] == 250
    await stored(client)
    assert (await send(client, mail("after the odd one")))[0] == 250
    await stored(client)
    assert await subjects(client) == ["after the odd one", "\ufffd"]
    odd = (await api_json(client, f"{API}/messages"))["messages"][1]["ID"]
    for path in (f"/dev/inbox/{odd}", f"{API}/message/{odd}", f"{API}/message/{odd}/headers"):
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())
    headers = await api_json(client, f"{API}/message/{odd}/headers")
    assert headers["X-Note"] == ["a \ufffd b"]
    full = await api_json(client, f"{API}/message/{odd}")
    assert full["Text"] == "body \ufffd text\r\n"
    assert full["From"] == {"Name": "\ufffd", "Address": "app@example.test"}


async def test_deep_nesting_and_a_parenthesis_storm_are_stored_as_received(
    client: TestClient[Any, Any],
) -> None:
    deep = b"Subject: deep\r\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (n, n)
        for n in range(1000)
    )
    storm = b"Subject: storm\r\nTo: " + b"(" * 600 + b"\r\n\r\nbody\r\n"
    for raw in (deep, storm):
        assert (await send(client, raw))[0] == 250
        await stored(client)
    listing = await api_json(client, f"{API}/messages")
    assert [m["Subject"] for m in listing["messages"]] == ["storm", "deep"]
    deep_id = listing["messages"][1]["ID"]
    full = await api_json(client, f"{API}/message/{deep_id}")
    assert "RecursionError" in full["ParseProblem"]
    page = await (await client.get(f"/dev/inbox/{deep_id}")).text()
    assert "could not be fully parsed" in page and "RecursionError" in page
    raw = await (await client.get(f"{API}/message/{deep_id}/raw")).read()
    assert raw == deep
    for m in listing["messages"]:
        for path in (f"/dev/inbox/{m['ID']}", f"{API}/message/{m['ID']}/links"):
            assert (await client.get(path)).status == 200, path


async def test_a_mail_whose_rows_fail_is_stored_raw_and_the_writer_carries_on(
    client: TestClient[Any, Any],
) -> None:
    with contextlib.closing(inbox_db(client)) as db:
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.subject = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'this row cannot be stored'); END"
        )
    for subject in ("before", "poison", "after"):
        assert (await send(client, mail(subject)))[0] == 250
    await stored(client)
    listing = await api_json(client, f"{API}/messages")
    assert listing["total"] == 3
    by_subject = {m["Subject"]: m for m in listing["messages"]}
    assert set(by_subject) == {"before", "after", ""}
    bare = by_subject[""]["ID"]
    full = await api_json(client, f"{API}/message/{bare}")
    assert "could not be stored" in full["ParseProblem"]
    assert "this row cannot be stored" in full["ParseProblem"]
    raw = await (await client.get(f"{API}/message/{bare}/raw")).read()
    assert b"Subject: poison" in raw
    assert (await client.get(f"/dev/inbox/{bare}")).status == 200


async def test_smtp_says_451_while_nothing_can_be_stored_and_250_once_it_can(
    client: TestClient[Any, Any],
) -> None:
    with contextlib.closing(inbox_db(client)) as db:
        db.execute(
            "CREATE TRIGGER broken BEFORE INSERT ON message_raw "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        # The reply waits for the commit: the first mail is refused too.
        for subject in ("first while failing", "refused while failing"):
            code, text = await send(client, mail(subject))
            assert code == 451, text
        db.execute("DROP TRIGGER broken")
    assert (await send(client, mail("after recovery")))[0] == 250
    assert await subjects(client) == ["after recovery"]


async def test_smtp_says_451_when_the_writer_is_not_running(
    client: TestClient[Any, Any],
) -> None:
    await client.app[ikeys.writer].stop()
    code, text = await send(client, mail("nobody to store it"))
    assert code == 451, text


async def test_mail_the_parser_gives_up_on_is_stored_as_received_with_why(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(dev_inbox={"parse_timeout": 0.5})))
    # The stdlib splits parameters in quadratic time: an opened quote and 100,000
    # semicolons take it minutes.
    value = 'text/plain; a="' + ";" * 100_000
    folded = "\r\n ".join(value[i : i + 900] for i in range(0, len(value), 900))
    raw = f"Subject: slow\r\nContent-Type: {folded}\r\n\r\nthe body\r\n".encode()
    started = time.monotonic()
    assert (await send(client, raw))[0] == 250
    await stored(client)
    assert time.monotonic() - started < 10
    full = await api_json(client, f"{API}/message/latest")
    assert full["Subject"] == "slow"
    assert "took longer than 0.5 s" in full["ParseProblem"]
    assert "the body" in full["Text"]
    # The next mail for the parser process gets a new one.
    cut = b"Subject: next\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\ncut\r\n"
    assert (await send(client, cut))[0] == 250
    await stored(client)
    full = await api_json(client, f"{API}/message/latest")
    assert full["Subject"] == "next"
    assert "CloseBoundaryNotFoundDefect" in full["ParseProblem"]


@pytest.fixture
async def inbox_server(tmp_path: Path) -> Any:
    smtp_port = free_port()
    config = inbox_serve_config(tmp_path, smtp_port)
    server = Server(config, tmp_path)
    try:
        await server.start()
        yield server, smtp_port, tmp_path / "inbox.db"
    finally:
        await server.kill()


async def test_sigterm_ends_serve_in_bounded_time_whatever_the_inbox_queue_holds(
    inbox_server: tuple[Server, int, Path],
) -> None:
    server, port, db_path = inbox_server
    small = mail("filler")
    sent = 0

    async def blast(count: int) -> None:
        nonlocal sent
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
        await client.connect()
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            for _ in range(count):
                await client.sendmail("app@example.test", ["susan@example.com"], small)
                sent += 1

    odd = f"Subject: {LONE_SURROGATE}\r\n\r\nbody\r\n".encode()
    await aiosmtplib.send(
        odd, sender="a@example.test", recipients=["b@example.test"], hostname="127.0.0.1", port=port
    )
    # Storing now hangs: another connection holds the database's write lock.
    lock = sqlite3.connect(db_path, isolation_level=None, timeout=5)
    lock.execute("BEGIN EXCLUSIVE")
    senders = [asyncio.ensure_future(blast(300)) for _ in range(4)]
    try:
        # Each sender's first mail now waits for a commit that cannot happen.
        await asyncio.sleep(1)
        assert sent == 0
        started = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(server.proc.wait(), 40)
        took = time.monotonic() - started
    finally:
        lock.close()
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
    assert code == 0
    assert took < 25, took


async def test_a_message_stored_before_views_were_is_shown_from_its_raw_source(
    client: TestClient[Any, Any],
) -> None:
    html = '<p>Open <a href="http://localhost:8080/reset_password/abc">the link</a></p>'
    assert (await send(client, mail("older", html=html)))[0] == 250
    await stored(client)
    with contextlib.closing(inbox_db(client)) as db:
        db.execute("DELETE FROM message_view")  # as a database from the earlier schema has
    mid = (await api_json(client, f"{API}/messages"))["messages"][0]["ID"]
    full = await api_json(client, f"{API}/message/{mid}")
    assert full["Text"].strip() == "Plain text body" and "the link" in full["HTML"]
    links = await api_json(client, f"{API}/message/{mid}/links")
    assert [link["Text"] for link in links["Links"]] == ["the link"]
    page = await client.get(f"/dev/inbox/{mid}")
    assert page.status == 200 and "Plain text body" in await page.text()
