"""One queued reset request never holds up the others.

Each test queues an odd or failing request ahead of an ordinary one and proves
the ordinary mail arrives over real SMTP, while the odd one is either mailed
correctly or set aside: recorded as failed with its reason, audited, and listed
by ``resetd outbox``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app

from .app_tables import client_over_table
from .db_rows import db_rows
from .helpers import GOOD_PASSWORD, ConfigFactory, add_user, eventually, request_reset, sign_in
from .processes import database_of, run_cli, write_config
from .relays import Relay
from .test_mail_headers import strict_parse

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL


async def audit_outcomes(client: TestClient[Any, Any], event: str) -> list[str]:
    return [e.outcome for e in await client.app[keys.audit].recent() if e.event == event]


async def set_aside(client: TestClient[Any, Any]) -> list[str]:
    rows = await db_rows(client.app).fetchall(
        "SELECT failure FROM reset_requests WHERE failure IS NOT NULL ORDER BY id"
    )
    return [r[0] for r in rows]


async def outbox_listing(client: TestClient[Any, Any], tmp_path: Path) -> str:
    """``resetd outbox`` as a separate process reading the app's database."""
    config = write_config(
        tmp_path / "cli.toml",
        {
            "server": {"secret_key": "k" * 32},
            "database": database_of(client.app[keys.config]),
        },
    )
    code, out, err = await run_cli("outbox", "--config", str(config))
    assert code == 0, err
    return out


async def test_a_request_for_an_internationalised_address_is_mailed_and_holds_up_nobody(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    relay = Relay(smtputf8=True)
    await relay.start()
    try:
        cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
        client = await aiohttp_client(create_app(cfg))
        await add_user(client.app, "zoë", "zoë@example.com")
        await add_user(client.app, "susan", "susan@example.com")
        await request_reset(client, "Zoë@example.com")
        await request_reset(client, "susan@example.com")
        received = await relay.wait_for(2)
    finally:
        await relay.stop()
    by_rcpt = {r.rcpt_tos[0]: r for r in received}
    assert set(by_rcpt) == {"zoë@example.com", "susan@example.com"}
    zoe = by_rcpt["zoë@example.com"]
    assert any(b"RCPT TO:<zo\xc3\xab@example.com>" in c for c in relay.chunks)
    assert any(b"SMTPUTF8" in c and b"MAIL FROM:" in c for c in relay.chunks)
    msg = strict_parse(zoe.data)
    assert msg["To"].addresses[0].addr_spec == "zoë@example.com"
    assert msg["To"].addresses[0].display_name == "zoë"
    assert await set_aside(client) == []


async def test_without_smtputf8_at_the_relay_only_the_internationalised_mail_waits(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    cfg = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port, "retry_base": 0.1, "backoff_cap": 0.5},
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app, "zoë", "zoë@example.com")
    await add_user(client.app, "susan", "susan@example.com")
    await request_reset(client, "zoë@example.com")
    await request_reset(client, "susan@example.com")
    [mail] = await relay.wait_for(1)
    assert mail.rcpt_tos == ["susan@example.com"]

    async def zoe_error() -> str | None:
        row = await db_rows(client.app).fetchone(
            "SELECT last_error FROM outbox WHERE recipient = 'zoë@example.com'"
        )
        return None if row is None else row[0]

    assert "SMTPUTF8" in await eventually(zoe_error)
    listing = await outbox_listing(client, tmp_path)
    assert "to=zoë@example.com" in listing and "SMTPUTF8" in listing
    assert await set_aside(client) == []


async def test_a_non_ascii_domain_goes_out_as_its_a_label_without_smtputf8(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app, "jürgen", "jurgen@bücher.example")
    await request_reset(client, "jurgen@bücher.example")
    [mail] = await relay.wait_for(1)
    assert mail.rcpt_tos == ["jurgen@xn--bcher-kva.example"]
    msg = strict_parse(mail.data)
    assert msg["To"].addresses[0].addr_spec == "jurgen@xn--bcher-kva.example"
    assert not any(b"SMTPUTF8" in c for c in relay.chunks)


