"""A path of its own: with ``public_url = "http://localhost:8080/auth"`` every
route, link, redirect, form, cookie and the dev inbox live under ``/auth``, and
nothing is answered outside it. The shipped default (no path) is unchanged."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd.app import create_app
from resetd.config import ConfigError
from resetd.reset.tokens import TokenState

from .helpers import GOOD_PASSWORD, NEW_PASSWORD, ConfigFactory, add_user, eventually
from .sqlite_rows import app_db

P = "/auth"
BASE = "http://localhost:8080/auth"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def pclient(aiohttp_client: Any, make_config: ConfigFactory) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(make_config(server={"public_url": BASE + "/"}))
    )
    return client


async def _csrf(client: TestClient[Any, Any], path: str) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == 200, (path, resp.status)
    match = CSRF_RE.search(text)
    assert match, path
    return match.group(1)


async def test_every_page_and_asset_is_served_under_the_path(
    pclient: TestClient[Any, Any],
) -> None:
    for path in (
        "/login",
        "/reset_password_request",
        "/static/resetd.css",
        "/static/inbox.js",
        "/readyz",
        "/dev/inbox",
        "/dev/inbox/api/v1/messages",
        "/dev/inbox/livez",
    ):
        resp = await pclient.get(P + path, allow_redirects=False)
        assert resp.status == 200, (P + path, resp.status)


async def test_nothing_is_answered_outside_the_path(pclient: TestClient[Any, Any]) -> None:
    for path in (
        "/",
        "/login",
        "/reset_password_request",
        "/reset_password",
        "/static/resetd.css",
        "/readyz",
        "/dev/inbox",
        "/dev/inbox/api/v1/messages",
        "/authx/login",
    ):
        resp = await pclient.get(path, allow_redirects=False)
        assert resp.status == 404, (path, resp.status)
    resp = await pclient.post("/reset_password_request", data={"email": "a@example.com"})
    assert resp.status == 404
    row = await app_db(pclient.app).fetchone("SELECT COUNT(*) AS n FROM reset_requests")
    assert row is not None and row["n"] == 0  # nothing was queued outside the path


async def test_the_inbox_under_the_path_keeps_its_local_only_rule(
    pclient: TestClient[Any, Any],
) -> None:
    for path in ("/dev/inbox", "/dev/inbox/api/v1/messages", "/dev/inbox/events"):
        resp = await pclient.get(P + path, headers={"X-Forwarded-For": "203.0.113.7"})
        assert resp.status == 403, path
        resp = await pclient.get(P + path, headers={"Host": "rebind.attacker.example"})
        assert resp.status == 403, path


async def test_pages_link_post_and_load_assets_under_the_path(
    pclient: TestClient[Any, Any],
) -> None:
    page = await (await pclient.get(P + "/login")).text()
    assert 'action="/auth/login"' in page
    assert 'href="/auth/reset_password_request"' in page
    assert 'href="/auth/static/resetd.css"' in page
    assert 'href="/auth/static/favicon.svg"' in page
    assert 'href="/auth/"' in page
    # No link, form or asset leaves the path.
    for url in re.findall(r'(?:href|src|action)="(/[^"]*)"', page):
        assert url.startswith(P + "/"), url
    page = await (await pclient.get(P + "/reset_password_request")).text()
    assert 'action="/auth/reset_password_request"' in page
    assert 'href="/auth/login"' in page
    inbox = await (await pclient.get(P + "/dev/inbox")).text()
    assert '<meta name="resetd-inbox" content="/auth/dev/inbox">' in inbox
    assert 'src="/auth/static/inbox.js"' in inbox
    for url in re.findall(r'(?:href|src|action)="(/[^"]*)"', inbox):
        assert url.startswith(P + "/"), url
    # The bare path leads to the index (and from there to sign-in).
    resp = await pclient.get(P, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/auth/"
    resp = await pclient.get(P + "/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/auth/login"


async def test_reset_flow_under_the_path_with_cookie_path(pclient: TestClient[Any, Any]) -> None:
    app = pclient.app
    await add_user(app)
    csrf = await _csrf(pclient, P + "/reset_password_request")
    [cookie] = [c for c in pclient.session.cookie_jar if c.key == "resetd_session"]
    assert cookie["path"] == "/auth"
    resp = await pclient.post(
        P + "/reset_password_request",
        data={"csrf_token": csrf, "email": "susan@example.com"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/auth/login?notice=reset-sent"

    async def reset_link() -> str | None:
        resp = await pclient.get(P + "/dev/inbox/api/v1/message/latest/links")
        if resp.status != 200:
            return None
        links = (await resp.json())["Links"]
        return next((link["URL"] for link in links if link["Kind"] == "reset"), None)

    link: str = await eventually(reset_link)
    assert link.startswith(BASE + "/reset_password/")
    token = link.rsplit("/", 1)[1]
    # The inbox's panel recognises the link under the path and finds it valid.
    page = await (await pclient.get(P + "/dev/inbox/latest", allow_redirects=True)).text()
    assert str(TokenState.VALID) in page
    assert f'href="{link}"' in page

    resp = await pclient.get(P + f"/reset_password/{token}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/auth/reset_password"
    assert "Path=/auth" in resp.headers["Set-Cookie"]
    form = await (await pclient.get(P + "/reset_password")).text()
    assert 'action="/auth/reset_password"' in form
    csrf = CSRF_RE.search(form).group(1)  # type: ignore[union-attr]
    resp = await pclient.post(
        P + "/reset_password",
        data={"csrf_token": csrf, "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/auth/login"

    csrf = await _csrf(pclient, P + "/login")
    resp = await pclient.post(
        P + "/login",
        data={"csrf_token": csrf, "username": "susan", "password": GOOD_PASSWORD},
        allow_redirects=False,
    )
    assert resp.status == 400  # the old password is gone
    resp = await pclient.post(
        P + "/login",
        data={"csrf_token": csrf, "username": "susan", "password": NEW_PASSWORD},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/auth/"
    assert "Path=/auth" in resp.headers["Set-Cookie"]
    home = await (await pclient.get(P + "/")).text()
    assert 'action="/auth/logout"' in home
    # The "password changed" mail's link stays under the path too.
    mails = await (await pclient.get(P + "/dev/inbox/api/v1/messages")).json()
    assert mails["total"] == 2
    latest = await (await pclient.get(P + "/dev/inbox/api/v1/message/latest")).json()
    assert BASE + "/reset_password_request" in latest["Text"]


async def test_shipped_default_keeps_the_root_and_cookie_path(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/login")
    assert resp.status == 200
    assert "Path=/;" in resp.headers["Set-Cookie"] or resp.headers["Set-Cookie"].endswith("Path=/")
    page = await resp.text()
    assert 'action="/login"' in page and 'href="/static/resetd.css"' in page
    assert '<meta name="resetd-inbox"' not in page
    inbox = await (await client.get("/dev/inbox")).text()
    assert '<meta name="resetd-inbox" content="/dev/inbox">' in inbox


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/auth/../x",
        "http://localhost:8080/a//b",
        "http://localhost:8080/a%2Fb",
        "http://localhost:8080/a b",
        "http://localhost:8080/./a",
    ],
)
def test_a_path_that_is_not_plain_segments_is_refused(make_config: ConfigFactory, url: str) -> None:
    with pytest.raises(ConfigError, match=r"^\[server\] public_url: the path"):
        make_config(server={"public_url": url})


def test_a_plain_path_is_the_prefix(make_config: ConfigFactory) -> None:
    assert make_config(server={"public_url": "https://www.example.com/auth/"}).prefix == "/auth"
    assert make_config(server={"public_url": "https://x.example/a/b-c"}).prefix == "/a/b-c"
    assert make_config(server={"public_url": "https://x.example/"}).prefix == ""
    assert make_config(server={"public_url": "https://x.example"}).prefix == ""
