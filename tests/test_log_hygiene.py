"""Log lines carry no reset token and no raw control character, whoever logs them.

Outside data reaches the log through many loggers (the inbox writer's line per
mail, aiosmtpd's warnings, an unexpected error's request path, exception
messages); the record factory in resetd/logs.py cleans them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from resetd.app import create_app
from resetd.db import Database
from resetd.logs import install_redaction

from .helpers import TEST_SECRET, eventually
from .processes import Server, run_cli, write_config
from .sqlite_rows import audit_row

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJyZXNldF9wYXNzd29yZCI6MX0.c2lnbmF0dXJlLXZhbHVl"
RAW_CONTROLS = ("\x1b", "\r", "\x07", "\x9b", "\u202e")


@pytest.fixture
async def inbox_server(tmp_path: Path) -> AsyncIterator[Server]:
    config = write_config(
        tmp_path / "resetd.toml",
        {
            "server": {"port": 0, "secret_key": TEST_SECRET},
            "database": {"path": str(tmp_path / "resetd.db")},
            "mail": {"server": "127.0.0.1", "port": 0},
            "dev_inbox": {"enabled": True, "smtp_port": 0, "path": str(tmp_path / "inbox.db")},
            "passwords": {"argon2_memory_cost": 8192, "argon2_time_cost": 1},
        },
    )
    server = Server(config, tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


async def smtp_dialogue(port: int, lines: list[bytes]) -> list[bytes]:
    """Send each line (raw bytes, CRLF added) and collect the reply to each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies: list[bytes] = []
    try:
        await asyncio.wait_for(reader.readline(), 10)  # greeting
        for line in lines:
            writer.write(line + b"\r\n")
            reply = await asyncio.wait_for(reader.readline(), 10)
            while reply[3:4] == b"-":  # multi-line reply (EHLO)
                reply = await asyncio.wait_for(reader.readline(), 10)
            replies.append(reply)
    finally:
        writer.close()
    return replies


async def test_control_characters_from_smtp_envelopes_and_commands_are_escaped_in_the_log(
    inbox_server: Server,
) -> None:
    replies = await smtp_dialogue(
        inbox_server.smtp_port,
        [
            b"EHLO attacker",
            b'MAIL FROM:<"ev\x1b[2Jil"@example.com>',
            b'RCPT TO:<"\x1b]0;title\x07"@example.com>',
            b"DATA",
            b"Subject: hi\x1b[31m\r\nFrom: x@example.com\r\n\r\nbody\r\n.",
            # aiosmtpd's "unrecognised" warning quotes the command it got.
            b"\x1b[2J\rFAKE 12:00:00 INFO everything is fine",
        ],
    )
    assert replies[4].startswith(b"250"), replies
    await eventually(lambda: _logged(inbox_server, "dev inbox: captured #1"))
    await eventually(lambda: _logged(inbox_server, "unrecognised"))
    await inbox_server.terminate()
    log = inbox_server.logs()
    for raw in RAW_CONTROLS:
        assert raw not in log, f"{raw!r} reached the log raw:\n{log}"
    assert '"ev\\x1b[2Jil"@example.com' in log
    assert '"\\x1b]0;title\\x07"@example.com' in log
    assert "\\x1b[2J\\rFAKE" in log


async def _logged(server: Server, text: str) -> bool:
    return text in server.logs()


def test_reset_tokens_are_redacted_from_every_logger_and_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_redaction()
    caplog.set_level(logging.INFO)
    log = logging.getLogger("resetd.anywhere")
    log.error("unhandled error for POST %s", f"/reset_password/{TOKEN}")
    log.info("a bare token: %s", TOKEN)
    try:
        raise ValueError(f"cannot handle https://reset.example.com/reset_password/{TOKEN}?x=1")
    except ValueError:
        log.exception("failed")
    assert caplog.records, "nothing was logged"
    assert TOKEN not in caplog.text
    assert TOKEN.split(".")[2] not in caplog.text
    assert "POST /reset_password/<redacted>" in caplog.text
    assert "/reset_password/<redacted>?x=1" in caplog.text


