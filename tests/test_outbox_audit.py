"""The audit trail records every mail the relay accepted (``mail_sent``) or refused
for good (``mail_failed``), naming the account but never the address, the token
or the link, in the same transaction that marks the outbox row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.storage.audit import AuditEvent
from resetd.users import User

from .helpers import (
    TEST_SECRET,
    ConfigFactory,
    add_user,
    eventually,
    request_reset,
    set_new_password,
    token_in,
)
from .processes import database_of, run_cli, write_config
from .relays import Relay

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL


async def start(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> TestClient[Any, Any]:
    cfg = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port, "retry_base": 0.1, "backoff_cap": 0.5, "timeout": 2.0},
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(cfg))
    return client


async def mail_events(client: TestClient[Any, Any], count: int) -> list[AuditEvent]:
    async def look() -> list[AuditEvent] | None:
        found = [e for e in await client.app[keys.audit].recent() if e.event.startswith("mail_")]
        return found if len(found) >= count else None

    found: list[AuditEvent] = await eventually(look)
    return list(reversed(found))  # oldest first


def assert_nothing_secret(events: list[AuditEvent], *secrets: str) -> None:
    text = " ".join(
        f"{e.event} {e.outcome} {e.user_id} {e.client_ip} {e.user_agent}" for e in events
    )
    for secret in ("@", "reset_password/", *secrets):
        assert secret not in text


async def test_reset_mail_and_password_changed_notice_are_audited_as_sent(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, make_config, relay)
    user: User = await add_user(client.app)
    assert (await request_reset(client, "susan@example.com")).status == 303
    [reset_mail] = await relay.wait_for(1)
    token = token_in(reset_mail)
    [sent] = await mail_events(client, 1)
    [row] = await client.app[keys.outbox_store].list(include_sent=True)
    assert row.status == "sent"
    assert (sent.event, sent.outcome, sent.user_id) == (
        "mail_sent",
        f"reset outbox={row.id}",
        str(user.id),
    )

    assert (await set_new_password(client, token)).status == 303
    await relay.wait_for(2)
    events = await mail_events(client, 2)
    assert [(e.event, e.outcome.split()[0], e.user_id) for e in events] == [
        ("mail_sent", "reset", str(user.id)),
        ("mail_sent", "password_changed", str(user.id)),
    ]
    assert_nothing_secret(events, token, "susan")

    section = database_of(client.app[keys.config])
    config = write_config(
        tmp_path / "cli.toml", {"server": {"secret_key": TEST_SECRET}, "database": section}
    )
    code, out, err = await run_cli("audit", "--config", str(config))
    assert code == 0, err
    lines = [line for line in out.splitlines() if "mail_sent" in line]
    assert len(lines) == 2
    assert all(f"user={user.id}" in line for line in lines)
    assert token not in out


async def test_refused_mail_is_audited_as_failed(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    relay = Relay(envelope=lambda cmd, addr: "550 5.1.1 <susan@example.com> unknown")
    await relay.start()
    try:
        client = await start(aiohttp_client, make_config, relay)
        user = await add_user(client.app)
        await request_reset(client, "susan@example.com")
        [failed] = await mail_events(client, 1)
        [row] = await client.app[keys.outbox_store].list()
        assert row.status == "failed"
        assert (failed.event, failed.outcome, failed.user_id) == (
            "mail_failed",
            f"reset outbox={row.id} rejected",
            str(user.id),
        )
        assert_nothing_secret([failed], "susan")
    finally:
        await relay.stop()
