"""``[reset] link_url``: the mailed link points at a front end, built from the
configuration and the token only; the dev inbox still knows it for a reset link."""

from __future__ import annotations

from typing import Any

import pytest

from resetd.app import create_app
from resetd.config import ConfigError
from resetd.reset.compose import reset_link

from .helpers import NEW_PASSWORD, ConfigFactory, add_user, eventually

FRONT = "https://app.example.com/reset#token={token}"


async def test_the_mailed_link_points_at_the_front_end(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(reset={"link_url": FRONT})))
    await add_user(client.app)
    # A Host header of the attacker's choosing changes nothing in the link.
    resp = await client.post(
        "/api/v1/reset-requests",
        json={"email": "susan@example.com"},
        headers={"X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example"},
    )
    assert resp.status == 202

    async def reset_links() -> list[str]:
        resp = await client.get("/dev/inbox/api/v1/message/latest/links")
        if resp.status != 200:
            return []
        links = (await resp.json())["Links"]
        return [link["URL"] for link in links if link["Kind"] == "reset"]

    links: list[str] = await eventually(reset_links)
    assert links and all(u.startswith("https://app.example.com/reset#token=") for u in links)
    message = await (await client.get("/dev/inbox/api/v1/message/latest")).json()
    assert "/reset_password/" not in message["Text"] + message["HTML"]
    assert "evil.example" not in message["Text"] + message["HTML"]
    # The inbox's panel reads the token out of the front end's link.
    page = await (await client.get("/dev/inbox/latest")).text()
    assert 'data-state="valid"' in page
    # And the front end hands the token to the API.
    token = links[0].split("#token=", 1)[1]
    resp = await client.post(
        "/api/v1/password-resets", json={"token": token, "password": NEW_PASSWORD}
    )
    assert resp.status == 204


def test_link_is_the_configured_shape_with_the_token() -> None:
    assert reset_link("http://x.example/auth/", "", "a.b.c") == (
        "http://x.example/auth/reset_password/a.b.c"
    )
    assert reset_link("http://x.example", "http://127.0.0.1:5173/r?t={token}&x=1", "a.b") == (
        "http://127.0.0.1:5173/r?t=a.b&x=1"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/reset",  # no {token}
        "https://app.example.com/{token}#{token}",  # twice
        "http://app.example.com/reset#{token}",  # plain http off this machine
        "https://{token}.example.com/reset",  # the token chooses the host
        "/reset#token={token}",  # not absolute
        "javascript:alert(1)//{token}",
        "https://app.example.com/reset#{token}{x}",
        "https://app.example.com/re set#{token}",
        "https://user@app.example.com/reset#{token}",
    ],
)
def test_a_link_url_that_is_not_a_safe_absolute_url_is_refused(
    make_config: ConfigFactory, url: str
) -> None:
    with pytest.raises(ConfigError, match=r"^\[reset\] link_url: "):
        make_config(reset={"link_url": url})


@pytest.mark.parametrize(
    "url",
    [
        FRONT,
        "https://app.example.com/reset/{token}",
        "http://localhost:5173/reset#token={token}",
        "http://127.0.0.1:5173/reset?token={token}",
    ],
)
def test_https_or_loopback_http_link_urls_are_taken(make_config: ConfigFactory, url: str) -> None:
    assert make_config(reset={"link_url": url}).reset.link_url == url
