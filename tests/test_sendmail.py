"""``resetd sendmail``: a real subprocess piping mail into a running ``resetd serve``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from resetd.sendmail import UsageError, parse_args
from tests.processes import Server, inbox_serve_config, run_cli

MESSAGE = (
    b"From: Cron Daemon <cron@example.test>\r\n"
    b"To: ops@example.com\r\n"
    b"Cc: Second <second@example.com>\r\n"
    b"Bcc: hidden@example.com\r\n"
    b"Subject: nightly backup\r\n"
    b"\r\n"
    b"Backup done.\r\n"
    b".\r\n"
    b"A line after a lone dot (sendmail -i keeps it).\r\n"
)


@pytest.fixture
async def serving(tmp_path: Path) -> AsyncIterator[Server]:
    server = Server(inbox_serve_config(tmp_path, 0), tmp_path)
    await server.start()
    yield server
    await server.terminate()


async def _latest(server: Server) -> Any:
    async with aiohttp.ClientSession() as http:
        url = f"{server.base_url}/dev/inbox/api/v1/message/latest"
        async with http.get(url) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def test_php_style_sendmail_t_i_delivers_to_header_recipients_without_bcc(
    serving: Server,
) -> None:
    code, _, err = await run_cli(
        "sendmail", "-S", f"127.0.0.1:{serving.smtp_port}", "-t", "-i", "-odi", "-oem",
        stdin=MESSAGE,
    )  # fmt: skip
    assert code == 0, err
    got = await _latest(serving)
    assert got["Subject"] == "nightly backup"
    assert got["Envelope"]["MailFrom"] == "cron@example.test"
    assert sorted(got["Envelope"]["RcptTo"]) == [
        "hidden@example.com", "ops@example.com", "second@example.com",
    ]  # fmt: skip
    async with aiohttp.ClientSession() as http:
        url = f"{serving.base_url}/dev/inbox/api/v1/message/{got['ID']}/headers"
        async with http.get(url) as resp:
            assert "Bcc" not in await resp.json()  # out of the header, kept in the envelope
    assert "A line after a lone dot" in got["Text"]


async def test_sendmail_with_recipients_and_from_reads_the_address_from_config(
    serving: Server,
) -> None:
    # No -S: the address is [dev_inbox] smtp_host:smtp_port of the config given.
    config = serving.config.read_text().replace("smtp_port = 0", f"smtp_port = {serving.smtp_port}")
    other = serving.workdir / "client.toml"
    other.write_text(config)
    code, _, err = await run_cli(
        "sendmail", "--config", str(other), "-oi", "-fbounce@example.test", "-F", "Ignored Name",
        "only@example.com", stdin=MESSAGE,
    )  # fmt: skip
    assert code == 0, err
    got = await _latest(serving)
    assert got["Envelope"] == {"MailFrom": "bounce@example.test", "RcptTo": ["only@example.com"]}


async def test_sendmail_that_cannot_reach_the_inbox_exits_69(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound and not listening: refused
        code, _, err = await run_cli("sendmail", "-S", f"127.0.0.1:{port}", "a@x.test",
                                     stdin=MESSAGE)  # fmt: skip
    assert code == 69 and "cannot reach the dev inbox" in err


async def test_sendmail_usage_errors_exit_64() -> None:
    code, _, err = await run_cli("sendmail", "-bs", stdin=b"")
    assert code == 64 and "-bm" in err
    code, _, err = await run_cli("sendmail", "-S", "nonsense", "a@x.test", stdin=MESSAGE)
    assert code == 64


def test_sendmail_flags_callers_pass_are_accepted() -> None:
    opts = parse_args(["-ti", "-oi", "-odi", "-bm", "-v", "-Fname", "-B", "8BITMIME",
                       "-r", "me@x.test", "--", "-weird@x.test"])  # fmt: skip
    assert opts.headers and opts.sender == "me@x.test"
    assert opts.recipients == ["-weird@x.test"]
    assert parse_args(["--smtp-addr=h:1", "a@x"]).smtp_addr == "h:1"
    with pytest.raises(UsageError):
        parse_args(["-f"])
    with pytest.raises(UsageError):
        parse_args(["-q"])


async def test_sendmail_after_the_global_config_option_reads_that_config(
    serving: Server,
) -> None:
    # `resetd --config X sendmail -t`, the global option first, as every other command takes it.
    config = serving.config.read_text().replace("smtp_port = 0", f"smtp_port = {serving.smtp_port}")
    other = serving.workdir / "global.toml"
    other.write_text(config)
    code, _, err = await run_cli("--config", str(other), "sendmail", "-t", "-i", stdin=MESSAGE)
    assert code == 0, err
    got = await _latest(serving)
    assert "A line after a lone dot" in got["Text"]
