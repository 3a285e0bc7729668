"""Mailpit's search syntax → a parameterised SQL condition over ``messages m``.

Terms are separated by spaces and ANDed; ``"a quoted phrase"`` is one term
(quotes anywhere in a term group it, as in Mailpit's parser). A leading
``-`` or ``!`` negates a term. The filters, as Mailpit has them:

- free words and phrases: subject, people, body text, attachment names;
- ``from:`` ``to:`` ``cc:`` ``bcc:`` ``reply-to:``, and ``addressed:`` (any
  of them). A value containing ``@`` matches whole addresses only
  (case-insensitive), through the ``addresses`` index: ``to:u2@example.com``
  does not match ``xu2@example.com``. Without ``@`` it matches part of an
  address or a name (``to:example.com``, ``from:Susan``);
- ``subject:`` and ``message-id:`` (part of either);
- ``tag:NAME`` (a whole tag, case-insensitive);
- ``is:read`` ``is:unread`` ``is:tagged`` (and ``is:untagged``);
- ``has:attachment(s)`` ``has:inline(s)``;
- ``before:`` / ``after:`` a date or ISO timestamp (UTC unless it says, or
  the API's ``tz=`` names a time zone);
- ``larger:`` / ``smaller:`` a size: bytes, or with a unit ``b`` ``k(b)``
  ``m(b)`` ``g(b)`` (1024-based, as Mailpit's), ``2.5M`` too.

A term that looks like a filter but is not one (``foo:bar``, ``is:blue``,
``larger:lots``, ``before:someday``) raises :class:`~resetd.errors.BadSearch`
with a message saying why, instead of being guessed at: Mailpit searches an
unknown ``foo:bar`` as text and skips a bad date, which silently widens a
``DELETE`` by search. To search text containing a colon, quote it
(``"re:hello"``); ``http://…`` and ``https://…`` are text as they are.

A search is at most ``MAX_QUERY_LENGTH`` characters and ``MAX_TERMS`` terms
(each a condition in one SQL statement: a thousand of them were past what
SQLite parses); a larger one raises :class:`~resetd.errors.SearchTooLarge`
rather than being cut short, which could have widened a DELETE. The scanner
looks at each character once.

This module only builds the condition; store.py runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

from ..errors import BadSearch, SearchTooLarge
from .search_values import size, timestamp, zone

__all__ = ["Query", "parse_query", "received_before", "split_terms", "zone"]

MAX_TERMS = 32
MAX_QUERY_LENGTH = 1000
# Address kinds in the ``addresses`` table, and the summary column holding each
# kind's names and addresses (the first LIST_ADDRESSES of them) as JSON.
_ADDRESS_KINDS = {
    "from": ("from",),
    "to": ("to",),
    "cc": ("cc",),
    "bcc": ("bcc",),
    "reply-to": ("reply-to",),
    "addressed": ("from", "to", "cc", "bcc", "reply-to"),
}
_NAME_COLUMNS = {
    "from": "(m.from_name || ' ' || m.from_addr)",
    "to": "m.to_json",
    "cc": "m.cc_json",
    "bcc": "m.bcc_json",
    "reply-to": "m.reply_to_json",
}
_VALUE_KEYS = {
    *_ADDRESS_KINDS,
    "subject",
    "message-id",
    "tag",
    "before",
    "after",
    "larger",
    "smaller",
}
_IS = {
    "read": ("m.read = 1", False),  # literals, so the partial index on unread rows applies
    "unread": ("m.read = 0", False),
    "tagged": ("EXISTS (SELECT 1 FROM message_tags mt WHERE mt.message = m.id)", False),
    "untagged": ("EXISTS (SELECT 1 FROM message_tags mt WHERE mt.message = m.id)", True),
}
_HAS = {
    "attachment": "m.attachments > 0",
    "attachments": "m.attachments > 0",
    "inline": "m.inline > 0",
    "inlines": "m.inline > 0",
}
_KNOWN = (
    "from: to: cc: bcc: reply-to: addressed: subject: message-id: tag: is: has: "
    "before: after: larger: smaller:"
)


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


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
        return " AND ".join(f"({sql})" for sql, _ in self.conditions), params


def split_terms(text: str) -> list[tuple[str, bool]]:
    """``text`` as (term, quoted) pairs: whitespace separates terms outside double
    quotes, the quotes themselves are dropped (Mailpit's ArgsParser). One pass."""
    terms: list[tuple[str, bool]] = []
    current: list[str] = []
    quoted = in_quotes = False
    for ch in text:
        if ch == '"':
            in_quotes = not in_quotes
            quoted = True
        elif ch.isspace() and not in_quotes:
            if current:
                terms.append(("".join(current), quoted))
            current, quoted = [], False
        else:
            current.append(ch)
    if current:
        terms.append(("".join(current), quoted))
    return [(t.strip(), q) for t, q in terms if t.strip()]


def parse_query(text: str, tz: tzinfo = UTC) -> Query:
    """The search ``text`` as a condition; dates without a zone are in ``tz``.

    Raises SearchTooLarge past the bounds and BadSearch for a filter it does
    not know or a value it cannot use.
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise SearchTooLarge(
            f"A search may be at most {MAX_QUERY_LENGTH} characters long; this one has {len(text)}."
        )
    terms = split_terms(text)
    if len(terms) > MAX_TERMS:
        raise SearchTooLarge(
            f"A search may have at most {MAX_TERMS} terms; this one has {len(terms)}."
        )
    query = Query(text=text.strip())
    for term, quoted in terms:
        negate = len(term) > 1 and term[0] in "-!"
        if negate:
            term = term[1:]
        sql, params, flip = _condition(term, quoted, tz)
        if sql:
            query.conditions.append((f"NOT ({sql})" if negate != flip else sql, params))
    return query


def _filter_key(term: str, quoted: bool) -> str:
    """The filter name of ``term`` (lower-cased, before its first colon), or "" for text."""
    colon = term.find(":")
    if colon <= 0 or (quoted and term[:colon].lower() not in (*_VALUE_KEYS, "is", "has")):
        return ""
    key = term[:colon].lower()
    if term.startswith("//", colon + 1):  # http://…, https://…: a URL is text
        return ""
    if not (key.isascii() and key.replace("-", "").isalpha()):
        return ""  # 12:30, ::1 and other text with a colon
    return key


def _condition(term: str, quoted: bool, tz: tzinfo) -> tuple[str, list[Any], bool]:
    """(SQL, parameters, negated already) for one term; SQL "" when it adds nothing."""
    key = _filter_key(term, quoted)
    if not key:
        return _text(term)
    value = term[len(key) + 1 :].strip()
    lowered = value.casefold()
    if key == "is":
        if lowered not in _IS:
            raise BadSearch(f'"{term[:60]}": is: takes read, unread, tagged or untagged.')
        sql, flip = _IS[lowered]
        return sql, [], flip
    if key == "has":
        if lowered not in _HAS:
            raise BadSearch(f'"{term[:60]}": has: takes attachment or inline.')
        return _HAS[lowered], [], False
    if key not in _VALUE_KEYS:
        raise BadSearch(
            f'Unknown search filter "{key[:40]}:". The filters are {_KNOWN} '
            f'To search for the text itself, put it in quotes: "{term[:60]}".'
        )
    if not value:
        return "", [], False  # "to:" alone, as Mailpit: nothing to match
    if key in _ADDRESS_KINDS:
        return _address(key, lowered)
    if key == "subject":
        return "m.subject LIKE ? ESCAPE '\\'", [_like(value)], False
    if key == "message-id":
        return "m.message_id LIKE ? ESCAPE '\\'", [_like(value.strip("<>"))], False
    if key == "tag":
        return (
            "EXISTS (SELECT 1 FROM message_tags mt JOIN tags t ON t.id = mt.tag "
            "WHERE mt.message = m.id AND t.name = ?)",
            [value],
            False,
        )
    if key in ("before", "after"):
        ts = timestamp(value, tz)
        if ts is None:
            raise BadSearch(
                f'"{term[:60]}": {key}: takes a date (2024-05-01), an ISO time '
                "(2024-05-01T13:30:00+02:00) or an RFC 2822 date."
            )
        return ("m.created <= ?" if key == "before" else "m.created >= ?"), [ts], False
    found = size(value)
    if found is None:
        raise BadSearch(f'"{term[:60]}": {key}: takes a size such as 300, 20k, 1.5M or 2MB.')
    return ("m.size > ?" if key == "larger" else "m.size < ?"), [found], False


def received_before(query: Query, value: str, tz: tzinfo = UTC) -> Query:
    """``query`` narrowed to mail received before ``value`` (the API's ``before=``
    parameter, a page boundary as in Mailpit). Raises BadSearch for a bad date."""
    ts = timestamp(value, tz)
    if ts is None:
        raise BadSearch(f"before: expected a date or ISO time, got {value[:60]!r}")
    return Query(query.text, [*query.conditions, ("m.created < ?", [ts])])


def _text(term: str) -> tuple[str, list[Any], bool]:
    return (
        "EXISTS (SELECT 1 FROM message_text t WHERE t.id = m.id AND t.text LIKE ? ESCAPE '\\')",
        [_like(term.casefold())],
        False,
    )


def _address(key: str, lowered: str) -> tuple[str, list[Any], bool]:
    kinds = _ADDRESS_KINDS[key]
    marks = ", ".join("?" * len(kinds))  # placeholders only; values are parameters
    if "@" in lowered.strip("@"):
        return (
            f"m.id IN (SELECT message FROM addresses WHERE address = ? AND kind IN ({marks}))",
            [lowered.strip("<>"), *kinds],
            False,
        )
    pattern = _like(lowered)
    names = " OR ".join(f"{_NAME_COLUMNS[k]} LIKE ? ESCAPE '\\'" for k in kinds)
    return (
        f"m.id IN (SELECT message FROM addresses WHERE address LIKE ? ESCAPE '\\' "
        f"AND kind IN ({marks})) OR {names}",
        [pattern, *kinds, *[pattern] * len(kinds)],
        False,
    )
