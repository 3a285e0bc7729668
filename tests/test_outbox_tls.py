"""A relay certificate that does not verify is loud from the first attempt, with
a hint, and ``[mail] ca_file`` trusts a private CA for the relay alone.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.config import ConfigError
from resetd.db import Database
from resetd.outbox.worker import OutboxWorker
from resetd.reset.compose import ComposedMail
from resetd.storage.outbox import OutboxEntry, OutboxStore
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import TEST_SECRET, ConfigFactory, eventually
from .processes import run_cli, write_config
from .relays import Relay, self_signed
from .sqlite_rows import app_db, enqueue_mail

SENDER = "no-reply@example.test"
SELF_SIGNED_HINT = (
    "hint: the relay's certificate is self-signed or from a private CA: set [mail] ca_file "
    "to that CA's certificate (PEM)"
)


@pytest.fixture(params=[False, True], ids=["starttls", "implicit-tls"])
def implicit(request: pytest.FixtureRequest) -> bool:
    flag: bool = request.param
    return flag


@asynccontextmanager
async def outbox(
    make_config: ConfigFactory, tmp_path: Path, relay: Relay, host: str, **mail: Any
) -> AsyncIterator[tuple[OutboxStore, OutboxEntry]]:
    """A worker sending one queued mail to ``relay`` at ``host``; yields the store and
    the mail once it has been tried."""
    db = await Database.open(str(tmp_path / "resetd.db"))
    store = SqliteOutbox(db)
    now = time.time()
    await db.execute(
        "INSERT INTO outbox (kind, sender, recipient, subject, message, created_at,"
        " next_attempt_at) VALUES ('reset', ?, 'a@example.com', 'Hi', ?, ?, ?)",
        (SENDER, b"Subject: Hi\r\n\r\nhello\r\n", now, now),
    )
    tls = {"use_ssl": True} if relay.implicit_tls else {"use_tls": True}
    cfg = make_config(mail={"server": host, "port": relay.port, "retry_base": 0.5, **tls, **mail})
    worker = OutboxWorker(store, cfg.mail, lambda: (host, relay.port))
    await worker.start()
    try:

        async def tried() -> OutboxEntry | None:
            [entry] = await store.list(include_sent=True)
            return entry if entry.last_error or entry.status == "sent" else None

        yield store, await eventually(tried)
    finally:
        await worker.stop()
        await db.close()


async def test_a_self_signed_relay_is_an_error_with_a_hint_from_the_first_attempt(
    make_config: ConfigFactory,
    tmp_path: Path,
    implicit: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="resetd")
    ctx, _ = self_signed(tmp_path)
    relay = Relay(tls_context=ctx, implicit_tls=implicit)
    await relay.start()
    try:
        async with outbox(make_config, tmp_path, relay, "127.0.0.1") as (_, entry):
            assert entry.status == "pending"  # kept for when the settings are fixed
            assert entry.last_error == (
                f"TLS certificate not accepted: self-signed certificate; {SELF_SIGNED_HINT}"
            )
            [first] = [r for r in caplog.records if "attempt=1 " in r.getMessage()]
            assert first.levelno == logging.ERROR
            assert SELF_SIGNED_HINT in first.getMessage()
            assert "\n" not in first.getMessage()

            config = write_config(
                tmp_path / "cli.toml",
                {
                    "server": {"secret_key": TEST_SECRET},
                    "database": {"path": str(tmp_path / "resetd.db")},
                },
            )
            code, out, err = await run_cli("outbox", "--config", str(config))
            assert code == 0, err
            assert f"last error: {entry.last_error}" in out
            relay_line, hint_line = out.splitlines()[1:3]
            assert relay_line.startswith(f"relay 127.0.0.1:{relay.port}: tls_error since ")
            assert relay_line.endswith(": TLS certificate not accepted: self-signed certificate")
            assert hint_line.strip() == SELF_SIGNED_HINT
        assert relay.received == []
    finally:
        await relay.stop()


async def test_ca_file_trusts_the_relays_private_ca_and_only_for_the_relay(
    make_config: ConfigFactory, tmp_path: Path, implicit: bool
) -> None:
    ctx, ca = self_signed(tmp_path)
    relay = Relay(tls_context=ctx, implicit_tls=implicit)
    await relay.start()
    try:
        async with outbox(make_config, tmp_path, relay, "127.0.0.1", ca_file=str(ca)) as (_, entry):
            assert (entry.status, entry.attempts, entry.last_error) == ("sent", 1, None)
        [got] = relay.received
        assert got.encrypted and got.rcpt_tos == ["a@example.com"]
        # The rest of the process still trusts what it trusted before.
        with pytest.raises((aiosmtplib.SMTPException, ssl.SSLCertVerificationError)):
            await aiosmtplib.send(
                b"Subject: x\r\n\r\nx\r\n",
                sender=SENDER,
                recipients=["b@example.com"],
                hostname="127.0.0.1",
                port=relay.port,
                use_tls=implicit,
                start_tls=not implicit,
                timeout=5,
            )
        assert len(relay.received) == 1
    finally:
        await relay.stop()


@pytest.mark.parametrize(
    ("names", "expired", "error", "hint"),
    [
        (
            ("relay.test",),
            False,
            "IP address mismatch, certificate is not valid for '127.0.0.1'",
            "the certificate does not name '127.0.0.1': set [mail] server to a name it carries",
        ),
        (
            ("127.0.0.1",),
            True,
            "certificate has expired",
            "the relay's certificate is outside its validity dates: renew it on the relay",
        ),
    ],
    ids=["another-name", "expired"],
)
async def test_a_certificate_trusted_but_wrong_says_what_is_wrong(
    make_config: ConfigFactory,
    tmp_path: Path,
    names: tuple[str, ...],
    expired: bool,
    error: str,
    hint: str,
) -> None:
    ctx, ca = self_signed(tmp_path, names, expired=expired)
    relay = Relay(tls_context=ctx)
    await relay.start()
    try:
        async with outbox(make_config, tmp_path, relay, "127.0.0.1", ca_file=str(ca)) as (_, entry):
            assert entry.status == "pending"
            assert entry.last_error == f"TLS certificate not accepted: {error}; hint: {hint}"
        assert relay.received == []
    finally:
        await relay.stop()


@pytest.mark.parametrize(
    ("mail", "expected"),
    [
        ({"use_tls": True, "ca_file": "/nonexistent/ca.pem"}, "[mail] ca_file: no such file"),
        ({"use_tls": True, "ca_file": "{junk}"}, "[mail] ca_file: cannot read"),
        ({"ca_file": "{ca}"}, "[mail] ca_file: only used over TLS"),
    ],
)
def test_a_ca_file_that_cannot_be_used_is_a_config_error(
    make_config: ConfigFactory, tmp_path: Path, mail: dict[str, Any], expected: str
) -> None:
    _, ca = self_signed(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    mail = {k: str(v).format(junk=junk, ca=ca) if k == "ca_file" else v for k, v in mail.items()}
    with pytest.raises(ConfigError) as info:
        make_config(mail=mail)
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


async def test_readyz_shows_the_certificate_error_and_its_hint_to_local_clients_only(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path
) -> None:
    ctx, _ = self_signed(tmp_path)
    relay = Relay(tls_context=ctx)
    await relay.start()
    try:
        cfg = make_config(
            dev_inbox={"enabled": False},
            server={"trusted_proxies": ["127.0.0.1"]},
            mail={"port": relay.port, "use_tls": True, "retry_base": 0.5},
        )
        client: TestClient[Any, Any] = await aiohttp_client(create_app(cfg))
        resp = await client.get("/readyz")
        assert resp.status == 200
        assert (await resp.json())["relay"]["state"] == "unknown"  # nothing sent yet

        async with app_db(client.app).transaction() as conn:
            await enqueue_mail(
                conn,
                "reset",
                ComposedMail(SENDER, "a@example.com", "Hi", b"Subject: Hi\r\n\r\nx\r\n"),
            )
        client.app[keys.outbox_worker].wake()

        async def refused() -> dict[str, Any] | None:
            ready: dict[str, Any] = await (await client.get("/readyz")).json()
            return ready if ready["relay"]["state"] != "unknown" else None

        ready = await eventually(refused)
        assert ready["status"] == "degraded"
        assert ready["database"] == "ok"
        relay_status = ready["relay"]
        assert relay_status["state"] == "tls_error"
        assert relay_status["address"] == f"127.0.0.1:{relay.port}"
        assert relay_status["error"] == "TLS certificate not accepted: self-signed certificate"
        assert f"hint: {relay_status['hint']}" == SELF_SIGNED_HINT
        assert relay_status["since"] <= time.time()

        # Through a proxy, for someone elsewhere: the state, not the details.
        remote = await client.get("/readyz", headers={"X-Forwarded-For": "203.0.113.7"})
        shown = (await remote.json())["relay"]
        assert shown["state"] == "tls_error"
        assert not {"address", "error", "hint"} & set(shown)
    finally:
        await relay.stop()
