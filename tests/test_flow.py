"""End to end: request a link, receive the mail over real SMTP, set a new password."""

from __future__ import annotations

from typing import Any

import pytest

from resetd import keys
from resetd.app import create_app

from .helpers import (
    GOOD_PASSWORD,
    LINK_RE,
    NEW_PASSWORD,
    ConfigFactory,
    add_user,
    csrf_from,
    request_reset,
)
from .relays import Relay

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL


async def test_reset_flow_through_a_real_relay(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    relay = Relay()
    port = await relay.start()
    try:
        cfg = make_config(dev_inbox={"enabled": False}, mail={"port": port})
        client = await aiohttp_client(create_app(cfg))
        user = await add_user(client.app)

        resp = await request_reset(client, "Susan@Example.com ")
        assert resp.status == 303
        assert resp.headers["Location"] == "/login?notice=reset-sent"

        [mail] = await relay.wait_for(1)
        msg = mail.message
        assert mail.rcpt_tos == ["susan@example.com"]
        assert "Reset" in msg["Subject"]
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        token = LINK_RE.search(text).group(1)
        assert token in html

        # The link moves the token into the session and redirects to a token-free URL.
        resp = await client.get(f"/reset_password/{token}", allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"] == "/reset_password"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        csrf = await csrf_from(client, "/reset_password")
        resp = await client.post(
            "/reset_password",
            data={"csrf_token": csrf, "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
            allow_redirects=False,
        )
        assert resp.status == 303
        assert resp.headers["Location"] == "/login"
        page = await (await client.get("/login")).text()
        assert "Your password has been reset" in page

        stored = await client.app[keys.users].get(user.id)
        hasher = client.app[keys.hasher]
        assert await hasher.verify(stored.password_hash, NEW_PASSWORD)
        assert not await hasher.verify(stored.password_hash, GOOD_PASSWORD)

        # Not signed in by the reset itself.
        resp = await client.get("/", allow_redirects=False)
        assert resp.status == 302

        # The link is dead now.
        resp = await client.get(f"/reset_password/{token}", allow_redirects=False)
        assert resp.status == 400
        assert "invalid or has expired" in await resp.text()

        # Signing in with the new password works and shows the username.
        csrf = await csrf_from(client, "/login")
        resp = await client.post(
            "/login", data={"csrf_token": csrf, "username": "susan", "password": NEW_PASSWORD}
        )
        assert resp.status == 200
        assert "susan" in await resp.text()
        assert str(resp.url).endswith("/")
    finally:
        await relay.stop()
