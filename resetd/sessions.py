"""Session helpers: the CSRF token, flash messages and the signed-in user.

Sessions are aiohttp-session's encrypted cookies (Fernet), keyed from the
secret by HKDF; nothing lives in process memory, so any instance can serve any
request. A signed-in session stores the user id and the user's fingerprint
(password hash + email digest): when either changes, every session of that
user stops being signed in on its next request.
"""

from __future__ import annotations

import hmac
import secrets
import warnings
from typing import Any

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_session import Session, get_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from . import keys
from .config import Config
from .tokens import derive_key
from .users import User, fingerprint, same_fingerprint

# aiohttp-session 2.12 stores its state under string request keys, which aiohttp
# 3.14 warns about on every request; the warning is about its code, not ours.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")

COOKIE_NAME = "resetd_session"
REMEMBER_SECONDS = 30 * 24 * 3600


def cookie_storage(cfg: Config) -> EncryptedCookieStorage:
    key = derive_key(cfg.server.secret_key, b"resetd session v1")  # raw 32 bytes
    return EncryptedCookieStorage(
        key,
        cookie_name=COOKIE_NAME,
        httponly=True,
        samesite="Lax",
        secure=cfg.is_https,
        path="/",
    )


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def csrf_ok(request: web.Request, submitted: str | None) -> bool:
    session = await get_session(request)
    expected = session.get("csrf")
    if not isinstance(expected, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


async def flash(request: web.Request, message: str, category: str = "info") -> None:
    session = await get_session(request)
    session["flashes"] = [*session.get("flashes", []), [category, message]]


async def pop_flashes(request: web.Request) -> list[tuple[str, str]]:
    session = await get_session(request)
    flashes = session.pop("flashes", [])
    return [(str(c), str(m)) for c, m in flashes]


async def sign_in(request: web.Request, user: User, remember: bool) -> None:
    session = await get_session(request)
    csrf = session.get("csrf")
    session.invalidate()  # a fresh session on privilege change (no fixation)
    session = await get_session(request)
    if csrf:
        session["csrf"] = secrets.token_urlsafe(32)
    session["uid"] = user.id
    session["fp"] = fingerprint(user)
    if remember:
        session.max_age = REMEMBER_SECONDS


async def sign_out(request: web.Request) -> None:
    session = await get_session(request)
    session.invalidate()


async def current_user(request: web.Request) -> User | None:
    """The signed-in user, or None; a stale fingerprint ends the session."""
    cached: Any = request.get(keys.request_user, ...)
    if cached is not ...:
        return cached  # type: ignore[no-any-return]
    session: Session = await get_session(request)
    user: User | None = None
    uid = session.get("uid")
    if isinstance(uid, int):
        user = await request.app[keys.users].get(uid)
        if user is None or not same_fingerprint(str(session.get("fp", "")), fingerprint(user)):
            user = None
            session.pop("uid", None)
            session.pop("fp", None)
    request[keys.request_user] = user
    return user
