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
import unicodedata
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


def _adjacent_encoded_words_joined() -> bool:
    """Whether this Python's address parser drops the white space between two
    adjacent encoded words in a display name, as RFC 2047 §6.2 says (CPython
    gh-128110; up to at least 3.13 it reads a space there)."""
    msg = email.message_from_string(
        "To: =?utf-8?q?Zo=C3=AB?= =?utf-8?q?_Z?= <z@example.com>\n\n", policy=STRICT
    )
    assert isinstance(msg, email.message.EmailMessage)
    return str(msg["To"].addresses[0].display_name) == "Zoë Z"


ADJACENT_JOINED = _adjacent_encoded_words_joined()


def strict_display_name(mail: Received, header: str = "To") -> str:
    """The display name as Python's strict policy reads it, defects refused."""
    return str(strict_parse(mail.data)[header].addresses[0].display_name)


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
    "张" * 48,
    "漢" * 15,  # as much CJK as one encoded word holds
    "x" * 1200,  # one unbreakable word: a 1,200-character line before
    "word " * 240,  # long, but plain words: folded between them
    "Zoë Ünïcødé " * 40,
    # Long Latin with accents: cut mid-word into encoded words before ("Co mpany").
    "Zoë Ünïcode Support Team of a Very Long Company Name Incorporated Worldwide",
    "Zoë " + "x" * 70 + " Ünï",  # a long ASCII word between encoded ones
    "Ünïcødé-Ltd (Zoë) Support",
    "Émile 🙂‍↔️ Zoë",  # an emoji sequence: whole characters in every encoded word
    'O"Brien, Jr. (admin) \\ back',  # specials: a quoted string
    "=?utf-8?b?QWRtaW4=?=",  # looks like an encoded word (it reads "Admin")
    "=?utf-8?q?Support_Team?= <support@evil.test>",
    "Support =?iso-8859-1?q?T=E9am?=",
    "ab=?cd Zoë",
]
# Names with a run of words that must be encoded and does not fit one encoded
# word (75 characters): they become adjacent encoded words, which RFC 2047
# readers (mail clients, decode_header) join as they should, and Python's
# address parser without the gh-128110 fix reads with a space between them.
# No encoding satisfies both (a space there is either in the text or not).
SEVERAL_ENCODED_WORDS = {"漢" * 48, "张" * 48, "x" * 1200, "Zoë Ünïcødé " * 40}


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
    expected = " ".join(name.split())
    assert display_name(mail) == expected  # as an RFC 2047 reader decodes it
    assert msg["To"].addresses[0].addr_spec == "susan@example.com"
    for word in name.split():  # encoded as text, never passed on for readers to decode
        assert "=?" not in word or word.encode() not in header_block(mail.data)
    if name in SEVERAL_ENCODED_WORDS and not ADJACENT_JOINED:
        assert strict_display_name(mail).replace(" ", "") == expected.replace(" ", "")
        pytest.xfail("this Python reads a space between adjacent encoded words (gh-128110)")
    assert strict_display_name(mail) == expected  # Python's strict policy reads it back


async def test_a_long_accented_sender_name_reads_back_exactly_with_the_strict_policy(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    """The reported case: split mid-word into encoded words, the strict policy
    read it back as "…Very Long Co mpany…"."""
    name = "Zoë Ünïcode Support Team of a Very Long Company Name Incorporated Worldwide"
    cfg = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port, "sender": f"{name} <no-reply@example.com>"},
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    await request_reset(client, "susan@example.com")
    [mail] = await relay.wait_for(1)
    assert strict_display_name(mail, "From") == name
    raw = email.message_from_bytes(mail.data, policy=email.policy.compat32)["From"]
    decoded = str(make_header(decode_header(re.sub(r"\r\n(?=[ \t])", "", raw))))
    assert decoded == f"{name} <no-reply@example.com>"


BIDI_AND_FORMAT = [
    # U+202E turns the rest around on screen: "Alice" + "Bob" shown as "AlicebOB".
    ("Alice\u202eboB", "AliceboB"),
    ("\u2066Mallory\u2069 \u202aadmin\u202c", "Mallory admin"),
    ("Zero\u200bwidth\ufeff soft\u00adhyphen \u2060joiner", "Zerowidth softhyphen joiner"),
    ("tag\U000e0041\U000e0042s \u061cArabic\u200fmark", "tags Arabicmark"),
    ("Émile 🙂\u200d↔\ufe0f Zoë", "Émile 🙂\u200d↔\ufe0f Zoë"),  # joiners kept
]


async def test_bidi_overrides_and_format_characters_are_stripped_from_headers_and_greeting(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    """``user add`` refuses them; an app's users table may hold them, and they
    would make a name read as another in the To: line and the greeting."""
    rows = [(name, f"user{n}@example.com") for n, (name, _) in enumerate(BIDI_AND_FORMAT)]
    client = await client_over_table(aiohttp_client, make_config, relay, tmp_path, rows)
    for _, address in rows:
        assert (await request_reset(client, address)).status == 303
    await relay.wait_for(len(rows))
    for (_, address), (_, shown) in zip(rows, BIDI_AND_FORMAT, strict=True):
        mail = mail_to(relay, address)
        assert strict_display_name(mail) == shown
        assert display_name(mail) == shown
        msg = strict_parse(mail.data)
        for kind in ("plain", "html"):
            part = msg.get_body((kind,))
            assert part is not None
            body = part.get_content()
            assert not [c for c in body if unicodedata.category(c) == "Cf" and c != "\u200d"]
        text = msg.get_body(("plain",))
        assert text is not None and text.get_content().startswith(f"Dear {shown},")


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
