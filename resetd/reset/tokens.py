"""Reset tokens: mint, verify, and the single-use ledger.

A token is an HS256 JWT (PyJWT) carrying, as in the Flask Mega-Tutorial, the
user id in a ``reset_password`` claim, plus ``exp``/``iat``/``jti``, an audience
naming its purpose, and ``fp`` — a fingerprint of the user's password hash and
email at minting time. It is valid only while:

* the signature checks with a key derived (HKDF) for reset tokens alone,
* it has not expired,
* its ``jti`` is in the ledger, not used and not burned, and
* the user's fingerprint still matches (any password or email change kills it).

:func:`check_token` is that judgement, made in one place for the reset page
and the dev inbox's reset-link panel.

Decoding pins ``algorithms=["HS256"]`` and requires every claim, so ``alg=none``,
key-confusion and claim-stripping tokens are all refused.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..storage.ledger import IssuedToken, LedgerStore
from ..users import AccountStore, User, fingerprint, same_fingerprint

AUDIENCE = "resetd:reset_password"
MAX_TOKEN_LENGTH = 1024
_ALGORITHMS = ["HS256"]
_REQUIRED = ["exp", "iat", "jti", "aud", "reset_password", "fp"]


class TokenState(StrEnum):
    VALID = "valid"
    USED = "used"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"
    BURNED = "burned"
    UNKNOWN = "unknown"
    INVALID = "invalid"  # it does not verify: forged, malformed, signed with another key


class TokenInvalid(Exception):
    """The token cannot be used; ``reason`` is for the audit trail, not the user.

    ``state`` is what became of it (never ``VALID``), as the dev inbox's
    reset-link panel shows it; ``user_id`` the account it was for, when known.
    The error middleware answers it with the invalid-link page."""

    def __init__(
        self, reason: str, state: TokenState = TokenState.INVALID, *, user_id: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.state = state
        self.user_id = user_id


@dataclass(frozen=True)
class Claims:
    user_id: int
    jti: str
    issued_at: int
    expires_at: int
    fingerprint: str


def derive_key(secret: str, purpose: bytes = b"resetd reset-token v1") -> bytes:
    """A 256-bit key for one purpose, so no other signature can pass as a token."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret.encode("utf-8")
    )


class TokenCodec:
    """Signs with the current secret; verifies with it and its fallbacks (rotation)."""

    def __init__(self, secret: str, fallbacks: tuple[str, ...] = (), ttl: int = 600) -> None:
        self._key = derive_key(secret)
        self._verify_keys = [self._key, *(derive_key(s) for s in fallbacks)]
        self.ttl = ttl

    def mint(self, user_id: int, fingerprint: str, now: float | None = None) -> tuple[str, Claims]:
        iat = int(now if now is not None else time.time())
        claims = Claims(user_id, secrets.token_urlsafe(16), iat, iat + self.ttl, fingerprint)
        payload: dict[str, Any] = {
            "reset_password": user_id,
            "exp": claims.expires_at,
            "iat": claims.issued_at,
            "jti": claims.jti,
            "aud": AUDIENCE,
            "fp": fingerprint,
        }
        return jwt.encode(payload, self._key, algorithm="HS256"), claims

    def decode(self, token: str, *, verify_exp: bool = True) -> Claims:
        """Verify signature and claims; raises TokenInvalid. Touches no storage."""
        if not token:
            raise TokenInvalid("empty")
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid("oversized")
        if not token.isascii():
            raise TokenInvalid("non-ascii")
        payload: dict[str, Any] | None = None
        last: jwt.InvalidTokenError | None = None
        for key in self._verify_keys:
            try:
                payload = jwt.decode(
                    token,
                    key,
                    algorithms=_ALGORITHMS,
                    audience=AUDIENCE,
                    options={"require": _REQUIRED, "verify_exp": verify_exp},
                    leeway=0,
                )
                break
            except jwt.ExpiredSignatureError:
                raise TokenInvalid("expired", TokenState.EXPIRED) from None
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.InvalidTokenError as exc:
                raise TokenInvalid(f"malformed: {type(exc).__name__}") from None
        if payload is None:
            raise TokenInvalid(f"bad signature ({type(last).__name__})")
        uid, jti, fp = payload["reset_password"], payload["jti"], payload["fp"]
        if not isinstance(uid, int) or isinstance(uid, bool):
            raise TokenInvalid("malformed: reset_password claim")
        if not isinstance(jti, str) or not isinstance(fp, str) or not 8 <= len(jti) <= 64:
            raise TokenInvalid("malformed: jti/fp claims")
        iat, exp = payload["iat"], payload["exp"]
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise TokenInvalid("malformed: iat/exp claims")
        return Claims(uid, jti, iat, exp, fp)


class TokenLedger:
    """Every minted ``jti`` and what became of it (storage for single use), read
    at the storage's clock."""

    def __init__(self, store: LedgerStore, now: Callable[[], Awaitable[float]]) -> None:
        self.store = store
        self.now = now

    async def state(self, jti: str, now: float | None = None) -> TokenState:
        """Ledger view only (no fingerprint check): unknown / used / burned / expired / valid."""
        entry = await self.store.entry(jti)
        if entry is None:
            return TokenState.UNKNOWN
        if entry.used_at is not None:
            return TokenState.USED
        if entry.burned_at is not None:
            return TokenState.BURNED
        if entry.expires_at <= (now if now is not None else await self.now()):
            return TokenState.EXPIRED
        return TokenState.VALID

    async def record_failure(self, jti: str, limit: int) -> bool:
        """Count a refused password POST; burn the token at ``limit``. True if burned now."""
        return await self.store.record_failure(jti, limit, await self.now())


def issued(claims: Claims) -> IssuedToken:
    """What the ledger records of a minted token."""
    return IssuedToken(claims.jti, claims.user_id, claims.issued_at, claims.expires_at)


async def check_token(
    token: str, codec: TokenCodec, ledger: TokenLedger, users: AccountStore
) -> tuple[User, Claims]:
    """Whether ``token`` may set a password now: signature, expiry, ledger and the
    user's fingerprint. Raises TokenInvalid; changes nothing."""
    claims = codec.decode(token)
    state = await ledger.state(claims.jti)
    if state is not TokenState.VALID:
        raise TokenInvalid(str(state), state)
    user = await users.get(claims.user_id)
    if user is None:
        raise TokenInvalid("no such user", TokenState.SUPERSEDED)
    if not same_fingerprint(claims.fingerprint, fingerprint(user)):
        raise TokenInvalid(str(TokenState.SUPERSEDED), TokenState.SUPERSEDED)
    return user, claims
