"""Step 4: the mailed link → the new-password form → the new password.

``GET``/``HEAD /reset_password/<token>`` only checks the token and moves it
into the session, then redirects (303) to the token-free ``/reset_password``
(as Django does), so the token never sits in the address bar, history or a
Referer header. Nothing on the server changes: link scanners and mail
previews that fetch the link consume nothing. Only the POST that sets the
password consumes the token, atomically, in the same transaction as the
password change.

A token that cannot be used raises :class:`~resetd.reset.tokens.TokenInvalid`;
the error middleware answers it with :func:`token_rejected`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from aiohttp_session import get_session

from .. import i18n, keys
from ..clientinfo import client_ip, user_agent
from ..hash_queue import HashingBusy, Standing
from ..i18n import N_, _
from ..limits import client_bucket
from ..login_guard import account_buckets
from ..outbox import PASSWORD_CHANGED
from ..passwords import PolicyError, check_policy
from ..render import render
from ..sessions import flash
from ..users import User
from .tokens import Claims, TokenInvalid, TokenState, check_token

log = logging.getLogger(__name__)

SESSION_TOKEN = "reset_token"  # noqa: S105 (the session key holding the token)
TOKEN_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
DONE_MESSAGE = N_("Your password has been reset. Sign in with your new password.")
BUSY_MESSAGE = N_("The server is busy. Wait a moment and submit again.")


async def _check(app: web.Application, token: str) -> tuple[User, Claims]:
    """:func:`~resetd.reset.tokens.check_token` with the app's codec, ledger and accounts."""
    return await check_token(token, app[keys.codec], app[keys.ledger], app[keys.users])


async def audit_rejection(request: web.Request, exc: TokenInvalid) -> None:
    """A token that could not be used goes to the audit trail with its reason."""
    await request.app[keys.audit].add(
        "token_use",
        f"rejected: {exc.reason}",
        user_id=exc.user_id,
        client_ip=client_ip(request),
        user_agent=user_agent(request),
    )


async def token_rejected(request: web.Request, exc: TokenInvalid) -> web.Response:
    """The one page for a link or form whose token cannot be used, whatever the
    reason (which goes to the audit trail only); the token leaves the session."""
    await audit_rejection(request, exc)
    session = await get_session(request)
    session.pop(SESSION_TOKEN, None)
    resp = await render(request, "invalid_token.html", status=400)
    resp.headers.update(TOKEN_HEADERS)
    return resp


async def token_link(request: web.Request) -> web.StreamResponse:
    """``/reset_password/<token>``: GET/HEAD stash and redirect; POST sets the password."""
    token = request.match_info["token"]
    if request.method == "POST":
        return await _set(request, token, action=request.path)
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "POST"])
    await _check(request.app, token)
    session = await get_session(request)
    session[SESSION_TOKEN] = token
    raise web.HTTPSeeOther(location=_form_path(request.app), headers=TOKEN_HEADERS)


async def set_password(request: web.Request) -> web.StreamResponse:
    """``/reset_password``: the form for the token stashed in the session."""
    session = await get_session(request)
    token = session.get(SESSION_TOKEN)
    if not isinstance(token, str):
        raise TokenInvalid("no token in session")
    if request.method == "POST":
        return await _set(request, token, action=_form_path(request.app))
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "POST"])
    user, _claims = await _check(request.app, token)
    return await _form(request, user, _form_path(request.app), {})


def _form_path(app: web.Application) -> str:
    """The token-free form's path, under public_url's path."""
    return app[keys.config].prefix + "/reset_password"


async def _form(
    request: web.Request, user: User, action: str, errors: dict[str, str], status: int = 200
) -> web.Response:
    p = request.app[keys.config].passwords
    resp = await render(
        request,
        "reset_password.html",
        {
            "username": user.username,
            "action": action,
            "errors": errors,
            "min_length": p.min_length,
            "max_length": p.max_length,
        },
        status=status,
    )
    resp.headers["Cache-Control"] = "no-store"
    if action != _form_path(request.app):  # the form posts back to the token's own URL
        resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


@dataclass(frozen=True)
class NewPassword:
    """What became of a new password offered with a live token."""

    user: User
    # The policy's objections: nothing changed, and the refusal counted against the token.
    problems: list[PolicyError]
    # No hashing place now (seconds to wait): nothing changed, the token still works.
    retry_after: int | None = None

    @property
    def done(self) -> bool:
        return not self.problems and self.retry_after is None


