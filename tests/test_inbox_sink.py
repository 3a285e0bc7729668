"""The SMTP sink: what real clients send, limits, odd messages, retention, restarts."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.policy import SMTP
from typing import Any

import aiosmtplib
import pytest
from aiohttp.test_utils import TestClient

from resetd.app import create_app
from resetd.config import ConfigError
from resetd.inbox import keys as ikeys
from resetd.inbox import tls
from resetd.inbox.sink import MAX_CONNECTIONS, TOO_MANY_CONNECTIONS
from tests.helpers import ConfigFactory, eventually
from tests.inbox_helpers import api_json, make_message, send_smtplib, smtp_address

API = "/dev/inbox/api/v1"

CORPUS: dict[str, bytes] = {
    "no headers at all": b"just a body line\r\nand another\r\n",
    "unterminated multipart": (
        b"Subject: cut off\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain\r\n\r\nfirst part, no closing boundary\r\n"
    ),
    "multipart without boundary": (
        b"Subject: no boundary\r\nContent-Type: multipart/alternative\r\n\r\nbody?\r\n"
    ),
    "unknown charset": (
        b"Subject: charset\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9 \xff\xfe\r\n"
    ),
    "bad base64": (
        b"Subject: b64\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64@@@=\r\n"
    ),
    "broken encoded words": (
        b"Subject: =?bogus-charset?B?SGVsbG8=?= and =?utf-8?Q?unterminated\r\n"
        b"From: =?utf-8?B?////?= <x@example.com>\r\n\r\nbody\r\n"
    ),
    "raw utf-8 headers": (
        "Subject: Grüße aus Köln ✉\r\nFrom: Jörg <jörg@exämple.de>\r\nTo: 用户@例子.广告\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHallo 👋\r\n"
    ).encode(),
    "garbage addresses and date": (
        b'Subject: addr\r\nTo: <<<@@>>>, "unterminated\r\nCc: ,,,;;\r\n'
        b"From: @\r\nDate: yesterday-ish\r\nReply-To: <>\r\n\r\nbody\r\n"
    ),
    "broken quoted-printable": (
        b"Subject: qp\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nbad =ZZ sequence =\r\n=E9t=\r\n"
    ),
    "nested message and bare LF": (
        b"Subject: nested\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n"
        b"--b1\nContent-Type: text/plain\n\nouter\n--b1\nContent-Type: message/rfc822\n\n"
        b"Subject: inner\nFrom: a@b.c\n\ninner body\n--b1--\n"
    ),
    "html only with tricks": (
        b"Subject: html\r\nContent-Type: text/html\r\n\r\n"
        b"<html><body onload=alert(1)><svg><script>alert(2)</script></svg>"
        b'<a href="http://x.test/a">a<a href="javascript:alert(3)">b</a><iframe src=//evil>'
        b"<style>body{background:url(http://evil.test/x)}</style>\r\n"
    ),
    "attachment without filename, odd disposition": (
        b"Subject: att\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;;;\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--z\r\n"
        b"Content-Type: image/svg+xml\r\nContent-ID: <svg1>\r\n\r\n<svg onload=alert(1)/>\r\n"
        b"--z--\r\n"
    ),
}


async def _send_raw(
    client: TestClient[Any, Any], raw: bytes, rcpt: str = "susan@example.com"
) -> None:
    host, port = smtp_address(client.app)

    def send() -> None:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.sendmail("sender@example.com", [rcpt], raw, mail_options=["SMTPUTF8"])

    await asyncio.to_thread(send)
    await client.app[ikeys.writer].flush()


async def _subjects(client: TestClient[Any, Any]) -> list[str]:
    """Subjects in the inbox, newest first."""
    listing = await api_json(client, f"{API}/messages")
    return [m["Subject"] for m in listing["messages"]]


@pytest.mark.parametrize("name", list(CORPUS))
async def test_odd_message_is_stored_and_every_view_answers(
    client: TestClient[Any, Any], name: str
) -> None:
    await _send_raw(client, CORPUS[name])
    listing = await api_json(client, f"{API}/messages")
    assert listing["total"] == 1, name
    mid = listing["messages"][0]["ID"]
    for path in (
        "/dev/inbox",
        f"/dev/inbox/{mid}",
        f"/dev/inbox/{mid}/download",
        f"{API}/message/{mid}",
        f"{API}/message/{mid}/headers",
        f"{API}/message/{mid}/raw",
        f"{API}/message/{mid}/links",
        f"{API}/search?query=body",
    ):
        resp = await client.get(path)
        assert resp.status == 200, (name, path, await resp.text())
    full = await api_json(client, f"{API}/message/{mid}")
    for part in full["Inline"] + full["Attachments"]:
        resp = await client.get(f"{API}/message/{mid}/part/{part['PartID']}")
        assert resp.status == 200, (name, part)
    raw = await (await client.get(f"{API}/message/{mid}/raw")).read()
    assert raw.replace(b"\r\n", b"\n").rstrip() == CORPUS[name].replace(b"\r\n", b"\n").rstrip()


async def test_malformed_mime_is_shown_with_its_parse_problem(
    client: TestClient[Any, Any],
) -> None:
    await _send_raw(client, CORPUS["unterminated multipart"])
    full = await api_json(client, f"{API}/message/latest")
    assert "CloseBoundaryNotFoundDefect" in full["ParseProblem"]
    page = await (await client.get(f"/dev/inbox/{full['ID']}")).text()
    assert "could not be fully parsed" in page and "CloseBoundaryNotFoundDefect" in page


async def test_utf8_headers_are_decoded(client: TestClient[Any, Any]) -> None:
    await _send_raw(client, CORPUS["raw utf-8 headers"], rcpt="用户@例子.广告")
    (item,) = (await api_json(client, f"{API}/messages"))["messages"]
    assert item["Subject"] == "Grüße aus Köln ✉"
    assert item["From"] == {"Name": "Jörg", "Address": "jörg@exämple.de"}
    assert item["To"] == [{"Name": "", "Address": "用户@例子.广告"}]
    data = await api_json(client, f"{API}/search?query=to:用户@例子.广告")
    assert data["messages_count"] == 1


async def test_many_recipients_and_8bitmime_with_aiosmtplib(client: TestClient[Any, Any]) -> None:
    rcpts = [f"user{n}@example.com" for n in range(60)]
    msg = make_message("Crowd", to=", ".join(rcpts[:3]), text="Größe: 8 bit ✓")
    host, port = smtp_address(client.app)
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10) as smtp:
        assert smtp.supports_extension("8BITMIME") and smtp.supports_extension("SMTPUTF8")
        await smtp.send_message(msg, recipients=rcpts)
    await client.app[ikeys.writer].flush()
    full = await api_json(client, f"{API}/message/latest")
    assert len(full["Envelope"]["RcptTo"]) == 60 and len(full["Bcc"]) == 57
    assert "Größe" in full["Text"]


async def test_recipients_past_the_cap_get_452_and_the_rest_go_in_another_transaction(
    client: TestClient[Any, Any],
) -> None:
    # 100 000 envelope recipients once made a 7 MB list page; the default cap
    # keeps the 1 000 that RFC 5321 lets a server limit to (it requires 100).
    rcpts = [f"user{n}@example.com" for n in range(1005)]
    host, port = smtp_address(client.app)
    raw = make_message("Crowd", to="list@example.com").as_bytes()

    def send_in_two_transactions() -> tuple[dict[str, tuple[int, bytes]], dict[str, Any]]:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            refused = smtp.sendmail("app@example.test", rcpts, raw)
            # What a client does with a 452 (RFC 5321 §4.5.3.1.10): the rest, again.
            again = smtp.sendmail("app@example.test", sorted(refused), raw)
            return refused, again

    refused, again = await asyncio.to_thread(send_in_two_transactions)
    assert sorted(refused) == sorted(rcpts[1000:]) and again == {}
    assert set(refused.values()) == {(452, b"4.5.3 Too many recipients")}
    await client.app[ikeys.writer].flush()
    listing = await api_json(client, f"{API}/messages")
    ids = [m["ID"] for m in listing["messages"]]
    envelopes = [(await api_json(client, f"{API}/message/{i}"))["Envelope"] for i in ids]
    assert sorted(len(e["RcptTo"]) for e in envelopes) == [5, 1000]
    assert sorted(r for e in envelopes for r in e["RcptTo"]) == sorted(rcpts)


async def test_the_recipient_cap_is_configurable_and_counts_per_transaction(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(dev_inbox={"max_recipients": 100})))
    host, port = smtp_address(client.app)

    def exchange() -> list[int]:
        codes = []
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.ehlo()
            for _ in range(2):  # RSET starts a new transaction with a new count
                smtp.mail("a@example.com")
                codes += [smtp.rcpt(f"r{n}@example.com")[0] for n in range(101)]
                smtp.rset()
        return codes

    codes = await asyncio.to_thread(exchange)
    assert codes == ([250] * 100 + [452]) * 2


def test_a_recipient_cap_below_rfc_5321s_minimum_is_refused(make_config: ConfigFactory) -> None:
    expected = r"^\[dev_inbox\] max_recipients: expected >= 100, got 99"
    with pytest.raises(ConfigError, match=expected):
        make_config(dev_inbox={"max_recipients": 99})


async def test_connections_past_the_limit_get_421_and_the_next_one_is_served(
    client: TestClient[Any, Any],
) -> None:
    host, port = smtp_address(client.app)
    held = [await asyncio.open_connection(host, port) for _ in range(MAX_CONNECTIONS)]
    try:
        for reader, _ in held:
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220 ")
        reader, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(reader.read(), 10) == (TOO_MANY_CONNECTIONS + "\r\n").encode()
        writer.close()
        _, first = held.pop()
        first.close()
        await first.wait_closed()

        async def greeted() -> bool:
            reader, writer = await asyncio.open_connection(host, port)
            line = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            await writer.wait_closed()
            return line.startswith(b"220 ")

        # Its place goes to the next client once the server has seen it go.
        await eventually(greeted)
    finally:
        for _, writer in held:
            writer.close()
            await writer.wait_closed()


async def test_any_credentials_are_accepted(client: TestClient[Any, Any]) -> None:
    host, port = smtp_address(client.app)

    def send_with_login() -> None:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.user, smtp.password = "whoever", "wrong-but-fine"
            smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
            smtp.sendmail("a@example.com", ["b@example.com"], make_message("login").as_bytes())

    await asyncio.to_thread(send_with_login)
    await send_smtplib(client.app, make_message("plain"), login=("someone", "anything"))
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10, start_tls=False) as smtp:
        await smtp.ehlo()
        await smtp.auth_plain("x", "y")
        await smtp.send_message(make_message("aiosmtplib plain"))
    await client.app[ikeys.writer].flush()
    assert (await api_json(client, f"{API}/messages"))["total"] == 3


async def test_oversize_message_gets_552_and_the_server_carries_on(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(dev_inbox={"max_message_size": 2048})))
    host, port = smtp_address(client.app)
    big = make_message("big", text=("x" * 70 + "\n") * 60).as_bytes(policy=SMTP)

    def exchange() -> tuple[int, int]:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail("a@example.com")  # no SIZE= announced: refused after DATA
            smtp.rcpt("b@example.com")
            data_code, _ = smtp.data(big)
            ok_code = 0
            smtp.sendmail("a@example.com", ["b@example.com"], make_message("small").as_bytes())
            ok_code = 250
            return data_code, ok_code

    data_code, ok_code = await asyncio.to_thread(exchange)
    assert (data_code, ok_code) == (552, 250)
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # SIZE= announced up front
        await send_smtplib(client.app, big)
    assert refused.value.smtp_code == 552
    await client.app[ikeys.writer].flush()
    info = await api_json(client, f"{API}/info")
    assert info["Messages"] == 1 and info["RuntimeStats"]["SMTPRejected"] == 2


async def test_retention_keeps_the_newest_and_says_so(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(dev_inbox={"max_messages": 3})))
    for n in range(5):
        await send_smtplib(client.app, make_message(f"m{n}"))
    assert await _subjects(client) == ["m4", "m3", "m2"]
    page = await (await client.get("/dev/inbox")).text()
    assert "keeping the newest 3; 2 pruned" in page


async def test_retention_counts_messages_not_ids_after_deletes(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(dev_inbox={"max_messages": 3})))
    for n in range(3):
        await send_smtplib(client.app, make_message(f"m{n}"))
    listing = await api_json(client, f"{API}/messages")
    middle = listing["messages"][1]["ID"]
    resp = await client.delete(f"{API}/messages", json={"IDs": [middle]})
    assert resp.status == 200
    # Two messages over a span of three IDs: the next one fits without pruning.
    await send_smtplib(client.app, make_message("m3"))
    assert await _subjects(client) == ["m3", "m2", "m0"]
    await send_smtplib(client.app, make_message("m4"))
    assert await _subjects(client) == ["m4", "m3", "m2"]


async def test_messages_survive_a_restart(aiohttp_client: Any, make_config: ConfigFactory) -> None:
    config = make_config()
    first = await aiohttp_client(create_app(config))
    await send_smtplib(first.app, make_message("Before restart"))
    await first.close()
    second = await aiohttp_client(create_app(config))
    assert await _subjects(second) == ["Before restart"]
    await send_smtplib(second.app, make_message("After restart"))
    ids = [m["ID"] for m in (await api_json(second, f"{API}/messages"))["messages"]]
    assert len(set(ids)) == 2


async def test_starttls_is_not_offered_by_default(client: TestClient[Any, Any]) -> None:
    host, port = smtp_address(client.app)
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10, start_tls=False) as smtp:
        await smtp.ehlo()
        assert not smtp.supports_extension("STARTTLS")


async def test_starttls_with_a_certificate_made_on_first_start(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    config = make_config(dev_inbox={"starttls": True})
    client = await aiohttp_client(create_app(config))
    cert, key = tls.cert_paths(config.dev_inbox.path)
    assert cert.exists() and key.stat().st_mode & 0o077 == 0
    host, port = smtp_address(client.app)
    async with aiosmtplib.SMTP(
        hostname=host, port=port, timeout=10, start_tls=True, validate_certs=False
    ) as smtp:
        assert smtp.is_connected and smtp.get_transport_info("sslcontext") is not None
        await smtp.send_message(make_message("Over aiosmtplib TLS"))

    def send_stdlib() -> str:
        context = ssl.create_default_context(cafile=str(cert))  # the saved cert verifies
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.starttls(context=context)
            cipher = smtp.sock.cipher()  # type: ignore[union-attr]
            smtp.send_message(make_message("Over smtplib TLS"))
        return str(cipher[1])

    assert (await asyncio.to_thread(send_stdlib)).startswith("TLS")
    await send_smtplib(client.app, make_message("In clear"))  # TLS is offered, not required
    subjects = await _subjects(client)
    assert subjects == ["In clear", "Over smtplib TLS", "Over aiosmtplib TLS"]
    first = cert.read_bytes()
    await client.close()
    again = await aiohttp_client(create_app(config))  # a restart reuses the certificate
    assert smtp_address(again.app) and cert.read_bytes() == first


@pytest.mark.parametrize("section", ["database", "dev_inbox"])
def test_an_in_memory_database_is_refused_with_the_key_named(
    make_config: ConfigFactory, section: str
) -> None:
    # Each database is opened from two connections; ":memory:" would be two databases.
    with pytest.raises(ConfigError, match=rf"^\[{section}\] path: expected a file, got ':memory:'"):
        make_config(**{section: {"path": ":memory:"}})