def test_exception_text_stays_on_one_line_while_the_traceback_keeps_its_layout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_redaction()
    caplog.set_level(logging.INFO)
    log = logging.getLogger("resetd.anywhere")
    try:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise ValueError("header\n12:00:00 INFO forged line\x1b[31m\ud800") from exc
    except ValueError:
        log.exception("while reading %s", "a mail\r\nwith CRLF")
    text = caplog.text
    assert "\x1b" not in text and "\r" not in text and "\ud800" not in text
    assert "\n12:00:00 INFO forged line" not in text
    assert "ValueError: header\\n12:00:00 INFO forged line\\x1b[31m\\ud800" in text
    assert "while reading a mail\\r\\nwith CRLF" in text
    # The traceback's own lines are still lines.
    assert "\nTraceback (most recent call last):\n" in text
    assert "\nThe above exception was the direct cause of the following exception:\n" in text
    assert '\n  File "' in text


async def test_audit_and_outbox_commands_print_outside_text_escaped(tmp_path: Path) -> None:
    db_path = tmp_path / "resetd.db"
    db = await Database.open(str(db_path))
    try:
        async with db.transaction() as conn:
            # Written before user agents were cleaned on the way in, say.
            await audit_row(
                conn, "sign_in", "failed", client_ip="127.0.0.1", user_agent="UA \x9b2J\x1b[2J"
            )
            await conn.execute(
                "INSERT INTO outbox (kind, sender, recipient, subject, message, created_at, "
                "next_attempt_at, status, last_error) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?)",
                (
                    "reset",
                    "a@example.com",
                    "b\x1b[31m@example.com",
                    "s",
                    b"",
                    "failed",
                    "550 \x1b]0;pwned\x07 no",
                ),
            )
    finally:
        await db.close()
    config = write_config(
        tmp_path / "resetd.toml",
        {"server": {"secret_key": TEST_SECRET}, "database": {"path": str(db_path)}},
    )
    code, audit, _ = await run_cli("audit", "--config", str(config))
    assert code == 0
    code, outbox, _ = await run_cli("outbox", "--config", str(config))
    assert code == 0
    for raw in RAW_CONTROLS:
        assert raw not in audit + outbox
    assert "ua=UA \\x9b2J\\x1b[2J" in audit
    assert "to=b\\x1b[31m@example.com" in outbox
    assert "last error: 550 \\x1b]0;pwned\\x07 no" in outbox


MALFORMED = [
    b"GET /login HTTP/1.1\r\nConnection: close\r\n\r\n",  # no Host
    b"GET /login HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    b"GET /login HTTP/1.1\r\nHost: localhost\r\nX-B\x01ad: c\r\nConnection: close\r\n\r\n",
    b"GET /login HTTP/1.1\r\nHost: localhost\r\nBad Name: c\r\nConnection: close\r\n\r\n",
    b"GET /lo\x1bgin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    b"GET /login HTTP/1.1\r\nHost: localhost\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    # A bad method (aiohttp says this one at DEBUG, with its traceback).
    b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\nFOO\r\n\r\n",
]


async def test_malformed_requests_are_one_info_line_each_without_a_traceback(
    aiohttp_client: Any, make_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp logged each of these at ERROR with a full traceback: log flooding
    at will. Now: one INFO line per request, saying what was wrong."""
    client = await aiohttp_client(create_app(make_config(dev_inbox={"enabled": False})))
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    for request in MALFORMED:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert b"HTTP/1.0 400 " in answer or b"HTTP/1.1 400 " in answer, answer[:80]
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(server) == len(MALFORMED), [r.getMessage() for r in server]
    for record in server:
        assert record.levelno in (logging.INFO, logging.DEBUG), record.getMessage()
        assert record.exc_info is None and not record.exc_text
        assert record.getMessage().startswith("Refused a malformed request from 127.0.0.1: ")
        assert "\n" not in record.getMessage() and "\x1b" not in record.getMessage()
    assert "Traceback" not in caplog.text


async def test_a_malformed_request_says_nothing_when_info_is_off(
    aiohttp_client: Any, make_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(create_app(make_config(dev_inbox={"enabled": False})))
    caplog.set_level(logging.WARNING, logger="aiohttp.server")
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(MALFORMED[0])
    await writer.drain()
    assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.0 400 ")
    writer.close()
    assert not [r for r in caplog.records if r.name == "aiohttp.server"]
