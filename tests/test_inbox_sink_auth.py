"""The SMTP sink where it is not local: AUTH with the inbox's password before
any mail, wrong passwords throttled (shared with HTTP's basic auth), and the
password kept off the network in clear when STARTTLS is on."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from resetd.inbox import tls
from resetd.inbox.capture import SinkHandler, SinkStats
from resetd.inbox.guesses import GuessThrottle
from resetd.inbox.sink import Sink, start_sink
from resetd.inbox.smtp_auth import SinkLogin
from resetd.inbox.writer import Arrival
from tests.helpers import ConfigFactory
from tests.inbox_helpers import make_message

INBOX_PASSWORD = "inbox-password-0123456789"


def test_throttle_windows_end() -> None:
    now = [1000.0]
    throttle = GuessThrottle(per_client=2, overall=3, window=60, clock=lambda: now[0])
    throttle.failed("a")
    assert throttle.retry_after("a") is None
    now[0] = 1040.0
    throttle.failed("a")
    assert throttle.retry_after("a") == 20  # 60 s after its first failure
    assert throttle.retry_after("b") is None
    throttle.failed("b")
    assert throttle.retry_after("c") == 20  # three in all: everyone waits
    now[0] = 1060.5
    assert throttle.retry_after("a") is None and throttle.retry_after("c") is None


def test_a_non_loopback_smtp_host_requires_auth_with_the_inbox_password(
    make_config: ConfigFactory,
) -> None:
    throttle = GuessThrottle()
    for host, allow_remote, required in (
        ("0.0.0.0", False, False),  # serve refuses this one
        ("0.0.0.0", True, True),
        ("192.0.2.10", True, True),
        ("::", True, True),
        ("127.0.0.1", True, False),
        ("localhost", True, False),
        ("[::1]", True, False),
    ):
        extra = {"password": INBOX_PASSWORD} if allow_remote else {}
        cfg = make_config(dev_inbox={"smtp_host": host, "allow_remote": allow_remote, **extra})
        login = SinkLogin.for_config(cfg.dev_inbox, throttle)
        assert login.required is required, host
        if required:
            assert login.password == INBOX_PASSWORD.encode()


@pytest.fixture
async def guarded_sink(make_config: ConfigFactory) -> AsyncIterator[tuple[Sink, _Collecting]]:
    """The sink as it runs on a non-loopback smtp_host, bound to loopback here."""
    cfg = make_config(dev_inbox={"allow_remote": True, "password": INBOX_PASSWORD})
    handler = SinkHandler(_Collecting(), SinkStats())  # type: ignore[arg-type]
    sink = await start_sink(cfg.dev_inbox, handler, None, SinkLogin(INBOX_PASSWORD))
    yield sink, handler.writer
    await sink.close()


class _Collecting:
    """Stands in for the inbox writer: keeps what the sink accepted."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def expect(self) -> Arrival:
        return Arrival(None)

    async def submit(self, incoming: Any, arrival: Arrival | None = None) -> None:
        self.received.append(incoming)


def auth_plain(smtp: smtplib.SMTP, password: str) -> int:
    """One AUTH PLAIN attempt (smtplib's login() tries every mechanism in turn)."""
    blob = base64.b64encode(f"\0anyone\0{password}".encode()).decode()
    return smtp.docmd("AUTH", f"PLAIN {blob}")[0]


async def test_the_sink_takes_no_mail_before_auth_with_the_password(guarded_sink: Any) -> None:
    sink, writer = guarded_sink
    host, port = sink.address

    def exchange() -> list[int]:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.ehlo()
            assert smtp.has_extn("auth")
            return [
                smtp.mail("a@example.com")[0],
                smtp.rcpt("b@example.com")[0],
                smtp.docmd("DATA")[0],
                auth_plain(smtp, "not the password"),
                smtp.mail("a@example.com")[0],
            ]

    assert await asyncio.to_thread(exchange) == [530, 530, 530, 535, 530]
    assert writer.received == []
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10, start_tls=False) as smtp:
        await smtp.login("whoever", INBOX_PASSWORD)
        await smtp.send_message(make_message("with the password"))
    assert [m.mail_from for m in writer.received] == ["app@example.test"]


async def test_the_sink_throttles_wrong_passwords(guarded_sink: Any) -> None:
    sink, writer = guarded_sink
    host, port = sink.address

    def guess(password: str) -> int:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.ehlo()
            return auth_plain(smtp, password)

    codes = [await asyncio.to_thread(guess, f"guess-{n}") for n in range(10)]
    assert codes == [535] * 10
    assert await asyncio.to_thread(guess, INBOX_PASSWORD) == 454
    assert writer.received == []


async def test_with_starttls_the_password_waits_for_encryption(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    cfg = make_config(
        dev_inbox={"allow_remote": True, "password": INBOX_PASSWORD, "starttls": True}
    )
    handler = SinkHandler(_Collecting(), SinkStats())  # type: ignore[arg-type]
    context, _ = await tls.server_context(cfg.dev_inbox)
    sink = await start_sink(cfg.dev_inbox, handler, context, SinkLogin(INBOX_PASSWORD))
    host, port = sink.address
    try:

        def exchange() -> tuple[bool, int, bool]:
            with smtplib.SMTP(host, port, timeout=10) as smtp:
                smtp.ehlo()
                before = smtp.has_extn("auth")
                code = smtp.docmd("AUTH", "PLAIN AGFueQBub3Q=")[0]
                smtp.starttls(context=ssl._create_unverified_context())
                smtp.ehlo()
                smtp.login("dev", INBOX_PASSWORD)
                smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\ny\r\n")
                return before, code, smtp.has_extn("auth")

        before, code, after = await asyncio.to_thread(exchange)
        assert (before, code, after) == (False, 538, True)
        assert len(handler.writer.received) == 1
    finally:
        await sink.close()
