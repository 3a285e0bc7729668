"""An application's table may hold two spellings of one address or username (the
Flask Mega-Tutorial's unique index is case-sensitive). The account stored
exactly as typed (both trimmed) is the one meant; only a true tie gets nothing,
and the audit trail says why."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd import keys

from .app_tables import client_over_table
from .helpers import GOOD_PASSWORD, ConfigFactory, eventually, request_reset, sign_in
from .relays import Relay

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

ROWS = [("alice_upper", "Alice@example.com"), ("alice_lower", "alice@example.com")]


async def reset_outcomes(client: TestClient[Any, Any], count: int) -> list[str]:
    async def look() -> list[str] | None:
        found = [
            e.outcome for e in await client.app[keys.audit].recent() if e.event == "reset_requested"
        ]
        return list(reversed(found)) if len(found) >= count else None

    outcomes: list[str] = await eventually(look)
    return outcomes


async def test_the_account_stored_exactly_as_typed_gets_the_mail(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    client = await client_over_table(aiohttp_client, make_config, relay, tmp_path, ROWS)
    await request_reset(client, "alice@example.com")
    await request_reset(client, "  Alice@example.com ")
    received = await relay.wait_for(2)
    assert sorted(r.rcpt_tos[0] for r in received) == ["Alice@example.com", "alice@example.com"]
    for mail in received:
        name = mail.message["To"].addresses[0].display_name
        assert name == ("alice_upper" if mail.rcpt_tos == ["Alice@example.com"] else "alice_lower")
    assert await reset_outcomes(client, 2) == ["mail_queued", "mail_queued"]


async def test_a_true_tie_sends_nothing_and_the_audit_trail_says_why(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    client = await client_over_table(aiohttp_client, make_config, relay, tmp_path, ROWS)
    await request_reset(client, "ALICE@example.com")  # neither spelling
    assert await reset_outcomes(client, 1) == ["ambiguous_address"]
    await asyncio.sleep(0.3)
    assert relay.received == []


async def test_two_rows_stored_identically_are_a_tie(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    rows = [("one", "same@example.com"), ("two", " same@example.com")]
    client = await client_over_table(aiohttp_client, make_config, relay, tmp_path, rows)
    await request_reset(client, "same@example.com")
    assert await reset_outcomes(client, 1) == ["ambiguous_address"]
    await asyncio.sleep(0.3)
    assert relay.received == []


async def test_sign_in_by_email_or_username_picks_the_exact_spelling(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    other = "a different password for the other one"
    rows = [
        ("alice_upper", "Alice@example.com", other),
        ("alice_lower", "alice@example.com"),
        ("Susan", "susan1@example.com", other),
        ("susan", "susan2@example.com"),
    ]
    client = await client_over_table(aiohttp_client, make_config, relay, tmp_path, rows)
    for login, password, status in [
        ("alice@example.com", GOOD_PASSWORD, 303),
        (" Alice@example.com", other, 303),
        ("Alice@example.com", GOOD_PASSWORD, 400),
        ("ALICE@example.com", other, 400),  # a tie: nobody
        ("susan", GOOD_PASSWORD, 303),
        ("Susan", other, 303),
        ("SUSAN", other, 400),
    ]:
        client.session.cookie_jar.clear()
        assert (await sign_in(client, login, password)).status == status, (login, password)