async def change_password(
    request: web.Request, token: str, password: str, password2: str
) -> NewPassword:
    """The form's POST and the JSON API's alike: the password is checked against
    the policy, then set and the token consumed in one transaction; a refused
    password counts against the token, which is burned at ``[limits]
    failed_posts_per_token``. Raises TokenInvalid when the token cannot be
    used (or is burned by this refusal)."""
    app = request.app
    user, claims = await _check(app, token)
    problems = check_policy(
        app[keys.config].passwords,
        password,
        password2,
        user.username,
        user.email,
        app[keys.hasher].max_password_bytes,
    )
    if problems:
        await _count_failure(app, user, claims)
        return NewPassword(user, problems)
    # Whoever holds a live link waits for a hashing thread as a client in good
    # standing, taking turns with every other client (resetd/hash_queue.py).
    try:
        new_hash = await app[keys.hasher].hash(
            password, Standing(client_bucket(client_ip(request)))
        )
    except HashingBusy as busy:  # nothing changed: the same link can submit again
        return NewPassword(user, [], busy.retry_after)
    await _replace_password(app, user, claims, new_hash, client_ip(request), user_agent(request))
    app[keys.wake_outbox]()
    log.info("password reset for user %d", user.id)
    return NewPassword(user, [])


async def _set(request: web.Request, token: str, action: str) -> web.StreamResponse:
    """POST of the form (see :func:`change_password`)."""
    form = await request.post()
    password, password2 = str(form.get("password", "")), str(form.get("password2", ""))
    outcome = await change_password(request, token, password, password2)
    if outcome.problems:
        errors: dict[str, str] = {}
        for problem in outcome.problems:
            errors.setdefault(problem.field, problem.message)
        return await _form(request, outcome.user, action, errors, status=400)
    if outcome.retry_after is not None:
        resp = await _form(request, outcome.user, action, {"password": _(BUSY_MESSAGE)}, status=503)
        resp.headers["Retry-After"] = str(outcome.retry_after)
        return resp
    session = await get_session(request)
    session.pop(SESSION_TOKEN, None)
    await flash(request, _(DONE_MESSAGE), "success")
    raise web.HTTPSeeOther(location=request.app[keys.config].login_location, headers=TOKEN_HEADERS)


async def _count_failure(app: web.Application, user: User, claims: Claims) -> None:
    """A refused password; raises TokenInvalid when it is the one that burns the token."""
    limit = app[keys.config].limits.failed_posts_per_token
    if await app[keys.ledger].record_failure(claims.jti, limit):
        raise TokenInvalid(
            "burned after too many failed attempts", TokenState.BURNED, user_id=user.id
        )


async def _replace_password(
    app: web.Application, user: User, claims: Claims, new_hash: str, ip: str, agent: str
) -> None:
    """One transaction: consume the token, set the password, start the account
    afresh, queue the "password changed" notice (and the app's webhook event),
    audit, all at the storage's clock. Raises TokenInvalid
    (and changes nothing) when another request used the token or changed the
    password first."""
    async with app[keys.storage].transaction() as tx:
        if not await tx.ledger.consume(claims.jti, tx.now):
            raise TokenInvalid("used", TokenState.USED, user_id=user.id)
        if not await tx.accounts.replace_password_hash(user.id, user.password_hash, new_hash):
            raise TokenInvalid("superseded", TokenState.SUPERSEDED, user_id=user.id)
        # The account starts afresh: its failed sign-ins are forgotten (whoever
        # filled them), and every session of the old password ends.
        await tx.limits.forget(account_buckets(user.username, user.email))
        await tx.sessions.end_all(user.id)
        when = datetime.fromtimestamp(tx.now, UTC)
        notice = app[keys.composer].changed_mail(
            user.username, user.email, when, ip, agent, i18n.current()
        )
        await tx.outbox.enqueue("password_changed", notice, user_id=user.id)
        events = app[keys.webhook_events]
        if events.wants(PASSWORD_CHANGED):  # the app ends its own sessions too
            event = events.make(PASSWORD_CHANGED, user.id, user.email, tx.now)
            await tx.outbox.enqueue_event(event)
        await tx.audit.record(
            "password_reset", "success", user_id=user.id, client_ip=ip, user_agent=agent
        )
