"""The headers of the mail resetd sends: no value from a users table or the config
adds a header, breaks the MIME structure, or breaks RFC 5322/2047 line limits.

Each mail travels the real path: HTTP request → processor → outbox → SMTP into a
real relay, and is parsed back with Python's strict policy.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest

from resetd.app import create_app
from resetd.config import ConfigError
from resetd.config_load import load_config

from .app_tables import client_over_table
from .helpers import ConfigFactory, add_user, request_reset
from .relays import Received, Relay

STRICT = email.policy.default.clone(raise_on_defect=True)
ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
OUR_HEADERS = {
    "Subject", "From", "To", "Date", "Message-ID", "Auto-Submitted", "MIME-Version",
    "Content-Type",
}  # fmt: skip


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def strict_parse(data: bytes) -> email.message.EmailMessage:
    """The mail parsed with the strict policy; fails on any defect, in the message,
    its parts or any header, on a line over 998 octets, an encoded word over 75
    characters or a header line over 78."""
    for line in data.split(b"\r\n"):
        assert len(line) <= 998, f"line of {len(line)} octets"
    head = header_block(data)
    for line in head.split(b"\r\n"):
        assert len(line.decode("utf-8")) <= 78, f"header line of {len(line)}: {line[:80]!r}"
    for word in ENCODED_WORD.findall(head):
        assert len(word) <= 75, f"encoded word of {len(word)}: {word!r}"
    # Bytes in UTF-8 headers (RFC 6532) are read as text, as an SMTPUTF8 reader does.
    msg = email.message_from_string(data.decode("utf-8"), policy=STRICT)
    assert isinstance(msg, email.message.EmailMessage)
    assert set(msg.keys()) == OUR_HEADERS, msg.keys()
    for part in msg.walk():
        assert not part.defects, part.defects
        for name, value in part.items():
            defects = [d for d in getattr(value, "defects", ()) if not _utf8_local_part(d)]
            assert not defects, (name, defects)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    return msg


def _utf8_local_part(defect: Exception) -> bool:
    # RFC 5322 has no non-ASCII local part; RFC 6532, which such a mail uses, does.
    return type(defect).__name__ == "NonASCIILocalPartDefect"


def display_name(mail: Received) -> str:
    """The To: display name as an RFC 2047 reader decodes it (the stdlib's
    headerregistry keeps the folding white space between encoded words, which
    RFC 2047 §6.2 says to drop, so the raw header is decoded instead)."""
    raw = email.message_from_bytes(mail.data, policy=email.policy.compat32)["To"]
    raw = re.sub(r"\r\n(?=[ \t])", "", raw)  # unfold
    decoded = str(make_header(decode_header(raw)))
    name, _, _ = decoded.rpartition(" <")
    if name.startswith('"') and name.endswith('"'):
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def mail_to(relay: Relay, address: str) -> Received:
    [found] = [r for r in relay.received if r.rcpt_tos == [address]]
    return found


INJECTIONS = [
    ("Eve\r\nX-Injected: yes", "Eve X-Injected: yes"),
    ("Mallory\r\nReply-To: attacker@evil.test", "Mallory Reply-To: attacker@evil.test"),
    (
        "Blank\r\n\r\nYour account is locked, call +1 555",
        "Blank Your account is locked, call +1 555",
    ),
    ("Bare\rCR\nand LF", "Bare CR and LF"),
    ("Esc\x1b[31mred\x07bell\x7f", "Esc [31mred bell"),
    ("Line\u2028separator\x85next", "Line separator next"),
    ("=?utf-8?q?X?=\r\nBcc: eve@evil.test", "=?utf-8?q?X?= Bcc: eve@evil.test"),
]


async def test_line_breaks_in_an_apps_usernames_add_no_header_and_keep_the_mime_structure(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    rows = [(name, f"user{n}@example.com") for n, (name, _) in enumerate(INJECTIONS)]
    client = await client_over_table(aiohttp_client, make_config, relay, tmp_path, rows)
    for _, address in rows:
        assert (await request_reset(client, address)).status == 303
    await relay.wait_for(len(rows))
    for (_, address), (_, shown) in zip(rows, INJECTIONS, strict=True):
        mail = mail_to(relay, address)
        msg = strict_parse(mail.data)
        assert "X-Injected" not in msg and "Reply-To" not in msg and "Bcc" not in msg
        assert display_name(mail) == shown
        assert msg["To"].addresses[0].addr_spec == address
        text = msg.get_body(("plain",))
        assert text is not None
        assert text.get_content().startswith(f"Dear {shown},")


NAMES = [
    "漢" * 48,  # one 204-character encoded word before
    "x" * 1200,  # one unbreakable word: a 1,200-character line before
    "word " * 240,  # long, but plain words: folded between them
    "Zoë Ünïcødé " * 40,
    "Émile 🙂‍↔️ Zoë",  # an emoji sequence: whole characters in every encoded word
    'O"Brien, Jr. (admin) \\ back',  # specials: a quoted string
    "=?utf-8?b?QWRtaW4=?=",  # looks like an encoded word (it reads "Admin")
    "=?utf-8?q?Support_Team?= <support@evil.test>",
    "Support =?iso-8859-1?q?T=E9am?=",
]


@pytest.mark.parametrize("name", NAMES, ids=range(len(NAMES)))
async def test_long_odd_and_encoded_word_like_names_arrive_as_typed_within_the_limits(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path, name: str
) -> None:
    client = await client_over_table(
        aiohttp_client, make_config, relay, tmp_path, [(name, "susan@example.com")]
    )
    assert (await request_reset(client, "susan@example.com")).status == 303
    [mail] = await relay.wait_for(1)
    msg = strict_parse(mail.data)
    assert display_name(mail) == " ".join(name.split())
    assert msg["To"].addresses[0].addr_spec == "susan@example.com"
    if name.startswith("=?"):
        assert b"To: =?utf-8?q?=3D=3Futf-8=3F" in header_block(mail.data)  # encoded as text


async def test_a_non_ascii_sender_name_is_encoded_and_a_line_break_in_it_refused(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    cfg = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port, "sender": "Équipe de réinitialisation <no-reply@example.test>"},
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    await request_reset(client, "susan@example.com")
    [mail] = await relay.wait_for(1)
    msg = strict_parse(mail.data)
    assert header_block(mail.data).isascii()
    assert msg["From"].addresses[0].display_name == "Équipe de réinitialisation"

    toml = tmp_path / "resetd.toml"
    toml.write_text(
        f'[server]\nsecret_key = "{"k" * 32}"\n'
        '[mail]\nsender = "resetd <a@example.test>\\r\\nBcc: eve@evil.test"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(toml, env={})
    assert str(info.value).startswith("[mail] sender: control characters are not allowed")