async def test_an_address_no_mail_can_go_to_is_set_aside_and_the_next_request_is_mailed(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    # An app that let a user store this as their address: on its own line in the
    # envelope it would be a second recipient, in a header a second header.
    injected = "eve@example.com\r\nRCPT TO:<victim@example.net>"
    rows = [("eve", injected), ("susan", "susan@example.com")]
    client = await client_over_table(aiohttp_client, make_config, relay, tmp_path, rows)
    await request_reset(client, injected)
    await request_reset(client, "susan@example.com")
    [mail] = await relay.wait_for(1)
    assert mail.rcpt_tos == ["susan@example.com"]
    [failure] = await eventually(lambda: set_aside(client))
    assert failure == "account 1: the address holds white space, control or quoting characters"
    assert "failed unsendable_address" in await audit_outcomes(client, "reset_requested")
    listing = await outbox_listing(client, tmp_path)
    assert "reset requests set aside" in listing
    assert "reason: account 1: the address holds white space" in listing
    await asyncio.sleep(0.3)
    assert len(relay.received) == 1
    assert not any(b"victim" in c for c in relay.chunks)


@pytest.mark.sqlite_only  # a refusal made with a SQLite trigger
async def test_a_request_the_database_refuses_is_set_aside_alone(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(cfg))
    poison = await add_user(client.app, "refused", "refused@example.com")
    await add_user(client.app, "susan", "susan@example.com")
    # A real refusal from SQLite for this one mail's row, as a constraint would.
    conn = sqlite3.connect(cfg.database.path)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON outbox WHEN NEW.recipient = 'refused@example.com'"
        " BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    )
    conn.commit()
    conn.close()
    await request_reset(client, "refused@example.com")
    await request_reset(client, "susan@example.com")
    [mail] = await relay.wait_for(1)
    assert mail.rcpt_tos == ["susan@example.com"]
    [failure] = await eventually(lambda: set_aside(client))
    assert failure == f"account {poison.id}: IntegrityError: refused by a trigger"
    assert "failed error=IntegrityError" in await audit_outcomes(client, "reset_requested")
    assert "refused by a trigger" in await outbox_listing(client, tmp_path)
    ledger = await db_rows(client.app).fetchall("SELECT user_id FROM reset_tokens")
    assert str(poison.id) not in [r[0] for r in ledger]  # no token for the set-aside one


async def test_a_row_that_is_not_utf8_in_an_apps_table_stops_no_reset_and_no_sign_in(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    rows = [("broken", b"zo\xff@example.com"), ("susan", "susan@example.com")]
    client = await client_over_table(aiohttp_client, make_config, relay, tmp_path, rows)
    await request_reset(client, "susan@example.com")
    [mail] = await relay.wait_for(1)
    assert mail.rcpt_tos == ["susan@example.com"]
    assert (await sign_in(client, "susan@example.com", GOOD_PASSWORD)).status == 303
    await request_reset(client, "zo\ufffd@example.com")  # what the bad byte decodes to
    await eventually(lambda: audit_outcomes(client, "reset_requested"))
    await asyncio.sleep(0.3)
    assert len(relay.received) == 1


async def test_a_user_agent_with_bytes_that_are_not_utf8_is_queued_like_any_other(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    page = await client.get("/reset_password_request")
    csrf = (await page.text()).split('name="csrf_token" value="')[1].split('"')[0]
    cookie = "; ".join(f"{c.key}={c.value}" for c in client.session.cookie_jar)
    body = f"csrf_token={csrf}&email=susan%40example.com".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"POST /reset_password_request HTTP/1.1\r\nHost: localhost:8080\r\n"
        b"User-Agent: Mozilla/5.0 \xff\xfe broken\r\n"
        + f"Cookie: {cookie}\r\n".encode()
        + b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 303"), answer[:200]
    [mail] = await relay.wait_for(1)
    assert mail.rcpt_tos == ["susan@example.com"]
    [event] = [e for e in await client.app[keys.audit].recent() if e.event == "reset_requested"]
    assert event.user_agent == "Mozilla/5.0 \ufffd\ufffd broken"
    msg = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "susan@example.com"
