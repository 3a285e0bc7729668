"""``[server] secret_key_fallbacks``: a key rotates one instance at a time.

While some instances already sign with the new key and others still with the
old one, a session cookie or a reset link made by either works on both: the
new key signs, the fallbacks only verify.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from resetd.app import create_app
from resetd.config import ConfigError
from resetd.config_load import load_config
from resetd.sessions import COOKIE_NAME

from .helpers import NEW_PASSWORD, TEST_SECRET, ConfigFactory, add_user, set_new_password
from .relays import Relay
from .test_sessions import home_with, signed_in_cookie
from .test_tokens import mailed_token

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

NEW_SECRET = "a-brand-new-secret-key-0123456789abcdef"


@pytest.fixture
async def replay() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def test_a_session_cookie_from_an_instance_on_the_old_key_stays_signed_in(
    aiohttp_client: Any, make_config: ConfigFactory, replay: aiohttp.ClientSession
) -> None:
    old = await aiohttp_client(create_app(make_config(dev_inbox={"enabled": False})))
    rotated_cfg = make_config(
        dev_inbox={"enabled": False},
        server={"secret_key": NEW_SECRET, "secret_key_fallbacks": [TEST_SECRET]},
    )
    rotated = await aiohttp_client(create_app(rotated_cfg))
    new_only = await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}, server={"secret_key": NEW_SECRET}))
    )
    await add_user(old.app)
    cookie = await signed_in_cookie(old)

    assert await home_with(replay, rotated, cookie) == 200
    assert await home_with(replay, new_only, cookie) == 302  # not without the fallback

    # What the rotated instance writes is under the new key: readable by an
    # instance that has dropped the old one, and by one not rotated yet only
    # when it lists the new key as a fallback (it does not, here).
    fresh = await signed_in_cookie(rotated)
    assert await home_with(replay, new_only, fresh) == 200
    assert await home_with(replay, old, fresh) == 302


async def test_a_form_from_an_instance_on_the_old_key_posts_to_a_rotated_one(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    old = await aiohttp_client(create_app(make_config(dev_inbox={"enabled": False})))
    rotated = await aiohttp_client(
        create_app(
            make_config(
                dev_inbox={"enabled": False},
                server={"secret_key": NEW_SECRET, "secret_key_fallbacks": [TEST_SECRET]},
            )
        )
    )
    form = await old.get("/reset_password_request")
    csrf = (await form.text()).split('name="csrf_token" value="')[1].split('"')[0]
    cookie = form.cookies[COOKIE_NAME].value
    resp = await rotated.post(
        "/reset_password_request",
        data={"csrf_token": csrf, "email": "nobody@example.com"},
        headers={"Cookie": f"{COOKIE_NAME}={cookie}"},
        allow_redirects=False,
    )
    assert resp.status == 303


async def test_a_reset_link_mailed_under_the_old_key_works_on_a_rotated_instance(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    old = await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}, mail={"port": relay.port}))
    )
    await add_user(old.app)
    token = await mailed_token(old, relay)
    new_only = await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}, server={"secret_key": NEW_SECRET}))
    )
    assert (await new_only.get(f"/reset_password/{token}", allow_redirects=False)).status != 303
    rotated = await aiohttp_client(
        create_app(
            make_config(
                dev_inbox={"enabled": False},
                server={"secret_key": NEW_SECRET, "secret_key_fallbacks": [TEST_SECRET]},
            )
        )
    )
    assert (await set_new_password(rotated, token, NEW_PASSWORD)).status == 303


def test_a_short_fallback_key_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "resetd.toml"
    path.write_text(
        f'[server]\nsecret_key = "{"k" * 32}"\nsecret_key_fallbacks = ["{"o" * 32}", "short"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == (
        "[server] secret_key_fallbacks: entry 2 is too short, use at least 32 random characters"
    )
    assert "short" not in str(info.value).replace("too short", "")
