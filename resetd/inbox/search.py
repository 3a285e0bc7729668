"""Mailpit's search syntax → a parameterised SQL condition over ``messages m``.

Terms are ANDed: free words and ``"quoted phrases"`` (subject, people, body
text), ``from:`` ``to:`` ``cc:`` ``bcc:`` ``addressed:`` (any recipient),
``subject:``, ``message-id:``, ``is:read`` / ``is:unread``,
``has:attachment``, ``before:`` / ``after:`` (a date or ISO timestamp) and a
leading ``-`` negates a term. An address term containing ``@`` matches whole
addresses only (case-insensitive), through the ``addresses`` index; without
``@`` it matches part of an address (``to:example.com``). Unknown prefixes
are searched as plain words; values that cannot apply (a bad date) are ignored.

A search is at most ``MAX_QUERY_LENGTH`` characters and ``MAX_TERMS`` terms
(each a condition in one SQL statement: a thousand of them were past what
SQLite parses); a larger one raises :class:`~resetd.errors.SearchTooLarge`
rather than being cut short, which could have widened a DELETE.

This module only builds the condition; store.py runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import SearchTooLarge

MAX_TERMS = 32
MAX_QUERY_LENGTH = 1000
_TOKEN = re.compile(r'(-?)(?:([a-z][a-z-]*):)?("([^"]*)"?|\S+)', re.IGNORECASE)
_ADDRESS_KINDS = {
    "from": ("from",),
    "to": ("to",),
    "cc": ("cc",),
    "bcc": ("bcc",),
    "addressed": ("to", "cc", "bcc"),
}
_KEYS = {*_ADDRESS_KINDS, "subject", "message-id", "is", "has", "before", "after"}


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _timestamp(value: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass
class Query:
    """A parsed search; ``where()`` gives the SQL condition and its parameters."""

    text: str = ""
    conditions: list[tuple[str, list[Any]]] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.conditions

    def where(self) -> tuple[str, list[Any]]:
        if not self.conditions:
            return "1 = 1", []
        params: list[Any] = []
        for _, p in self.conditions:
            params.extend(p)
        return " AND ".join(sql for sql, _ in self.conditions), params


def parse_query(text: str) -> Query:
    """The search ``text`` as a condition; raises SearchTooLarge past the bounds."""
    if len(text) > MAX_QUERY_LENGTH:
        raise SearchTooLarge(
            f"A search may be at most {MAX_QUERY_LENGTH} characters long; this one has {len(text)}."
        )
    terms = list(_TOKEN.finditer(text))
    if len(terms) > MAX_TERMS:
        raise SearchTooLarge(
            f"A search may have at most {MAX_TERMS} terms; this one has {len(terms)}."
        )
    query = Query(text=text.strip())
    for match in terms:
        negate, key, raw, quoted = match.groups()
        value = quoted if quoted is not None else raw
        key = (key or "").lower()
        if key and key not in _KEYS:
            value, key = f"{key}:{value}", ""
        condition = _condition(key, value.strip())
        if condition is None:
            continue
        sql, params = condition
        query.conditions.append((f"NOT ({sql})" if negate else sql, params))
    return query


def _condition(key: str, value: str) -> tuple[str, list[Any]] | None:
    if not value:
        return None
    lowered = value.casefold()
    if key in _ADDRESS_KINDS:
        kinds = _ADDRESS_KINDS[key]
        marks = ", ".join("?" * len(kinds))  # placeholders only; values are parameters
        if "@" in value.strip("@"):
            return (
                f"m.id IN (SELECT message FROM addresses WHERE address = ? AND kind IN ({marks}))",
                [lowered.strip("<>"), *kinds],
            )
        return (
            f"m.id IN (SELECT message FROM addresses WHERE address LIKE ? ESCAPE '\\' "
            f"AND kind IN ({marks}))",
            [_like(lowered), *kinds],
        )
    if key == "subject":
        return "m.subject LIKE ? ESCAPE '\\'", [_like(value)]
    if key == "message-id":
        return "m.message_id = ?", [value.strip("<>")]
    if key == "is":
        if lowered in ("read", "unread"):
            # A literal, not a parameter, so the partial index on unread rows applies.
            return ("m.read = 1" if lowered == "read" else "m.read = 0"), []
        return None
    if key == "has":
        if lowered in ("attachment", "attachments"):
            return "m.attachments > 0", []
        return None
    if key in ("before", "after"):
        ts = _timestamp(value)
        if ts is None:
            return None
        return ("m.created < ?" if key == "before" else "m.created >= ?"), [ts]
    return (
        "EXISTS (SELECT 1 FROM message_text t WHERE t.id = m.id AND t.text LIKE ? ESCAPE '\\')",
        [_like(lowered)],
    )
