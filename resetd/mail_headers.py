"""The headers of the mail resetd sends: every outside value cleaned, encoded, folded.

Display names come from a users table (resetd's own, or an application's that
resetd does not control) and the sender from the config; none of them may add a
header, end the header block, or break a line limit. Every value is cleaned of
control characters and of invisible format characters (bidi overrides and
isolates among them, which would make a name read as something else), then
written as plain words when it is short printable ASCII, and otherwise as RFC
2047 encoded words of at most 75 characters, folded onto lines of at most 78
(RFC 5322 §2.1.1). A name that merely looks like an encoded word
(``=?utf-8?b?…?=``) is encoded too, so mail readers show it as typed instead of
decoding it into something else. An address with a non-ASCII local part is
written as UTF-8 (RFC 6532); its mail needs a relay offering SMTPUTF8, which
the outbox asks for when the envelope is not ASCII.

How a display name is split matters to the reader. RFC 2047 §6.2 says the
white space between two adjacent encoded words is dropped when they are
decoded (so a name can be cut anywhere, even mid-word); but Python's address
parser up to at least 3.13 (CPython gh-128110) reads that white space as a
space, showing ``Very Long Co mpany``. So, as the standard library's own folder
does, only the words that need it are encoded: each run of them becomes
encoded words (the spaces inside the run encoded with it), and the plain ASCII
words between runs stay atoms, which every reader takes with the spaces around
them. A run whose encoding fits one encoded word (75 characters: about 15 CJK
characters, 45 bytes) therefore reads back exactly everywhere. A longer run
(48 CJK characters, a 1,200-character word, a long name of non-ASCII words
only) must be several adjacent encoded words, which no encoding can make both
kinds of reader agree on: it is written as RFC 2047 says, which is how mail
readers decode it.

Why not ``email.headerregistry``: on Python 3.11 it decodes a display name that
looks like an encoded word instead of encoding it, writes encoded words of 76
characters, leaves a 1,200-character word on one line, and refuses a non-ASCII
local part; it also costs about 40 µs a header on the hot path of every reset
mail, where the plain-ASCII fast path below costs about 1 µs.
"""

from __future__ import annotations

import base64
import re
import unicodedata

import idna

from .errors import UnsendableAddress

LINE = 78  # RFC 5322's recommended limit; 998 is the hard one
_EW_PAYLOAD = 63  # "=?utf-8?q?" + payload + "?=" stays within RFC 2047's 75
_B_CHUNK = _EW_PAYLOAD // 4 * 3  # bytes per base64 encoded word: 60 characters
_WORD = 60  # a longer unbroken word could not be folded: encode it instead

