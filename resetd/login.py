"""Sign in, sign out, and the signed-in user's page.

Every password check at sign-in goes through :mod:`resetd.login_guard`
(failed sign-ins throttled per account and per client, hashing bounded per
client and waiting its turn in :mod:`resetd.hash_queue`, failures timed
alike); what a signed-in session is lives in :mod:`resetd.sessions`. A
sign-in the guard refuses before any password is checked raises
:class:`~resetd.login_guard.SigninRefused`, which the error middleware
answers with :func:`refused_page`.
"""

from __future__ import annotations

from aiohttp import web

from . import keys
from .clientinfo import client_ip, user_agent
from .hash_queue import HashingBusy, Standing
from .i18n import N_, _
from .login_guard import Attempt, SigninRefused
from .render import render
from .reset.request import SENT_MESSAGE
from .sessions import current_user, flash, sign_in, sign_out
from .users import User

BAD_LOGIN = N_("Invalid username or password.")
# Fixed notices a redirect may ask the sign-in page to show (?notice=…).
NOTICES = {"reset-sent": SENT_MESSAGE}


async def index(request: web.Request) -> web.StreamResponse:
    if await current_user(request) is None:
        raise web.HTTPFound(location=request.app[keys.config].prefix + "/login")
    return await render(request, "index.html")


async def login(request: web.Request) -> web.StreamResponse:
    if request.method in ("GET", "HEAD"):
        return await _login_page(request)
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "POST"])
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    remember = bool(form.get("remember_me"))
    errors = {}
    if not username:
        errors["username"] = _("This field is required.")
    if not password:
        errors["password"] = _("This field is required.")
    ctx = {"username": username[:254], "remember_me": remember}
    if errors:
        return await render(request, "login.html", {**ctx, "errors": errors}, status=400)
    app = request.app
    async with app[keys.login_guard].attempt(client_ip(request), username[:254]) as attempt:
        user = await app[keys.users].find_by_login(username[:254])
        # Checked even without an account: an unknown name costs what a known one does.
        ok = await attempt.check(
            app[keys.hasher], user.password_hash if user else None, password[:1024]
        )
        if user is None or not ok:
            app[keys.metrics].sign_ins.labels("failed").inc()
            await _audit(request, _failure(attempt), user)
            return await render(
                request, "login.html", {**ctx, "form_error": _(BAD_LOGIN)}, status=400
            )
        await attempt.succeeded()
    # In good standing now: the password was right.
    user = await _upgrade_hash(app, user, password, Standing(attempt.standing.client))
    app[keys.metrics].sign_ins.labels("success").inc()
    await _audit(request, "success", user)
    await sign_in(request, user, remember)
    raise web.HTTPSeeOther(location=app[keys.config].prefix + "/")


async def _login_page(request: web.Request) -> web.StreamResponse:
    if await current_user(request) is not None:
        raise web.HTTPFound(location=request.app[keys.config].prefix + "/")
    notice = NOTICES.get(request.query.get("notice", ""))
    notice = _(notice) if notice is not None else None
    return await render(
        request,
        "login.html",
        {"username": "", "remember_me": False, "notice": notice},
    )


def _failure(attempt: Attempt) -> str:
    """A failed sign-in as the audit trail names it, with the limits it filled."""
    filled = attempt.filled
    return "failed" + (f" ({' and '.join(filled)} limit reached)" if filled else "")


async def _audit(request: web.Request, outcome: str, user: User | None) -> None:
    await request.app[keys.audit].add(
        "login",
        outcome,
        user_id=user.id if user else None,
        client_ip=client_ip(request),
        user_agent=user_agent(request),
    )


async def _upgrade_hash(app: web.Application, user: User, password: str, who: Standing) -> User:
    """Parameters changed or a Werkzeug-format hash: upgrade while we know the password
    (or at a later sign-in, when the hashing queue has no place now)."""
    hasher, users = app[keys.hasher], app[keys.users]
    if hasher.needs_rehash(user.password_hash):
        try:
            new_hash = await hasher.hash(password, who)
        except HashingBusy:
            return user
        if await users.upgrade_hash(user.id, user.password_hash, new_hash):
            return await users.get(user.id) or user
    return user


async def refused_page(request: web.Request, refused: SigninRefused) -> web.Response:
    """The sign-in page for an attempt the guard refused, with its Retry-After."""
    metrics = request.app[keys.metrics]
    metrics.sign_ins.labels("refused").inc()
    if refused.status == 429:  # a limit, not a full hashing queue (503)
        metrics.rate_limited.labels("sign_in").inc()
    # The same page whatever was typed (the username is not echoed), so known and
    # unknown accounts cannot be told apart by it.
    form = await request.post()  # already read, kept by aiohttp
    remember = bool(form.get("remember_me"))
    resp = await render(
        request,
        "login.html",
        {"username": "", "remember_me": remember, "form_error": _(refused.message)},
        status=refused.status,
    )
    resp.headers["Retry-After"] = str(refused.retry_after)
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    user = await current_user(request)
    await sign_out(request)
    if user is not None:
        await request.app[keys.audit].add(
            "logout",
            "success",
            user_id=user.id,
            client_ip=client_ip(request),
            user_agent=user_agent(request),
        )
    await flash(request, _("You have been signed out."))
    raise web.HTTPSeeOther(location=request.app[keys.config].prefix + "/login")
