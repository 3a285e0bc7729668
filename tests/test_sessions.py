"""Signed-in sessions end on the server: signing out ends every copy of the
cookie on every instance and after restarts, and sessions have an idle and an
absolute lifetime, longer with "remember me"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.config import ConfigError
from resetd.sessions import COOKIE_NAME

from .db_rows import db_rows
from .helpers import GOOD_PASSWORD, ConfigFactory, add_user, csrf_from
from .relays import Relay
from .signin_helpers import Clock, login_csrf, post_login
from .test_tokens import mailed_token

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

IDLE, MAX_AGE = 30 * 60, 12 * 3600
REMEMBER_IDLE, REMEMBER_MAX_AGE = 7 * 86400, 30 * 86400


@pytest.fixture
async def replay() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that sends only the cookie it is given (a stolen or saved copy)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def signed_in_cookie(client: TestClient[Any, Any], remember: bool = False) -> str:
    resp = await post_login(
        client, await login_csrf(client), "susan", GOOD_PASSWORD, remember=remember
    )
    assert resp.status == 303
    return resp.cookies[COOKIE_NAME].value


async def home_with(
    replay: aiohttp.ClientSession, client: TestClient[Any, Any], cookie: str
) -> int:
    """GET / with only ``cookie``: 200 signed in, 302 to /login signed out."""
    async with replay.get(
        client.make_url("/"), headers={"Cookie": f"{COOKIE_NAME}={cookie}"}, allow_redirects=False
    ) as resp:
        return resp.status


async def sign_out(client: TestClient[Any, Any]) -> None:
    csrf = await csrf_from(client, "/")
    resp = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303


async def test_a_cookie_saved_before_logout_is_refused_after_it_everywhere(
    aiohttp_client: Any, make_config: ConfigFactory, replay: aiohttp.ClientSession
) -> None:
    cfg = make_config(dev_inbox={"enabled": False})
    first = await aiohttp_client(create_app(cfg))
    second = await aiohttp_client(create_app(cfg))  # another instance on the same database
    await add_user(first.app)
    saved = await signed_in_cookie(first)
    assert await home_with(replay, first, saved) == 200
    assert await home_with(replay, second, saved) == 200

    await sign_out(first)
    assert [e.outcome for e in await first.app[keys.audit].recent() if e.event == "logout"] == [
        "success"
    ]
    assert await home_with(replay, first, saved) == 302
    assert await home_with(replay, second, saved) == 302

    await first.close()
    await second.close()
    restarted = await aiohttp_client(create_app(cfg))
    assert await home_with(replay, restarted, saved) == 302


async def test_a_session_ends_after_its_idle_lifetime(
    aiohttp_client: Any, make_config: ConfigFactory, replay: aiohttp.ClientSession
) -> None:
    clock = Clock()
    client = await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}), clock=clock)
    )
    await add_user(client.app)
    cookie = await signed_in_cookie(client)
    for _ in range(3):  # activity keeps it alive, well past one idle lifetime
        clock.advance(IDLE - 90)
        assert await home_with(replay, client, cookie) == 200
    clock.advance(IDLE)
    assert await home_with(replay, client, cookie) == 302
    assert await db_rows(client.app).fetchall("SELECT * FROM sessions") == []


async def test_a_session_ends_at_its_absolute_lifetime_however_active(
    aiohttp_client: Any, make_config: ConfigFactory, replay: aiohttp.ClientSession
) -> None:
    clock = Clock()
    client = await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}), clock=clock)
    )
    await add_user(client.app)
    cookie = await signed_in_cookie(client)
    step = IDLE // 2
    for _ in range(MAX_AGE // step - 1):
        clock.advance(step)
        assert await home_with(replay, client, cookie) == 200
    clock.advance(step)
    assert await home_with(replay, client, cookie) == 302


async def test_remember_me_gives_the_longer_lifetimes_and_a_lasting_cookie(
    aiohttp_client: Any, make_config: ConfigFactory, replay: aiohttp.ClientSession
) -> None:
    clock = Clock()
    client = await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}), clock=clock)
    )
    await add_user(client.app)
    plain = await post_login(client, await login_csrf(client), "susan", GOOD_PASSWORD)
    assert plain.cookies[COOKIE_NAME]["max-age"] == ""  # gone when the browser closes
    client.session.cookie_jar.clear()
    resp = await post_login(client, await login_csrf(client), "susan", GOOD_PASSWORD, remember=True)
    assert resp.status == 303
    assert resp.cookies[COOKIE_NAME]["max-age"] == str(REMEMBER_MAX_AGE)
    cookie = resp.cookies[COOKIE_NAME].value

    clock.advance(IDLE + 60)  # past the plain idle lifetime
    assert await home_with(replay, client, cookie) == 200
    clock.advance(6 * 86400)
    assert await home_with(replay, client, cookie) == 200
    clock.advance(REMEMBER_IDLE)
    assert await home_with(replay, client, cookie) == 302


async def test_a_remembered_cookie_keeps_lasting_when_it_is_rewritten(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    await signed_in_cookie(client, remember=True)
    token = await mailed_token(client, relay)
    resp = await client.get(f"/reset_password/{token}", allow_redirects=False)
    assert resp.status == 303  # the token moved into the session: a new cookie
    assert resp.cookies[COOKIE_NAME]["max-age"] == str(REMEMBER_MAX_AGE)
    assert (await client.get("/", allow_redirects=False)).status == 200


async def test_remembered_sessions_still_end_at_their_absolute_lifetime(
    aiohttp_client: Any, make_config: ConfigFactory, replay: aiohttp.ClientSession
) -> None:
    clock = Clock()
    client = await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}), clock=clock)
    )
    await add_user(client.app)
    cookie = await signed_in_cookie(client, remember=True)
    for _ in range(4):
        clock.advance(REMEMBER_IDLE - 3600)
        assert await home_with(replay, client, cookie) == 200
    clock.advance(REMEMBER_MAX_AGE - 4 * (REMEMBER_IDLE - 3600))
    assert await home_with(replay, client, cookie) == 302


async def test_shorter_configured_lifetimes_apply_to_sessions_already_open(
    aiohttp_client: Any, make_config: ConfigFactory, replay: aiohttp.ClientSession
) -> None:
    clock = Clock()
    client = await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}), clock=clock)
    )
    await add_user(client.app)
    cookie = await signed_in_cookie(client)
    await client.close()
    shorter = make_config(dev_inbox={"enabled": False}, server={"session_idle": 300})
    client = await aiohttp_client(create_app(shorter, clock=clock))
    clock.advance(301)
    assert await home_with(replay, client, cookie) == 302


async def test_signing_in_again_ends_the_previous_session(
    aiohttp_client: Any, make_config: ConfigFactory, replay: aiohttp.ClientSession
) -> None:
    client = await aiohttp_client(create_app(make_config(dev_inbox={"enabled": False})))
    await add_user(client.app)
    first = await signed_in_cookie(client)
    second = await signed_in_cookie(client)  # same browser, cookie still signed in
    assert await home_with(replay, client, first) == 302
    assert await home_with(replay, client, second) == 200


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({"session_idle": 10}, "[server] session_idle: expected 60-31622400 seconds, got 10"),
        (
            {"session_idle": 7200, "session_max_age": 3600},
            "[server] session_idle: must not exceed [server] session_max_age",
        ),
        (
            {"session_remember_max_age": 3600},
            "[server] session_remember_idle: must not exceed [server] session_remember_max_age",
        ),
        (
            {"session_remember_idle": 600},
            "[server] session_idle: must not exceed [server] session_remember_idle",
        ),
    ],
)
def test_bad_session_lifetimes_are_one_line_naming_the_key(
    make_config: ConfigFactory, server: dict[str, int], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(server=server)
    assert expected in str(info.value)


def test_bad_sign_in_limits_are_one_line_naming_the_key(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match=r"^\[limits\] logins_in_progress_per_ip: expected"):
        make_config(limits={"logins_in_progress_per_ip": 0})
    with pytest.raises(
        ConfigError, match=r"^\[limits\] failed_logins_per_ip_window: expected at most 86400"
    ):
        make_config(limits={"failed_logins_per_ip_window": 90000})
