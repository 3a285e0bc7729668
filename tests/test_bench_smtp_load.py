"""Figure 3's lean SMTP client delivers what aiosmtplib would, byte for byte.

The benchmark compares the inbox with a bare aiosmtpd sink through
``bench.smtp_load``; a client that dot-stuffed or ended lines wrongly would
measure some other dialogue, or store other mail. Real SMTP over loopback into
the real app's dev inbox, read back through the API.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bench import smtp_load
from tests.inbox_helpers import api_json, smtp_address

API = "/dev/inbox/api/v1"

MAILS = [
    b"From: a@example.com\nTo: user0@example.com\nSubject: plain\n\nHello\n",
    # Lines that start with dots (one alone would end DATA unstuffed), and a body
    # without a final line break.
    b"From: a@example.com\r\nTo: user1@example.com\r\nSubject: dots\r\n\r\n"
    b".\r\n..two\r\n.leading\r\nlast line without a break",
    b"From: a@example.com\nTo: user2@example.com\nSubject: empty body\n\n",
]


def crlf(raw: bytes) -> bytes:
    """What a client delivers: every line ended by CRLF."""
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


@pytest.mark.parametrize("connections", [1, 2])
async def test_lean_client_delivers_each_mail_as_sent_to_its_recipient(
    client: TestClient[Any, Any], connections: int
) -> None:
    host, port = smtp_address(client.app)
    assert host == "127.0.0.1"
    took = await smtp_load.send_all(port, [smtp_load.prepare(m) for m in MAILS], connections)
    assert took > 0
    listing = await api_json(client, f"{API}/messages?limit=10")
    assert listing["total"] == len(MAILS)
    by_subject = {m["Subject"]: m for m in listing["messages"]}
    for n, (subject, raw) in enumerate(zip(["plain", "dots", "empty body"], MAILS, strict=True)):
        summary = by_subject[subject]
        message = await api_json(client, f"{API}/message/{summary['ID']}")
        assert [a["Address"] for a in message["To"]] == [f"user{n}@example.com"]
        got = await client.get(f"{API}/message/{summary['ID']}/raw")
        assert await got.read() == crlf(raw), subject


async def test_lean_client_stops_on_a_refusal_instead_of_counting_it(
    client: TestClient[Any, Any],
) -> None:
    """A run that measured refusals would be fast and wrong: the client raises."""
    _, port = smtp_address(client.app)
    too_long = b"Subject: x\n\n" + b"y" * 2_000_000 + b"\n"  # a line past the sink's limit
    with pytest.raises(smtp_load.SMTPLoadError, match="message 0"):
        await smtp_load.send_all(port, [smtp_load.prepare(too_long)], 1)
