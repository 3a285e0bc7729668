"""Accounts: how names and addresses compare, and what tokens and sessions bind to.

The tables are in the storage (:mod:`resetd.storage.accounts`).

Addresses and usernames are compared in a normalised form (trim, NFKC,
case-fold) kept in their own UNIQUE columns, so two spellings of one address
can never be two accounts; mail always goes to the stored ``email``, never to
what somebody typed. An application's table may hold several spellings
(``Alice@example.com`` and ``alice@example.com``): :func:`pick` then chooses the
account whose stored value is exactly what was typed, and none on a true tie.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Callable, Sequence

from .storage.accounts import AccountStore, DuplicateUser, User

__all__ = [
    "AccountStore",
    "DuplicateUser",
    "User",
    "fingerprint",
    "normalize",
    "pick",
    "same_fingerprint",
    "username_problem",
]


# As the Flask Mega-Tutorial's ``user.username`` column (String(64)); a name this
# long still fits a mail's To: line and every page.
MAX_USERNAME = 64


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be an account's name, or None when it can.

    Printable characters only (``str.isprintable``: no control characters such as
    CR or LF, which once reached mail headers, no format or separator characters
    other than the space), 1 to :data:`MAX_USERNAME` characters once trimmed.
    """
    name = username.strip()
    if not name:
        return "must not be empty"
    if not name.isprintable():
        bad = next(c for c in name if not c.isprintable())
        return f"must not contain control or invisible characters (found U+{ord(bad):04X})"
    if len(name) > MAX_USERNAME:
        return f"must be at most {MAX_USERNAME} characters (got {len(name)})"
    return None


def normalize(value: str) -> str:
    """Trim, NFKC-normalise and case-fold an email address or username."""
    return unicodedata.normalize("NFKC", value.strip()).casefold()


def pick(
    candidates: Sequence[User], typed: str | None, stored: Callable[[User], str]
) -> User | None:
    """The one account meant by ``typed`` among those sharing its normalised form.

    One candidate is the account. Among several, the one whose ``stored`` value
    (its email or username) equals what was typed, both trimmed; None when none
    or more than one does (a true tie: nobody can tell which account was meant,
    so nothing is sent and nobody signs in). ``typed`` None (a request queued
    before resetd kept what was typed) picks only a lone candidate.
    """
    if len(candidates) == 1:
        return candidates[0]
    if typed is None:
        return None
    want = typed.strip()
    exact = [u for u in candidates if stored(u).strip() == want]
    return exact[0] if len(exact) == 1 else None


def fingerprint(user: User) -> str:
    """A short digest of what a reset token and a session are bound to.

    It changes whenever the password hash or the email changes (by any route,
    including the host application writing its own table), which kills every
    outstanding token and signed-in session of that user.
    """
    material = f"{user.id}\x00{user.password_hash}\x00{normalize(user.email)}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def same_fingerprint(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