# C0, DEL, C1 and the Unicode line and paragraph separators: none has a place in
# a header, and CR or LF would start a new header or end the header block.
_CONTROLS = {c: " " for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
# Format characters (category Cf: bidi overrides and isolates U+202A-202E and
# U+2066-2069, zero-width spaces, the BOM, tag characters …) are invisible and
# can make a name read as another; ``resetd user add`` refuses them, an app's
# table may hold them. Zero-width (non-)joiners are kept: emoji sequences and
# several scripts (Persian, the Indic ones) need them to read right.
_JOINERS = frozenset("\u200c\u200d")
# Printable ASCII words that can stand as they are in a phrase (RFC 5322 atext).
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*")
# What RFC 2047 §5(3) lets a "Q" encoded word in a phrase carry literally.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
# Characters an address resetd sends to may not hold (it never quotes a local
# part): they would need quoting, or let it inject SMTP commands or headers.
_ADDRESS_SPECIALS = frozenset('<>()[]\\,;:"@ ')


def clean(value: str) -> str:
    """``value`` with control characters, line breaks and runs of white space
    turned into single spaces, trimmed, format characters but the zero-width
    joiners removed, and lone surrogates (undecodable bytes from outside)
    replaced by U+FFFD: text fit for a header or a mail body."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = "".join("\ufffd" if 0xD800 <= ord(c) < 0xE000 else c for c in value)
        if not value.isprintable():  # every format character is not printable
            value = "".join(c for c in value if c in _JOINERS or unicodedata.category(c) != "Cf")
    return " ".join(value.translate(_CONTROLS).split())


def check_address(address: str) -> str:
    """The address as it goes in the envelope and the ``To:`` header.

    Trimmed; a non-ASCII domain behind an ASCII local part becomes its IDNA
    A-label (``bücher.de`` → ``xn--bcher-kva.de``) so that any relay can take
    it; a non-ASCII local part stays UTF-8 (RFC 6531/6532). Raises
    :class:`UnsendableAddress` for anything resetd cannot safely put in an SMTP
    command or a header: no ``@``, an empty part, white space, control or
    quoting characters, more than 254 bytes.
    """
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or domain.startswith(".") or domain.endswith("."):
        raise UnsendableAddress("not an address of the form local@domain")
    if not address.isprintable() or not _ADDRESS_SPECIALS.isdisjoint(local + domain):
        raise UnsendableAddress("the address holds white space, control or quoting characters")
    if local.isascii() and not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            pass  # left as UTF-8: a relay offering SMTPUTF8 may still take it
        address = f"{local}@{domain}"
    if len(address.encode("utf-8")) > 254:
        raise UnsendableAddress("the address is longer than 254 bytes")
    return address


def address_header(name: str, display_name: str, address: str) -> str:
    """``Name: display name <address>``, folded (CRLF + space), without a final CRLF.

    ``address`` must come from :func:`check_address`; ``display_name`` may be
    anything and is cleaned here."""
    display_name = clean(display_name)
    if not display_name:
        return _fold(name, [address])
    return _fold(name, [*_phrase(display_name, LINE - len(name) - 2), f"<{address}>"])


def unstructured_header(name: str, value: str) -> str:
    """``Name: value`` for free text such as a subject, cleaned, encoded, folded."""
    value = clean(value)
    if _plain(value):
        return _fold(name, value.split(" "))
    return _fold(name, encoded_words(value, LINE - len(name) - 2))


def _plain(text: str) -> bool:
    """Printable ASCII whose every word folds and none reads as an encoded word."""
    return (
        text.isascii()
        and "=?" not in text
        and (len(text) <= _WORD or max(len(w) for w in text.split(" ")) <= _WORD)
    )


def _phrase(text: str, first: int) -> list[str]:
    """A display name as the words of an RFC 5322 phrase: atoms, a quoted string
    (folded at its spaces, which unfold to the same text), or, when it is not
    plain, encoded words for each run of words that need them, with the atoms
    between runs left as they are (see the module docstring). The first encoded
    word is at most ``first`` characters when it starts the phrase."""
    if _plain(text):
        if _ATOMS.fullmatch(text):
            return text.split(" ")
        quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return quoted.split(" ")
    words: list[str] = []
    run: list[str] = []
    for word in text.split(" "):
        if _bare_atom(word):
            if run:
                words += _shortest(" ".join(run), first if not words else 75)
                run = []
            words.append(word)
        else:
            run.append(word)
    if run:
        words += _shortest(" ".join(run), first if not words else 75)
    return words


def _bare_atom(word: str) -> bool:
    """A word that stands as itself beside encoded words: printable ASCII atom
    characters only, short enough for a line of its own, and nothing like an
    encoded word."""
    return (
        word.isascii()
        and len(word) < LINE
        and "=?" not in word
        and _ATOMS.fullmatch(word) is not None
    )


def _shortest(text: str, first: int) -> list[str]:
    """``text`` as the fewer encoded words of "Q" and "B" (on a tie, "Q" for ASCII,
    which stays readable, and "B" otherwise): one word wherever one can do,
    since adjacent encoded words are read differently by different readers."""
    q_words = _q_words(text, max(first, 20) - 12)
    b_words = _b_words(text, max(first, 20) - 12)
    if len(q_words) != len(b_words):
        return min(q_words, b_words, key=len)
    return q_words if text.isascii() else b_words


def encoded_words(text: str, first: int = 75) -> list[str]:
    """``text`` as RFC 2047 encoded words of whole characters, the first at most
    ``first`` characters long (so that it fits on the header's first line) and
    the others at most 75: "Q" for ASCII (it stays readable), "B" otherwise."""
    room = max(first, 20) - 12  # "=?utf-8?q?" … "?="
    if text.isascii():
        return _q_words(text, room)
    return _b_words(text, room)


def _b_words(text: str, room: int) -> list[str]:
    """ "B" encoded words of whole characters, the first with ``room`` characters
    of payload and the others ``_EW_PAYLOAD``."""
    words: list[str] = []
    chunk: list[bytes] = []
    size, most = 0, room // 4 * 3  # base64: 4 characters per 3 bytes
    for char in text:
        data = char.encode("utf-8")
        if size + len(data) > most:
            words.append("=?utf-8?b?" + base64.b64encode(b"".join(chunk)).decode() + "?=")
            chunk, size, most = [], 0, _B_CHUNK
        chunk.append(data)
        size += len(data)
    if chunk:
        words.append("=?utf-8?b?" + base64.b64encode(b"".join(chunk)).decode() + "?=")
    return words


def _q_words(text: str, room: int) -> list[str]:
    """ "Q" encoded words of ``text`` (as UTF-8) of whole characters, the first with
    ``room`` characters of payload and the others ``_EW_PAYLOAD``."""
    words: list[str] = []
    payload: list[str] = []
    size = 0
    for char in text:
        if char == " ":
            piece = "_"
        elif char.isascii() and ord(char) in _Q_SAFE:
            piece = char
        else:
            piece = "".join(f"={byte:02X}" for byte in char.encode("utf-8"))
        if size + len(piece) > room and payload:
            words.append("=?utf-8?q?" + "".join(payload) + "?=")
            payload, size, room = [], 0, _EW_PAYLOAD
        payload.append(piece)
        size += len(piece)
    if payload:
        words.append("=?utf-8?q?" + "".join(payload) + "?=")
    return words


def _fold(name: str, words: list[str]) -> str:
    """``Name:`` and ``words`` separated by single spaces, starting a new line
    (CRLF + space) before a word that would take the line past 78 characters.
    Every word but an address is at most 75 characters, so only a line holding
    a long address can be longer, and never near 998."""
    lines: list[str] = []
    line = name + ":"
    for word in words:
        # Even right after the name: "To:" CRLF SP word is a valid fold.
        if len(line) + 1 + len(word) > LINE:
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines)
