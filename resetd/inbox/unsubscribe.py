"""A message's ``List-Unsubscribe`` header checked as Mailpit checks it.

Mailpit's message answer carries ``ListUnsubscribe``: the header, its
links (at most one ``mailto:`` and one ``http(s):`` link, each in ``<>``,
separated by commas), what is wrong with it, and ``List-Unsubscribe-Post``.
The same checks and messages here, written as single passes over a value
cut to HEADER_SCAN characters (Mailpit's are regular expressions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

HEADER_SCAN = 4096
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def list_unsubscribe(headers: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Mailpit's ``ListUnsubscribe`` object from a message's (decoded) headers."""
    value = _first(headers, "list-unsubscribe")
    if not value:
        return {"Header": "", "Links": [], "Errors": "", "HeaderPost": ""}
    links, errors = parse(value)
    return {
        "Header": value,
        "Links": links,
        "Errors": errors,
        "HeaderPost": _first(headers, "list-unsubscribe-post"),
    }


def _first(headers: Sequence[tuple[str, str]], name: str) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value[:HEADER_SCAN].strip()
    return ""


def _strip_comments(value: str) -> str:
    """``value`` without ``( … )`` comments (each up to the next ``)``, as Mailpit's)."""
    out: list[str] = []
    at = 0
    while True:
        start = value.find("(", at)
        end = value.find(")", start + 1) if start >= 0 else -1
        if end < 0:
            out.append(value[at:])
            return "".join(out).strip()
        out.append(value[at:start])
        at = end + 1


def _bracketed(value: str) -> tuple[list[str], list[str]]:
    """The contents of each ``<…>`` and the text between one ``>`` and the next ``<``."""
    inside: list[str] = []
    between: list[str] = []
    at = 0
    while (start := value.find("<", at)) >= 0:
        end = value.find(">", start + 1)
        if end < 0:
            break
        if inside:
            between.append(value[at:start])
        inside.append(value[start + 1 : end])
        at = end + 1
    return inside, between


def parse(header: str) -> tuple[list[str], str]:
    """The links of a List-Unsubscribe value, and its errors ("" when none)."""
    value = _strip_comments(header[:HEADER_SCAN].strip())
    inside, between = _bracketed(value)
    if not inside:
        return [], f'"{value}" no valid unsubscribe links found'
    if not (value.startswith("<") and value.endswith(">")):
        return [], f'"{value}" should be enclosed in <>'
    if len(inside) > 2:
        return [], f'"{value}" should include a maximum of one email and one HTTP link'
    if any(join.strip() != "," for join in between):
        return [], f'"{value}" <> should be split with a comma and optional spaces'
    links: list[str] = []
    errors: list[str] = []
    seen: set[str] = set()
    for link in inside:
        lowered = link.lower()
        if any(ch.isspace() for ch in link):
            errors.append(f'"{link}" should not contain spaces')
        elif lowered.startswith("mailto:") and link[7:8] in _ALNUM:
            if "mailto" in seen:
                errors.append(f'"{link}" should only contain one mailto:')
            else:
                seen.add("mailto")
                links.append(link)
        elif _is_http(lowered) and link[lowered.find("//") + 2 :][:1] in _ALNUM:
            if "http" in seen:
                errors.append(f'"{link}" should only contain one HTTP link')
            else:
                seen.add("http")
                links.append(link)
        else:
            errors.append(f'"{link}" should start with either http(s):// or mailto:')
    return links, ", ".join(errors)


def _is_http(lowered: str) -> bool:
    return lowered.startswith(("http://", "https://"))
