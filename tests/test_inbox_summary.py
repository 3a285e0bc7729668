"""The quick digest at ingest gives exactly what the stdlib parser gives.

Summary, view (bodies, headers, parts) and links compared over the
odd-message corpus, well-formed mail of several shapes and, when the Python
installation ships them, the stdlib's own test_email data files; each also
with CRLF line endings, as SMTP delivers them.
"""

from __future__ import annotations

import dataclasses
import email
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP

from resetd.inbox import quick_mime
from resetd.inbox.capture import SinkHandler, SinkStats
from resetd.inbox.digest import (
    PROCESS_LIMITS,
    Digest,
    full_digest,
    quick_digest,
    stdlib_digest,
)
from resetd.inbox.message_view import body_from_source
from resetd.inbox.sink import SinkSMTP
from tests.inbox_helpers import make_message
from tests.test_inbox_sink import CORPUS

STDLIB_DATA = Path(email.__file__).parent.parent / "test" / "test_email" / "data"


def _well_formed() -> dict[str, bytes]:
    with_attachment = make_message("Invoice", html="<p>Total: <b>12 €</b></p>")
    with_attachment.add_attachment(b"%PDF-1.4 ...", "application", "pdf", filename="inv.pdf")
    inline = make_message("Logo", text=None, html='<img src="cid:logo">')
    inline.add_related(b"\x89PNG...", "image", "png", cid="<logo>")
    named_text = make_message("Notes", text="see attached")
    named_text.add_attachment("line 1\nline 2\n", filename="notes.txt")
    return {
        "plain": make_message("Hi", text="Hello there\n").as_bytes(),
        "alternative": make_message("Reset", text="text part", html="<p>html part</p>").as_bytes(),
        "html only": make_message("HTML", text=None, html="<h1>Only</h1><p>html</p>").as_bytes(),
        "attachment": with_attachment.as_bytes(),
        "inline image": inline.as_bytes(),
        "text attachment": named_text.as_bytes(),
        "base64 utf-8": make_message("Grüße", text="Grüße aus Köln ✉ " * 20).as_bytes(),
        "folded headers": (
            b"Subject: a long\r\n subject line\r\nTo: A <a@example.com>,\r\n\tb@example.com\r\n"
            b'Content-Type: text/plain;\r\n charset="iso-8859-1"\r\n\r\ncaf\xe9\r\n'
        ),
    }


def _samples() -> dict[str, bytes]:
    samples = {**CORPUS, **_well_formed()}
    if STDLIB_DATA.is_dir():
        for path in sorted(STDLIB_DATA.glob("msg_*.txt")):
            samples[path.name] = path.read_bytes()
    for name, raw in list(samples.items()):
        samples[f"{name} (CRLF)"] = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return samples


SAMPLES = _samples()


@pytest.mark.parametrize("name", list(SAMPLES))
def test_quick_digest_equals_the_stdlib_parse(name: str) -> None:
    raw = SAMPLES[name]
    rcpts = ["susan@example.com", "hidden@example.com"]
    assert _shown(raw, full_digest(raw, rcpts)) == _shown(raw, stdlib_digest(raw, rcpts))
    quick = quick_digest(raw, rcpts)
    if quick is not None:
        assert _shown(raw, quick) == _shown(raw, stdlib_digest(raw, rcpts))


def _shown(raw: bytes, digest: Digest) -> dict[str, object]:
    """What a digest shows; a body kept as a span must read back from ``raw`` as its text.

    Only the quick cut knows where a part lies, so the spans themselves are left out.
    """
    view = digest.view
    for text, span in ((view.text, view.text_span), (view.html, view.html_span)):
        if span is not None:
            assert body_from_source(raw[span.start : span.end], span.qp) == text
    shown = dataclasses.asdict(digest)
    del shown["view"]["text_span"], shown["view"]["html_span"]
    return shown


def test_well_formed_mail_takes_the_quick_route_on_the_loop() -> None:
    for name, raw in _well_formed().items():
        assert quick_digest(raw, []) is not None, name
        crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        assert quick_digest(crlf, []) is not None, name


def test_defective_mail_takes_the_stdlib_route_and_keeps_its_problem() -> None:
    raw = CORPUS["unterminated multipart"]
    assert quick_mime.split(raw, PROCESS_LIMITS) is None
    assert quick_digest(raw, []) is None
    assert "CloseBoundaryNotFoundDefect" in full_digest(raw, []).summary.problem


@pytest.mark.parametrize(
    "arg",
    [
        "<a@b>",
        "<user12@example.com> SIZE=4760",
        "<x+tag@example.com>  BODY=8BITMIME SMTPUTF8",
        "<a@b>\t",
        "<a@b> (comment) SIZE=1",
        "<a..b@c>",
        "<a@b.>",
        "<a@[192.0.2.1]>",
        '<"quoted local"@example.com>',
        "<>",
        "< a@b >",
        "<用户@例子.广告>",
        "<" + "x" * 70 + "@example.com>",
    ],
)
async def test_fast_address_parsing_agrees_with_aiosmtpd(arg: str) -> None:
    # async: aiosmtpd's SMTP() takes the running loop; outside one it makes a
    # loop nobody closes, and its ResourceWarning fails a later test.
    sink = SinkSMTP(SinkHandler(None, SinkStats()), connections=set())  # type: ignore[arg-type]
    sink.local_part_limit = 64
    general = SMTP(SinkHandler(None, SinkStats()))  # type: ignore[arg-type]
    general.local_part_limit = 64
    assert sink._getaddr(arg) == general._getaddr(arg)
