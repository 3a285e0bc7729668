"""Header text made fit to show, in time linear in its length: 8-bit repair,
unfolding, RFC 2047 encoded words, and valid Unicode.

The stdlib's ``decode_header`` scans for encoded words with a lazy regex that
runs to the end of the line from every ``=?`` (quadratic on a header of
unterminated words) and hands back whatever the charset's decoder made, lone
surrogates included (``=?utf-7?q?+2AA-?=``): SQLite refuses those when it
encodes the text. Here every word boundary is found with ``str.find`` from a
position that only moves forward, and every text that leaves is valid Unicode.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re

# More encoded words than this in one header are left as they are: each may
# name a charset, and looking up an unknown codec costs tens of microseconds.
MAX_WORDS = 200
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_ENCODINGS = "qQbB"
# Codecs written in Python whose time grows faster than their input: a charset
# naming one is treated as unknown.
_SLOW_CODECS = frozenset({"punycode", "idna"})


@functools.lru_cache(maxsize=256)
def codec(charset: str) -> str | None:
    """The codec to read ``charset`` with, or None when it is unknown (or unsafe)."""
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError, TypeError):
        return None
    if info.name in _SLOW_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def valid(text: str) -> str:
    """``text`` as valid Unicode: surrogate pairs joined, lone surrogates as U+FFFD.

    Codecs such as UTF-7 and ``unicode_escape`` decode to lone surrogates,
    which UTF-8 (SQLite, the pages, the log) cannot encode.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def fix_8bit(value: str) -> str:
    """Text parsed from bytes keeps raw 8-bit bytes as surrogate escapes; read them as UTF-8."""
    if value.isascii():
        return value
    try:
        return value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return valid(value)


def unfold(value: str) -> str:
    """RFC 5322 unfolding: a line break followed by white space is removed."""
    if "\n" not in value and "\r" not in value:
        return value
    return _FOLD.sub("", value)


def decode_words(value: str, limit: int = 0) -> str:
    """``value`` unfolded with its RFC 2047 encoded words decoded, as valid Unicode.

    ``limit`` (when set) cuts the raw value first, so the work is bounded
    whatever its length. A word that does not decode (unknown charset, bad
    base64) stays as written. White space between two encoded words goes,
    as RFC 2047 says.
    """
    if limit and len(value) > limit:
        value = value[:limit]
    if value.isascii() and "=?" not in value and "\n" not in value and "\r" not in value:
        return value  # nearly every header: nothing to repair, unfold or decode
    value = unfold(fix_8bit(value))
    if "=?" not in value:
        return valid(value)
    out: list[str] = []
    pos = 0  # everything before pos is in out
    scan = 0  # where to look for the next word
    last_word_end = -1  # end of the previous decoded word, if the text since is white space
    words = 0
    while words < MAX_WORDS:
        start = value.find("=?", scan)
        if start < 0:
            break
        mark = value.find("?", start + 2)
        if mark < 0:
            break  # no "?" after here: no word can follow
        if value[mark + 1 : mark + 2] not in _ENCODINGS or value[mark + 2 : mark + 3] != "?":
            scan = start + 2
            continue
        end = value.find("?=", mark + 3)
        if end < 0:
            break  # no terminator after here: no word can follow
        scan = end + 2
        words += 1
        decoded = _decode_word(value[start + 2 : mark], value[mark + 1], value[mark + 3 : end])
        if decoded is None:
            continue
        between = value[pos:start]
        if not (last_word_end == pos and between.strip(" \t") == ""):
            out.append(between)
        out.append(decoded)
        pos = last_word_end = scan
    out.append(value[pos:])
    return valid("".join(out))


def _decode_word(charset: str, encoding: str, text: str) -> str | None:
    """One encoded word's text, or None when it does not decode."""
    charset = charset.partition("*")[0]  # RFC 2231 language suffix
    try:
        if encoding in "qQ":
            data = binascii.a2b_qp(text.encode("ascii", "surrogateescape"), header=True)
        else:
            text = text.rstrip("=")
            data = binascii.a2b_base64(
                (text + "=" * (-len(text) % 4)).encode("ascii", "surrogateescape")
            )
        name = codec(charset or "ascii")
        return None if name is None else data.decode(name, "replace")
    except (binascii.Error, LookupError, ValueError, UnicodeError, TypeError):
        return None
