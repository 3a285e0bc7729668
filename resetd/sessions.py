"""Session helpers: the CSRF token, flash messages and the signed-in user.

Sessions are aiohttp-session's encrypted cookies (Fernet), keyed from the
secret by HKDF; nothing lives in process memory, so any instance can serve any
request. Cookies are written with ``[server] secret_key`` and read with it or
any of ``secret_key_fallbacks``, so a key rotates one instance at a time. A
signed-in session stores the user id, the user's fingerprint (password hash +
email digest) and the id of its row in the ``sessions`` table
(:mod:`resetd.session_store`). It is signed in only while that row is live
(signing out deletes it; idle and absolute lifetimes end it) and the
fingerprint matches: a changed password or email ends every session of that
user on its next request.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import warnings
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_session import Session, get_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography import fernet

from . import keys
from .config import Config
from .reset.tokens import derive_key
from .users import User, fingerprint, same_fingerprint

# aiohttp-session 2.12 stores its state under string request keys, which aiohttp
# 3.14 warns about on every request; the warning is about its code, not ours.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")

COOKIE_NAME = "resetd_session"


class RotatingFernet(fernet.Fernet):
    """Encrypts with the first key, decrypts with any of them (a key rotation:
    the first is the current secret's, the others its fallbacks')."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        wrapped = [fernet.Fernet(base64.urlsafe_b64encode(k)) for k in keys]
        super().__init__(base64.urlsafe_b64encode(keys[0]))
        self._any = fernet.MultiFernet(wrapped)

    def decrypt(self, token: bytes | str, ttl: int | None = None) -> bytes:
        return self._any.decrypt(token, ttl)


class SessionCookies(EncryptedCookieStorage):
    """The cookie lasts the browser session, or, once "remember me" was ticked,
    ``[server] session_remember_max_age`` from its latest write.

    aiohttp-session forgets a session's own max_age on the next request, so a
    remembered cookie rewritten later (a flash, a new CSRF token) used to
    become a browser-session cookie; the flag rides in the cookie instead. The
    server enforces the lifetimes either way (:mod:`resetd.session_store`)."""

    def __init__(self, keys: Sequence[bytes], remember_seconds: int, **kwargs: Any) -> None:
        super().__init__(RotatingFernet(keys), **kwargs)
        self._remember_seconds = remember_seconds

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        if session.get("remember") is True:
            session.max_age = self._remember_seconds
        await super().save_session(request, response, session)


def cookie_storage(cfg: Config) -> EncryptedCookieStorage:
    secrets_in_order = (cfg.server.secret_key, *cfg.server.secret_key_fallbacks)
    # Raw 32-byte keys, the current one first.
    keys = [derive_key(secret, b"resetd session v1") for secret in secrets_in_order]
    return SessionCookies(
        keys,
        cfg.server.session_remember_max_age,
        cookie_name=COOKIE_NAME,
        httponly=True,
        samesite="Lax",
        secure=cfg.is_https,
        # Under a path of its own (public_url https://host/auth) the cookie is
        # sent to that path only, never to the application beside it.
        path=cfg.prefix or "/",
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
    store = request.app[keys.sessions]
    previous = session.get("sid")
    if isinstance(previous, str):  # signing in again, perhaps as someone else
        await store.end(previous)
    csrf = session.get("csrf")
    session.invalidate()  # a fresh session on privilege change (no fixation)
    session = await get_session(request)
    if csrf:
        session["csrf"] = secrets.token_urlsafe(32)
    session["sid"] = await store.create(user.id, remember)
    session["uid"] = user.id
    session["fp"] = fingerprint(user)
    if remember:
        session["remember"] = True
    request[keys.request_user] = user


async def sign_out(request: web.Request) -> None:
    """End the session on the server (every copy of the cookie) and clear the cookie."""
    session = await get_session(request)
    sid = session.get("sid")
    if isinstance(sid, str):
        await request.app[keys.sessions].end(sid)
    session.invalidate()
    request[keys.request_user] = None


def _forget_user(session: Session) -> None:
    for key in ("uid", "fp", "sid", "remember"):
        session.pop(key, None)


async def current_user(request: web.Request) -> User | None:
    """The signed-in user, or None; an ended session or a stale fingerprint
    leaves the cookie signed out."""
    cached: Any = request.get(keys.request_user, ...)
    if cached is not ...:
        return cached  # type: ignore[no-any-return]
    session: Session = await get_session(request)
    user: User | None = None
    uid, sid = session.get("uid"), session.get("sid")
    if isinstance(uid, int):
        store = request.app[keys.sessions]
        if isinstance(sid, str) and await store.check(sid, uid):
            user = await request.app[keys.users].get(uid)
            if user is None or not same_fingerprint(str(session.get("fp", "")), fingerprint(user)):
                user = None
                await store.end(sid)
        if user is None:
            _forget_user(session)
    request[keys.request_user] = user
    return user
