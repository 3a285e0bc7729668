"""Password hashing (argon2id, off the event loop) and the password policy.

Every hash a request asks for runs in a thread given out by a
:class:`~resetd.hash_queue.HashQueue`, in the order it picks for the asker's
:class:`~resetd.hash_queue.Standing`.

Hashes are argon2id with OWASP's recommended parameters by default. Hashes in
the Flask Mega-Tutorial's Werkzeug formats (``scrypt:…`` and ``pbkdf2:…``)
verify too, so accounts migrated from such an app keep working; they report
``needs_rehash`` and are upgraded on the next successful login.
"""

from __future__ import annotations

import asyncio
import binascii
import gzip
import hashlib
import hmac
import os
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .config import PasswordConfig
from .hash_queue import RESETD, HashQueue, Standing
from .i18n import _
from .users import normalize

_COMMON_FILE = Path(__file__).parent / "data" / "common-passwords.txt.gz"


HASH_FORMATS = ("argon2", "werkzeug", "bcrypt")

_T = TypeVar("_T")


def hashing_threads() -> int:
    """How many threads hash for requests (see :class:`~resetd.hash_queue.HashQueue`).

    Hashing is memory-hard and CPU-bound (and releases the GIL). Running as many
    at once as there are cores starves the event loop of CPU, so one core is
    always left to it: on 2 cores one hash at a time (~25/s), and the rest wait
    their turn, which also slows password guessing down."""
    return max(1, (os.cpu_count() or 2) - 1)


BCRYPT_MAX_BYTES = 72  # bcrypt ignores the rest; we refuse rather than truncate


class Hasher:
    """Hashing in one target format; every call that burns CPU runs in a thread.

    Verifies argon2, Werkzeug (``scrypt:``/``pbkdf2:``) and bcrypt (``$2a$``,
    ``$2b$``, ``$2y$``) hashes whatever the target, so accounts keep working
    across formats and are upgraded to the target on their next sign-in.
    """

    def __init__(
        self, cfg: PasswordConfig, fmt: str = "argon2", queue: HashQueue | None = None
    ) -> None:
        """``queue``: the threads hashing runs in, and who goes first (the app's);
        None for asyncio's default executor, enough for a command that hashes once."""
        if fmt not in HASH_FORMATS:
            raise ValueError(f"unknown hash format {fmt!r}")
        self.format = fmt
        self.queue = queue
        self._ph = PasswordHasher(
            time_cost=cfg.argon2_time_cost,
            memory_cost=cfg.argon2_memory_cost,
            parallelism=cfg.argon2_parallelism,
        )
        # A fixed hash to verify against when an account does not exist, so a
        # wrong username costs the same time as a wrong password.
        self._dummy = self.hash_sync("resetd-timing-equaliser")

    async def _in_thread(self, who: Standing, fn: Callable[..., _T], *args: Any) -> _T:
        """Raises :class:`~resetd.hash_queue.HashingBusy` when the queue has no place."""
        if self.queue is None:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        return await self.queue.run(who, fn, *args)

    @property
    def max_password_bytes(self) -> int | None:
        return BCRYPT_MAX_BYTES if self.format == "bcrypt" else None

    def hash_sync(self, password: str) -> str:
        if self.format == "werkzeug":
            return werkzeug_scrypt_hash(password)
        if self.format == "bcrypt":
            return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
        return self._ph.hash(password)

    async def hash(self, password: str, who: Standing = RESETD) -> str:
        return await self._in_thread(who, self.hash_sync, password)

    def verify_sync(self, stored: str, password: str) -> bool:
        if stored.startswith(("scrypt:", "pbkdf2:")):
            return verify_werkzeug(stored, password)
        if stored.startswith(("$2a$", "$2b$", "$2y$")):
            pw = password.encode()
            if len(pw) > BCRYPT_MAX_BYTES:
                return False
            try:
                return bcrypt.checkpw(pw, stored.encode())
            except ValueError:
                return False
        try:
            return self._ph.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str, who: Standing = RESETD) -> bool:
        """Constant-work check; ``stored=None`` (no such user) burns a dummy verify."""
        if stored is None:
            await self._in_thread(who, self.verify_sync, self._dummy, password)
            return False
        return await self._in_thread(who, self.verify_sync, stored, password)

    def _timed_verify(self, stored: str, password: str) -> tuple[bool, float]:
        started = time.perf_counter()
        ok = self.verify_sync(stored, password)
        return ok, time.perf_counter() - started

    async def verify_timed(
        self, stored: str | None, password: str, who: Standing = RESETD
    ) -> tuple[bool, str, float]:
        """:meth:`verify`, also returning the kind of hash checked (see :func:`hash_kind`)
        and the seconds the check took in its thread (the wait for the thread excluded)."""
        checked = self._dummy if stored is None else stored
        ok, took = await self._in_thread(who, self._timed_verify, checked, password)
        return ok and stored is not None, hash_kind(checked), took

    def needs_rehash(self, stored: str) -> bool:
        if self.format == "werkzeug":
            return not stored.startswith("scrypt:")
        if self.format == "bcrypt":
            return not stored.startswith("$2b$")
        if not stored.startswith("$argon2"):
            return True
        try:
            return self._ph.check_needs_rehash(stored)
        except InvalidHashError:
            return True


