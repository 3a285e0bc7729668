"""Step 1: "forgot your password?" — the form.

The request handler only validates, normalises, counts limits and queues a
row in ``reset_requests`` through the :mod:`~resetd.reset.intake`; it never
looks the address up. Known, unknown, malformed and rate-limited addresses
therefore cost the same work and get the same redirect. The user lookup and
the mail happen later, in :mod:`resetd.reset.processor`.
"""

from __future__ import annotations

from aiohttp import web

from .. import i18n, keys
from ..clientinfo import client_ip, user_agent
from ..config import Config
from ..i18n import N_, _
from ..render import render
from ..users import normalize
from .intake import Submission

SENT_MESSAGE = N_(
    "Check your email for the instructions to reset your password. If the address belongs "
    "to an account, a link is on its way."
)
MAX_EMAIL_LENGTH = 254


async def request_page(request: web.Request) -> web.StreamResponse:
    if request.method in ("GET", "HEAD"):
        return await render(request, "reset_password_request.html", {"email": ""})
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "POST"])
    form = await request.post()
    values = form.getall("email", [])
    typed = values[0] if len(values) == 1 and isinstance(values[0], str) else None
    if typed is not None and not typed.strip():
        return await render(
            request,
            "reset_password_request.html",
            {"email": "", "errors": {"email": _("Enter the email address of your account.")}},
            status=400,
        )
    # More than one `email` value (GitLab CVE-2023-7028) is queued like an
    # unknown address: same work, same answer, nothing sent.
    retry_after = await queue_request(request, typed)
    if retry_after is not None:
        request.app[keys.metrics].rate_limited.labels("reset_ip").inc()
        raise web.HTTPTooManyRequests(
            headers={"Retry-After": str(retry_after)},
            text=_("Too many password reset requests from your network; please wait and retry."),
        )
    # The notice rides in the URL, not the session: the answer sets no cookie and
    # costs no session write, and it is the same for every address.
    # Returned, not raised: building an HTTPException costs more than the redirect.
    return web.Response(status=303, headers={"Location": notice_url(request.app[keys.config])})


async def queue_request(request: web.Request, typed: str | None) -> int | None:
    """Queue a reset request for the address typed (None: nothing usable was
    sent); the form's POST and the JSON API's alike. An implausible address is
    queued like an unknown one: same work, same answer, nothing sent. Returns
    the seconds to wait when the client's IP is over its limit, else None."""
    plausible = typed is not None and len(typed) <= MAX_EMAIL_LENGTH
    email = typed.strip() if typed is not None and plausible else None
    email_norm = normalize(email) if email is not None else ""
    retry_after: int | None = await request.app[keys.intake].submit(
        Submission(email_norm, client_ip(request), user_agent(request), email, i18n.current())
    )
    return retry_after


def notice_url(cfg: Config) -> str:
    """Where to send the user after a request: resetd's own sign-in page shows the
    notice; a host application's page is left as configured."""
    own = f"{cfg.prefix}/login"
    if cfg.login_location == own:
        return own + "?notice=reset-sent"
    return cfg.login_location
