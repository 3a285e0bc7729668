"""Logging that never carries a reset token.

The mailed link's path holds the token, and aiohttp's access log prints request
paths; aiosqlite's and aiosmtpd's DEBUG lines print statement parameters and
mail lines, links included. All are tamed here, once, for any runner.
"""

from __future__ import annotations

import logging
import re

_TOKEN_IN_PATH = re.compile(r"/reset_password/[^\s\"?/]+")


class RedactTokens(logging.Filter):
    """Rewrites ``/reset_password/<token>`` to ``/reset_password/<redacted>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "/reset_password/" in msg:
            record.msg = _TOKEN_IN_PATH.sub("/reset_password/<redacted>", msg)
            record.args = ()
        return True


def install_redaction() -> None:
    access = logging.getLogger("aiohttp.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())
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
