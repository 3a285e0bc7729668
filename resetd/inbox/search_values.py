"""The values of search filters: time zones, dates and sizes, each read in one pass.

:mod:`.search` uses them for ``before:`` / ``after:`` (and the API's
``before=`` and ``tz=``) and ``larger:`` / ``smaller:``.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import BadSearch

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2}
_UNITS |= {"g": 1024**3, "gb": 1024**3}


def zone(name: str) -> tzinfo:
    """The time zone ``name`` (the API's ``tz=``); UTC when empty. Raises BadSearch."""
    if not name:
        return UTC
    if len(name) > 100:  # the longest IANA names are about 30 characters
        raise BadSearch("tz: unknown time zone (too long to be one)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadSearch(f"tz: unknown time zone {name[:60]!r}") from None


def timestamp(value: str, tz: tzinfo) -> float | None:
    """``value`` as a UNIX time: ISO 8601 (a date is its midnight), YYYY/MM/DD or
    RFC 2822; without an offset, in ``tz``."""
    text = value.strip().replace("/", "-") if value.count("/") == 2 else value.strip()
    try:
        parsed = datetime.fromisoformat(text.upper())  # 2024-05-01t10:00z too
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed.tzinfo is not None and value.rstrip().endswith("-0000"):
            parsed = parsed.replace(tzinfo=None)  # RFC 2822's "no zone known"
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def size(value: str) -> int | None:
    """``300``, ``20k``, ``1.5M``, ``2 MB`` as bytes (1024-based); None if not a size."""
    text = value.strip().lower()
    end = 0
    while end < len(text) and (text[end].isdigit() or text[end] == "."):
        end += 1
    number, unit = text[:end], text[end:].strip()
    if not number or number.count(".") > 1 or number[0] == "." or unit not in _UNITS:
        return None
    if not number.isascii() or len(number) > 20:
        return None
    return int(float(number) * _UNITS[unit])
