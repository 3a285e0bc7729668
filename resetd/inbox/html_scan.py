"""HTML bodies read in one linear pass: their text, and their ``<a href>`` links.

A tag runs from ``<`` to the next ``>``; ``<script>`` and ``<style>`` run to
their end tag, and a comment to ``-->``. Every search starts where the last
one stopped, and a search that finds nothing is never repeated: when no ``>``
(or no ``</script``) follows a position, none follows any later one either.
So 128 KB of unclosed tags costs one pass, where a regex tried from every
``<`` (12.7 s) and the stdlib's ``HTMLParser`` rescanned its buffer for each
``<a`` (9.6 s for 60 KB).

This is not a browser's parser: it finds what a reader of the mail would
call its text and its links, and gives up on nothing.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Iterator
from typing import NamedTuple

_RAW_TEXT = ("script", "style")
_END_TAG = {name: re.compile(rf"</{name}[\s/]*+>", re.IGNORECASE) for name in _RAW_TEXT}
_NAME = re.compile(r"/?+([A-Za-z][^\s/>]*+)")
# What anchors() looks at: a comment, <a or </a, <script or <style.
_INTERESTING = re.compile(
    r"<(?:(!--)|(/?)[aA](?=[\s/>])|([sS][cC][rR][iI][pP][tT]|[sS][tT][yY][lL][eE])(?=[\s/>]))"
)
_WS = re.compile(r"\s+")
_ATTR = re.compile(r"""([^\s=/>]++)(?:\s*+=\s*+("[^"]*+"|'[^']*+'|[^\s>]*+))?+""")
ANCHOR_TEXT_LIMIT = 1000


class Tag(NamedTuple):
    name: str  # lower-cased; "" for a comment or declaration
    closing: bool
    inner: str  # between the name and ">"


def _pieces(html: str) -> Iterator[str | Tag]:
    """The text runs and tags of ``html``, in order (a text run is a ``str``)."""
    pos, end = 0, len(html)
    missing: set[str] = set()  # end tags known to be absent after the current position
    no_comment_end = False
    while pos < end:
        lt = html.find("<", pos)
        if lt < 0:
            break
        if html.startswith("<!--", lt) and not no_comment_end:
            close = html.find("-->", lt + 4)
            if close >= 0:
                if lt > pos:
                    yield html[pos:lt]
                yield Tag("", False, "")
                pos = close + 3
                continue
            no_comment_end = True
        gt = html.find(">", lt + 1)
        if gt < 0:
            break  # no ">" after here: the rest is text
        if lt > pos:
            yield html[pos:lt]
        body = html[lt + 1 : gt]
        named = _NAME.match(body)
        name = named.group(1).lower() if named else ""
        closing = body.startswith("/")
        yield Tag(name, closing, body[named.end() :] if named else "")
        pos = gt + 1
        if name in _RAW_TEXT and not closing and name not in missing:
            found = _END_TAG[name].search(html, pos)
            if found is None:
                missing.add(name)
            else:
                pos = found.end()  # the script's text is not the mail's text
    if pos < end:
        yield html[pos:]


def html_to_text(html: str, limit: int) -> str:
    """The text of ``html`` with white space collapsed, at most ``limit`` characters."""
    if "<" not in html:
        text = html[: limit * 2]
    else:
        out: list[str] = []
        size = 0
        for piece in _pieces(html):
            if isinstance(piece, Tag):
                out.append(" ")
                continue
            out.append(piece)
            size += len(piece)
            if size > limit * 2:  # enough to fill ``limit`` after collapsing white space
                break
        text = "".join(out)[: limit * 2]
    return _WS.sub(" ", htmllib.unescape(text)).strip()[:limit].rstrip()


def anchors(html: str, limit: int) -> list[tuple[str, str]]:
    """``(href, text)`` of the first ``limit`` ``<a href>`` in ``html``, in order.

    The href and the text are unescaped (``&amp;`` → ``&``); the text is what
    lies between the tag and ``</a>`` (or the next ``<a``), tags removed,
    white space collapsed. Only ``<a``, ``</a``, comments, ``<script`` and
    ``<style`` are looked at; the searches for them skip everything else in C.
    """
    found: list[tuple[str, str]] = []
    href: str | None = None
    text_at = 0
    missing: set[str] = set()  # as in _pieces
    no_comment_end = False
    pos = 0
    while len(found) < limit:
        match = _INTERESTING.search(html, pos)
        if match is None:
            break
        comment, closing, raw_text = match.groups()
        if comment:
            close_at = -1 if no_comment_end else html.find("-->", match.end())
            no_comment_end = close_at < 0
            pos = match.end() if close_at < 0 else close_at + 3
            continue
        gt = html.find(">", match.end())
        if gt < 0:
            break  # no ">" after here: no tag follows
        pos = gt + 1
        if raw_text:
            name = raw_text.lower()
            if name not in missing:
                end_tag = _END_TAG[name].search(html, pos)
                if end_tag is None:
                    missing.add(name)
                else:
                    pos = end_tag.end()
            continue
        if href:
            found.append((href, _anchor_text(html, text_at, match.start())))
        href = None if closing else _href(html[match.end() : gt])
        text_at = pos
    if href and len(found) < limit:
        found.append((href, _anchor_text(html, text_at, len(html))))
    return found


def _anchor_text(html: str, start: int, end: int) -> str:
    return html_to_text(html[start : min(end, start + ANCHOR_TEXT_LIMIT * 4)], ANCHOR_TEXT_LIMIT)


def _href(inner: str) -> str | None:
    """The last ``href`` attribute's value (as ``HTMLParser``'s dict of attributes gives)."""
    value: str | None = None
    if "href" not in inner.lower():
        return None
    for match in _ATTR.finditer(inner):
        if match.group(1).lower() == "href":
            raw = match.group(2) or ""
            if raw[:1] in ("'", '"'):
                raw = raw[1:-1]
            value = htmllib.unescape(raw).strip()
    return value
