"""Logging that never carries a reset token or a raw control character.

The mailed link's path holds the token, and log lines print request paths (the
access log, an unexpected error's "unhandled error for POST /reset_password/…"),
exception messages and values from outside: SMTP envelopes and commands, headers,
form fields. One record factory, installed once for any runner, cleans every
record of every logger as it is made:

* ``/reset_password/<token>`` and anything shaped like a JWT become
  ``<redacted>``, in the message and in the traceback;
* control characters (C0, DEL, C1 — ESC sequences that drive a terminal, a bare
  CR that hides the start of a line, a LF that forges a new one), Unicode line
  and bidi-override characters and lone surrogates are written as ``\\x1b``,
  ``\\r``, ``\\u202e``…, so one record is one line of what was really received,
  and a handler never fails to encode it. A traceback keeps its own line breaks
  (frames, the "direct cause" separators); its exception text does not.

A record's message is therefore formatted when the record is made (only for
enabled levels, as before), and handlers see it with no arguments left.

aiosqlite's and aiosmtpd's DEBUG lines print statement parameters and mail
lines, links included: they are kept quieter here too. aiohttp logs a request
it cannot parse (no Host, a duplicate Host, a bad character in a header or the
target) at ERROR with a full traceback, once per request: anyone could fill
the log at will. Those become one INFO line saying what was wrong.
"""

from __future__ import annotations

import logging
import re
import traceback
from types import TracebackType
from typing import Any

from aiohttp.http_exceptions import BadHttpMessage

REDACTED = "<redacted>"

# Both linear: a run of a class that excludes the slash ends at the next path's
# start, and base64url words are maximal runs that never overlap. (A pattern
# such as eyJ[\w-]*\.… would rescan the rest of the text from every "eyJ":
# quadratic on "eyJa-eyJa-…".)
_TOKEN_IN_PATH = re.compile(r"/reset_password/[^\s\"'?#/<>]+")
_WORD = re.compile(r"[A-Za-z0-9_.-]+")
# What must not reach a log line or a terminal raw (see the module docstring).
UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

# The separators traceback prints between chained exceptions.
_CHAIN_MESSAGES = {
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
}


def _redact_jwt(match: re.Match[str]) -> str:
    """A word shaped like a JWT (``eyJ`` header, three dot-separated parts) → REDACTED."""
    word = match.group()
    return REDACTED if word.startswith("eyJ") and word.count(".") >= 2 else word


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def clean_text(text: str) -> str:
    """``text`` with reset tokens redacted and unsafe characters escaped."""
    if "/reset_password/" in text:
        text = _TOKEN_IN_PATH.sub("/reset_password/" + REDACTED, text)
    if "eyJ" in text:
        text = _WORD.sub(_redact_jwt, text)
    if UNSAFE_CHARS.search(text):
        text = UNSAFE_CHARS.sub(_escape, text)
    return text


def _clean_chunk(chunk: str) -> str:
    """One piece of ``TracebackException.format()``, cleaned.

    Frames (``File "…", line N`` with their source lines) and the chain
    separators are the traceback's own layout, from resetd's code: their line
    breaks stay. Anything else is exception text, which may quote outside data:
    it stays on one line.
    """
    first = chunk.lstrip(" |")
    if (
        first.startswith(('File "', "[Previous line repeated"))
        or chunk.strip(" |\n") in _CHAIN_MESSAGES
    ):
        return "\n".join(clean_text(line) for line in chunk.split("\n"))
    if chunk.endswith("\n"):
        return clean_text(chunk[:-1]) + "\n"
    return clean_text(chunk)


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def clean_traceback(exc_info: ExcInfo) -> str:
    """The traceback as ``logging.Formatter.formatException`` would print it, cleaned."""
    chunks = traceback.TracebackException(*exc_info).format()
    text = "".join(_clean_chunk(c) for c in chunks)
    return text[:-1] if text.endswith("\n") else text


def clean_record(record: logging.LogRecord) -> None:
    """Rewrite ``record`` in place: its message formatted and cleaned, its traceback too."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: the handler reports it, as without us
        return
    record.msg = clean_text(message)
    record.args = ()
    info = record.exc_info
    if info and info[0] is not None and info[1] is not None and not record.exc_text:
        # Formatters print exc_text when it is set, instead of formatting exc_info.
        record.exc_text = clean_traceback((info[0], info[1], info[2]))


class _CleanRecords:
    """A log-record factory wrapping the previous one; cleans every record made."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.inner(*args, **kwargs)
        clean_record(record)
        return record


class _MalformedRequests(logging.Filter):
    """On ``aiohttp.server``: a request aiohttp could not parse (a client's
    mistake, :class:`BadHttpMessage` and its kind) is one line at INFO (DEBUG
    when aiohttp chose that) without a traceback, ``Refused a malformed request
    from 127.0.0.1: Invalid HTTP header: …``; any other record passes as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = record.exc_info
        if not info or not isinstance(info[1], BadHttpMessage):
            return True
        level = min(record.levelno, logging.INFO)  # aiohttp says some at DEBUG already
        if not logging.getLogger(record.name).isEnabledFor(level):
            return False
        reason = " ".join(str(info[1].message).split())[:300]
        message = record.getMessage().replace("Error handling", "Refused a malformed")
        record.msg, record.args = clean_text(f"{message}: {reason}"), ()
        record.levelno, record.levelname = level, logging.getLevelName(level)
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def install_redaction() -> None:
    """Clean every log record from now on (idempotent), and quiet the chatty loggers
    (aiohttp's malformed requests included)."""
    if not isinstance(logging.getLogRecordFactory(), _CleanRecords):
        logging.setLogRecordFactory(_CleanRecords(logging.getLogRecordFactory()))
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequests) for f in server.filters):
        server.addFilter(_MalformedRequests())
    # aiosqlite's DEBUG lines carry statement parameters (outgoing mail) and
    # aiosmtpd's ("mail.log") the commands of captured mail: never below INFO,
    # and never more talkative than the root logger.
    root = logging.getLogger().getEffectiveLevel()
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root))
    # aiosmtpd logs about a dozen INFO lines per captured message; the inbox
    # logs one of its own (resetd.inbox.writer), so aiosmtpd's show only when
    # debugging.
    smtp_level = logging.INFO if root <= logging.DEBUG else logging.WARNING
    logging.getLogger("mail.log").setLevel(smtp_level)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    install_redaction()
