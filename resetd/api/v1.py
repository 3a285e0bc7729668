"""The JSON API's endpoints: the form's two steps, for a front end's ``fetch``.

``POST reset-requests`` is the "forgot your password?" form: the same
validation, normalisation, limits and queue (:func:`~resetd.reset.request.queue_request`),
so every address gets the same ``202 {"status": "accepted"}``.
``POST password-resets`` is the new-password form with the token in the body:
the same token check, policy, burning and single use
(:func:`~resetd.reset.confirm.change_password`), answered ``204`` or ``400``
with machine-readable codes. Which codes the token gets: ``token_expired`` when
its own expiry has passed (anyone holding it can read that from it),
``token_invalid`` for every other reason (used, superseded, burned, forged),
as the link's page says nothing more either; the reason goes to the audit trail.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import keys
from ..bodies import read_json
from ..errors import ApiError
from ..reset.confirm import audit_rejection, change_password
from ..reset.request import queue_request
from ..reset.tokens import TokenInvalid, TokenState
from .cors import check_origin

OPENAPI_FILE = Path(__file__).with_name("openapi.json")
JSON_TYPE = "application/json"


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, from a caller allowed to send it.

    Raises ApiError: 403 for another site's page, 415 for any type but
    ``application/json`` (so no form and no CORS "simple request" gets in),
    400 for a body that is not a JSON object of valid UTF-8, 408 or 413."""
    check_origin(request)
    if request.content_type != JSON_TYPE:
        raise ApiError.one(
            415, "unsupported_media_type", "Send the body as application/json (UTF-8)."
        )
    try:
        data = await read_json(request)
    except web.HTTPRequestEntityTooLarge:
        raise ApiError.one(413, "body_too_large", "The body is larger than 1 MiB.") from None
    except web.HTTPRequestTimeout:
        raise ApiError.one(408, "request_timeout", "The body did not arrive in time.") from None
    except web.HTTPBadRequest as exc:
        raise ApiError.one(400, "invalid_json", exc.text or "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError.one(400, "invalid_request", "The body must be a JSON object.")
    return data


def _string(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ApiError.one(400, "invalid_request", f'"{name}" must be a string.', field=name)
    return value


async def reset_requests(request: web.Request) -> web.StreamResponse:
    """``POST …/reset-requests {"email": …}`` → 202, the same for every address."""
    email = _string(await _body(request), "email")
    if not email.strip():
        raise ApiError.one(
            400, "email_required", "Enter the email address of your account.", field="email"
        )
    retry_after = await queue_request(request, email)
    if retry_after is not None:
        raise ApiError.one(
            429,
            "rate_limited",
            "Too many password reset requests from your network; please wait and retry.",
            headers={"Retry-After": str(retry_after)},
        )
    return web.json_response({"status": "accepted"}, status=202)


async def password_resets(request: web.Request) -> web.StreamResponse:
    """``POST …/password-resets {"token": …, "password": …}`` → 204, 400 or 503."""
    data = await _body(request)
    token, password = _string(data, "token"), _string(data, "password")
    try:
        # One field: a front end checks its own "repeat the password" box.
        outcome = await change_password(request, token, password, password)
    except TokenInvalid as exc:
        await audit_rejection(request, exc)
        if exc.state is TokenState.EXPIRED:
            raise ApiError.one(
                400, "token_expired", "This link has expired; ask for a new one.", field="token"
            ) from None
        raise ApiError.one(
            400,
            "token_invalid",
            "This link is not valid (it may have been used already); ask for a new one.",
            field="token",
        ) from None
    if outcome.problems:
        raise ApiError(
            400,
            [{"code": p.code, "message": p.message, "field": p.field} for p in outcome.problems],
        )
    if outcome.retry_after is not None:
        raise ApiError.one(
            503,
            "busy",
            "The server is busy. Wait a moment and send it again; the token still works.",
            headers={"Retry-After": str(outcome.retry_after)},
        )
    return web.Response(status=204)


@cache
def _description() -> dict[str, Any]:
    description: dict[str, Any] = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    return description


async def openapi(request: web.Request) -> web.StreamResponse:
    """``GET …/openapi.json``: the shipped description, its server made this one."""
    cfg = request.app[keys.config]
    description = {**_description(), "servers": [{"url": cfg.public_origin + "/api/v1"}]}
    return web.json_response(description)
