"""Releasing a captured mail to real recipients, through a real second SMTP server."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd.app import create_app
from resetd.config import ConfigError
from resetd.inbox.release import for_release, matches
from tests.helpers import ConfigFactory
from tests.inbox_helpers import api_json, make_message, send_smtplib
from tests.relays import Relay

API = "/dev/inbox/api/v1"


async def _client(aiohttp_client: Any, make_config: ConfigFactory, **inbox: Any) -> Any:
    return await aiohttp_client(create_app(make_config(dev_inbox=inbox)))


async def _captured(client: TestClient[Any, Any]) -> str:
    msg = make_message("Your reset link", text="https://example.test/reset/abc", Bcc="hid@x.test")
    msg["Message-ID"] = "<original@example.test>"
    await send_smtplib(client.app, msg, rcpt_tos=["susan@example.com", "hid@x.test"])
    return str((await api_json(client, f"{API}/message/latest"))["ID"])


async def test_release_relays_the_mail_to_allowed_recipients(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    client = await _client(
        aiohttp_client, make_config, release_allowed=["*@example.com"],
        release_host="127.0.0.1", release_port=relay.port,
    )  # fmt: skip
    mid = await _captured(client)
    resp = await client.post(f"{API}/message/{mid}/release", json={"To": ["qa@example.com"]})
    assert resp.status == 200 and await resp.text() == "ok"
    (got,) = relay.received
    assert got.rcpt_tos == ["qa@example.com"]
    assert got.mail_from == "app@example.test"  # the From address, as Mailpit
    out = got.message
    assert out["Subject"] == "Your reset link"
    assert out["Bcc"] is None  # a hidden recipient is not revealed to the new ones
    assert out["Message-ID"] != "<original@example.test>"
    assert len(out.get_all("Date") or []) == 1
    assert "https://example.test/reset/abc" in out.get_content()
    # The inbox did not capture it again.
    assert (await api_json(client, f"{API}/messages"))["total"] == 1


async def test_release_refuses_recipients_outside_release_allowed(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    client = await _client(
        aiohttp_client, make_config, release_allowed=["*@example.com", "boss@corp.test"],
        release_host="127.0.0.1", release_port=relay.port,
    )  # fmt: skip
    mid = await _captured(client)
    for to in (
        ["qa@example.com", "victim@elsewhere.test"],
        ["qa@example.com.evil.test"],
        ["boss@corp.test.evil"],
    ):
        resp = await client.post(f"{API}/message/{mid}/release", json={"To": to})
        assert resp.status == 400, to
        assert "release_allowed" in (await resp.json())["Error"]
    for bad in ({"To": []}, {"To": "qa@example.com"}, {"To": ["not an address"]}, []):
        assert (await client.post(f"{API}/message/{mid}/release", json=bad)).status == 400
    assert relay.received == []
    ok = await client.post(f"{API}/message/{mid}/release", json={"To": ["Boss@Corp.test"]})
    assert ok.status == 200 and len(relay.received) == 1


async def test_release_is_off_by_default(client: TestClient[Any, Any]) -> None:
    mid = await _captured(client)
    resp = await client.post(f"{API}/message/{mid}/release", json={"To": ["qa@example.com"]})
    assert resp.status == 403
    assert "release_allowed" in (await resp.json())["Error"]


async def test_release_never_sends_into_the_inbox_itself(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    # [mail] points at the inbox (the test config does), and no release_host: refused.
    client = await _client(aiohttp_client, make_config, release_allowed=["*@example.com"])
    mid = await _captured(client)
    resp = await client.post(f"{API}/message/{mid}/release", json={"To": ["qa@example.com"]})
    assert resp.status == 409
    # Nor with release_host naming the sink by another name.
    port = _free_port()
    client2 = await _client(
        aiohttp_client, make_config, release_allowed=["*@example.com"], smtp_port=port,
        release_host="localhost", release_port=port,
    )  # fmt: skip
    mid2 = await _captured(client2)
    before = (await api_json(client2, f"{API}/messages"))["total"]
    resp = await client2.post(f"{API}/message/{mid2}/release", json={"To": ["qa@example.com"]})
    assert resp.status == 409
    assert (await api_json(client2, f"{API}/messages"))["total"] == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_release_through_a_relay_that_refuses_is_a_502(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    relay = Relay(script=lambda n: "554 5.7.1 Rejected")
    await relay.start()
    try:
        client = await _client(
            aiohttp_client, make_config, release_allowed=["*@example.com"],
            release_host="127.0.0.1", release_port=relay.port,
        )  # fmt: skip
        mid = await _captured(client)
        resp = await client.post(f"{API}/message/{mid}/release", json={"To": ["qa@example.com"]})
        assert resp.status == 502 and "SMTP error" in (await resp.json())["Error"]
    finally:
        await relay.stop()


def test_allow_patterns_match_whole_addresses_without_backtracking() -> None:
    assert matches("*@example.com", "a@example.com")
    assert matches("*@example.com", "A@EXAMPLE.COM")
    assert not matches("*@example.com", "a@example.com.evil")
    assert not matches("*@example.com", "a@badexample.com")
    assert matches("qa+*@example.org", "qa+1@example.org")
    assert not matches("qa+*@example.org", "qa@example.org")
    assert matches("exact@x.test", "exact@x.test") and not matches("exact@x.test", "xexact@x.test")
    assert matches("a*b*c@x", "abc@x") and not matches("a*b*c@x", "acb@x")
    # A hostile pattern and address: linear scans, so this is instant.
    assert not matches("*a*a*a*a*a*a*a*a*b@x", "a" * 100_000 + "@x")


def test_for_release_drops_bcc_date_and_message_id_folded_or_not() -> None:
    raw = (
        b"From: a@x.test\r\nBcc: hidden@x.test,\r\n more@x.test\r\nDate: old\r\n"
        b"Message-ID: <old@x>\r\nSubject: Hi\r\n\r\nBcc: in the body stays\r\n"
    )
    out = for_release(raw)
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"hidden" not in head and b"more@x.test" not in head and b"<old@x>" not in head
    assert head.count(b"Date: ") == 1 and head.count(b"Message-ID: ") == 1
    assert b"Subject: Hi" in head and body == b"Bcc: in the body stays\r\n"


def test_release_and_webhook_keys_are_checked_at_start(make_config: ConfigFactory) -> None:
    cases = [
        ({"release_allowed": ["example.com"]}, "[dev_inbox] release_allowed"),
        ({"release_allowed": ["a b@example.com"]}, "[dev_inbox] release_allowed"),
        ({"release_port": 0}, "[dev_inbox] release_port"),
        ({"webhook_url": "ftp://hooks.test/"}, "[dev_inbox] webhook_url"),
    ]
    for inbox, said in cases:
        with pytest.raises(ConfigError) as caught:
            make_config(dev_inbox=inbox)
        assert str(caught.value).startswith(said), caught.value


async def test_another_sites_page_cannot_send_or_release(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    client = await _client(
        aiohttp_client, make_config, release_allowed=["*@example.com"],
        release_host="127.0.0.1", release_port=relay.port,
    )  # fmt: skip
    mid = await _captured(client)
    evil = {"Origin": "https://evil.test", "Content-Type": "text/plain"}
    release = await client.post(
        f"{API}/message/{mid}/release", data='{"To": ["qa@example.com"]}', headers=evil
    )
    assert release.status == 403
    send = await client.post(
        f"{API}/send", data='{"From": {"Email": "a@example.test"}}', headers=evil
    )
    assert send.status == 403
    assert relay.received == []
    assert (await api_json(client, f"{API}/messages"))["total"] == 1


async def test_webui_describes_release_as_configured(
    aiohttp_client: Any, make_config: ConfigFactory, client: TestClient[Any, Any], relay: Relay
) -> None:
    off = (await api_json(client, f"{API}/webui"))["MessageRelay"]
    assert off["Enabled"] is False and off["SMTPServer"] == ""
    on_client = await _client(
        aiohttp_client, make_config, release_allowed=["*@example.com", "boss@corp.test"],
        release_host="127.0.0.1", release_port=relay.port,
    )  # fmt: skip
    on = (await api_json(on_client, f"{API}/webui"))["MessageRelay"]
    assert on["Enabled"] is True
    assert on["SMTPServer"] == f"127.0.0.1:{relay.port}"
    assert on["AllowedRecipients"] == "*@example.com,boss@corp.test"
