"""Address-list headers (From, To, Cc, Reply-To) read in one linear pass.

The stdlib's ``getaddresses`` recurses into every nested comment (600 ``(``
raise RecursionError) and the regex that used to shortcut it backtracked on
folded white space (a 4 KB ``From:`` held the event loop for 20 s). Here one
regex with possessive quantifiers cuts the value into tokens and a loop reads
them with a counter for comment depth, so the work is linear in the value's
length whatever it holds.

What comes out follows RFC 5322 as far as it is useful for a dev inbox:
``Name <addr>``, ``addr (Name)``, quoted names, groups (their members are
listed, the group name is not) and obsolete routes (dropped). Anything else
gives its best reading rather than an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .headertext import decode_words

# Names and comments longer than this are cut (a name is shown, never parsed further).
NAME_LIMIT = 1000
_TOKEN = re.compile(
    r"""
      "(?:[^"\\]|\\.)*+"?        # quoted string (unterminated: to the end)
    | \[(?:[^\]\\]|\\.)*+\]?     # domain literal
    | \\.?                       # a quoted pair outside quotes
    | [()<>,;:]                  # what structures the list
    | \s++
    | [^\s"()<>\[\],;:\\]++      # atoms, dots and @ included
    """,
    re.VERBOSE | re.DOTALL,
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# The common shapes, ``a@b`` and ``Name <a@b>``, without the token loop. Every
# quantifier is possessive and the name class takes white space too, so a
# failed match costs one pass (the lazy name and ``\s*`` that stood here
# before backtracked for 20 s on 4 KB of folded white space).
_ADDR = r"[^\s<>,;:\"()@\[\]\\]++@[^\s<>,;:\"()@\[\]\\]++"
_SIMPLE = re.compile(rf"\s*+(?:([^\"<>,;:@()\[\]\\]*+)<({_ADDR})>|({_ADDR}))\s*+")


@dataclass(frozen=True)
class Address:
    name: str
    address: str

    def as_json(self) -> dict[str, str]:
        return {"Name": self.name, "Address": self.address}


class _Reader:
    """The state of one address while its tokens are read."""

    def __init__(self) -> None:
        self.words: list[str] = []  # the phrase outside <>, unquoted (a name)
        self.raw: list[str] = []  # the same tokens as written, no white space (an address)
        self.comment: list[str] = []  # the text of top-level comments
        self.angle: list[str] | None = None  # inside or after <…>
        self.closed = False  # the <…> is closed: later words are ignored

    def word(self, token: str) -> None:
        if len(self.raw) < NAME_LIMIT:
            self.words.append(_unquote(token))
            self.raw.append(token)

    def take(self) -> Address | None:
        """The address read (None for an empty one)."""
        name, comment = _join(self.words), _join(self.comment)
        if self.angle is not None:
            addr = "".join(self.angle).rpartition(":")[2]  # an obsolete route "@a,@b:" goes
            name = name or comment
        elif "@" in name:
            addr, name = "".join(self.raw), comment
        else:
            addr, name = name, comment
        if not addr:
            return None  # a name alone, or a comment alone, is no address
        return Address(decode_words(name[:NAME_LIMIT]), addr[:NAME_LIMIT])


def parse_addresses(value: str, keep: int) -> tuple[list[Address], int]:
    """The first ``keep`` addresses in ``value`` and how many there are in all."""
    simple = _SIMPLE.fullmatch(value)
    if simple is not None:
        name = " ".join((simple.group(1) or "").split())
        address = Address(decode_words(name[:NAME_LIMIT]), simple.group(2) or simple.group(3))
        return [address][:keep], 1
    found: list[Address] = []
    count = 0
    reader = _Reader()
    depth = 0  # comment nesting

    def finish() -> None:
        nonlocal count, reader
        address = reader.take()
        reader = _Reader()
        if address is not None:
            count += 1
            if len(found) < keep:
                found.append(address)

    for match in _TOKEN.finditer(value):
        token = match.group()
        first = token[0]
        if depth:
            depth += 1 if first == "(" else -1 if first == ")" else 0
            if depth and len(reader.comment) < NAME_LIMIT:
                reader.comment.append(token)
        elif first == "(":
            depth = 1
            reader.comment.append(" ")
        elif reader.angle is not None and not reader.closed:
            if first == ">":
                reader.closed = True
            elif not first.isspace() and len(reader.angle) < NAME_LIMIT:
                reader.angle.append(token)
        elif first in ",;":
            finish()
        elif reader.closed:
            continue
        elif first == "<":
            reader.angle = []
        elif first == ":":
            reader.words, reader.raw = [], []  # a group's name: its members follow
        elif first.isspace():
            reader.words.append(" ")
        else:
            reader.word(token)
    finish()
    return found, count


def _unquote(token: str) -> str:
    if token[0] == '"':
        inner = token[1:-1] if len(token) > 1 and token.endswith('"') else token[1:]
        return _QUOTED_PAIR.sub(r"\1", inner) if "\\" in inner else inner
    if token[0] == "\\":
        return token[1:]
    return token


def _join(words: list[str]) -> str:
    return " ".join("".join(words).split())