def hash_kind(stored: str) -> str:
    """A hash's algorithm and cost parameters, without its salt or digest:
    ``$argon2id$v=19$m=19456,t=2,p=1``, ``$2b$12``, ``pbkdf2:sha256:600000``.

    Hashes of one kind cost the same to check, whatever the password."""
    if stored.startswith("$argon2"):
        parts = stored.split("$", 5)
        # $argon2id$v=19$m=…,t=…,p=…$salt$digest; the oldest format has no v=.
        kept = 4 if len(parts) > 2 and parts[2].startswith("v=") else 3
        return "$".join(parts[:kept])[:80]
    if stored.startswith("$"):
        return "$".join(stored.split("$", 3)[:3])[:80]  # bcrypt: $2b$12$…
    return stored.split("$", 1)[0][:80]  # Werkzeug: method$salt$digest


def verify_werkzeug(stored: str, password: str) -> bool:
    """Verify Werkzeug's ``method$salt$hexdigest`` hashes (scrypt and pbkdf2)."""
    try:
        method, salt, digest = stored.split("$", 2)
        name, *args = method.split(":")
        pw, salt_b = password.encode(), salt.encode()
        if name == "scrypt":
            n, r, p = (int(a) for a in args) if args else (2**15, 8, 1)
            got = hashlib.scrypt(pw, salt=salt_b, n=n, r=r, p=p, maxmem=132 * n * r * p)
        elif name == "pbkdf2":
            algo = args[0] if args else "sha256"
            rounds = int(args[1]) if len(args) > 1 else 600_000
            got = hashlib.pbkdf2_hmac(algo, pw, salt_b, rounds)
        else:
            return False
        return hmac.compare_digest(got.hex(), digest)
    except (ValueError, TypeError, binascii.Error):
        return False


def werkzeug_scrypt_hash(password: str, salt: bytes | None = None) -> str:
    """Produce a hash in Werkzeug's ``scrypt:32768:8:1$salt$hex`` format."""
    alphabet = string.ascii_letters + string.digits
    salt_s = (
        salt.decode() if salt is not None else "".join(secrets.choice(alphabet) for _ in range(16))
    )
    n, r, p = 2**15, 8, 1
    got = hashlib.scrypt(
        password.encode(), salt=salt_s.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p
    )
    return f"scrypt:{n}:{r}:{p}${salt_s}${got.hex()}"


@cache
def common_passwords() -> frozenset[str]:
    with gzip.open(_COMMON_FILE, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip())


@dataclass(frozen=True)
class PolicyError:
    field: str
    message: str
    # For machines (the JSON API): password_required, password_too_short,
    # password_too_long, password_common, password_like_identity, password_mismatch.
    code: str = ""


def _too_similar(password: str, other: str) -> bool:
    """Equal, mostly made of ``other``, or close to it (Django's ratio of 0.7)."""
    p, o = normalize(password), normalize(other)
    if len(o) < 3:
        return False
    if p == o:
        return True
    rest = "".join(ch for ch in p.replace(o, "") if ch.isalnum())
    if o in p and len(rest) < 8:
        return True
    return SequenceMatcher(None, p, o).quick_ratio() >= 0.7 and (
        SequenceMatcher(None, p, o).ratio() >= 0.7
    )


def check_policy(
    cfg: PasswordConfig,
    password: str,
    password2: str,
    username: str,
    email: str,
    max_bytes: int | None = None,
) -> list[PolicyError]:
    """NIST SP 800-63B-4 rules: length, blocklist, not the identity, fields match.

    No composition rules. Nothing is truncated: a password over max_length is
    refused with a message, never silently cut. The messages are in the
    language in use (:mod:`resetd.i18n`).
    """
    errors: list[PolicyError] = []
    if not password:
        return [PolicyError("password", _("Enter a new password."), "password_required")]
    length = len(password)
    if length < cfg.min_length:
        errors.append(
            PolicyError(
                "password",
                _(
                    "Use at least %(min_length)d characters (%(length)d so far). "
                    "A few unrelated words make a strong, memorable passphrase."
                )
                % {"min_length": cfg.min_length, "length": length},
                "password_too_short",
            )
        )
    elif length > cfg.max_length:
        errors.append(
            PolicyError(
                "password",
                _("Use at most %(max_length)d characters.") % {"max_length": cfg.max_length},
                "password_too_long",
            )
        )
    elif max_bytes is not None and len(password.encode()) > max_bytes:
        errors.append(
            PolicyError(
                "password",
                _(
                    "This account store keeps at most %(max_bytes)d bytes of a password; "
                    "use a shorter one."
                )
                % {"max_bytes": max_bytes},
                "password_too_long",
            )
        )
    elif password.lower() in common_passwords():
        errors.append(
            PolicyError(
                "password", _("This password is too common; choose another."), "password_common"
            )
        )
    elif (
        _too_similar(password, username)
        or _too_similar(password, email.split("@")[0])
        or (_too_similar(password, email))
    ):
        errors.append(
            PolicyError(
                "password",
                _("This password is too similar to your username or email."),
                "password_like_identity",
            )
        )
    if password != password2:
        errors.append(
            PolicyError("password2", _("The two passwords do not match."), "password_mismatch")
        )
    return errors
