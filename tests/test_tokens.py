"""Attacks on the reset token: forgery, tampering, expiry, reuse, races, rotation."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.reset.tokens import AUDIENCE, TokenCodec, derive_key
from resetd.users import fingerprint

from .db_rows import record_token
from .helpers import (
    CSRF_RE,
    GOOD_PASSWORD,
    NEW_PASSWORD,
    TEST_SECRET,
    ConfigFactory,
    add_user,
    csrf_from,
    request_reset,
    set_new_password,
    token_in,
)
from .relays import Relay

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

INVALID = "invalid or has expired"


async def mailed_token(
    client: TestClient[Any, Any], relay: Relay, email: str = "susan@example.com"
) -> str:
    def resets() -> list[Any]:
        return [r for r in relay.received if "Reset" in str(r.message["Subject"])]

    before = len(resets())
    resp = await request_reset(client, email)
    assert resp.status == 303
    deadline = time.monotonic() + 10
    while len(resets()) <= before:
        assert time.monotonic() < deadline, "no reset mail arrived"
        await asyncio.sleep(0.02)
    return token_in(resets()[-1])


async def assert_rejected(client: TestClient[Any, Any], token: str) -> None:
    resp = await client.get(f"/reset_password/{token}", allow_redirects=False)
    assert resp.status in (400, 404)
    if resp.status == 400:
        assert INVALID in await resp.text()


def b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def test_used_token_is_rejected(rclient: TestClient[Any, Any], relay: Relay) -> None:
    await add_user(rclient.app)
    token = await mailed_token(rclient, relay)
    assert (await set_new_password(rclient, token)).status == 303
    await assert_rejected(rclient, token)
    resp = await rclient.post(
        f"/reset_password/{token}",
        data={
            "csrf_token": await csrf_from(rclient, "/login"),
            "password": "x" * 20,
            "password2": "x" * 20,
        },
        allow_redirects=False,
    )
    assert resp.status == 400


async def test_get_and_head_of_the_link_never_consume_it(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    await add_user(rclient.app)
    token = await mailed_token(rclient, relay)
    for _ in range(3):
        assert (await rclient.head(f"/reset_password/{token}", allow_redirects=False)).status == 303
        assert (await rclient.get(f"/reset_password/{token}", allow_redirects=False)).status == 303
    assert (await set_new_password(rclient, token)).status == 303


async def test_tampered_token_is_rejected(rclient: TestClient[Any, Any], relay: Relay) -> None:
    user = await add_user(rclient.app)
    other = await add_user(rclient.app, "mallory", "mallory@example.com")
    token = await mailed_token(rclient, relay)
    header, payload, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["reset_password"] = other.id
    assert claims["reset_password"] != user.id
    await assert_rejected(rclient, f"{header}.{b64(claims)}.{sig}")
    await assert_rejected(rclient, f"{header}.{payload}.{sig[:-2]}AA")


async def test_alg_none_and_other_algorithms_are_rejected(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    await add_user(rclient.app)
    token = await mailed_token(rclient, relay)
    claims = jwt.decode(token, options={"verify_signature": False})
    await assert_rejected(rclient, f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.")
    key = derive_key(TEST_SECRET)
    await assert_rejected(rclient, jwt.encode(claims, key * 2, algorithm="HS512"))


async def test_token_signed_with_the_raw_secret_or_another_key_is_rejected(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    user = await add_user(rclient.app)
    claims = {
        "reset_password": user.id,
        "exp": int(time.time()) + 600,
        "iat": int(time.time()),
        "jti": "abcdefghijklmnop",
        "aud": AUDIENCE,
        "fp": fingerprint(user),
    }
    await assert_rejected(rclient, jwt.encode(claims, TEST_SECRET, algorithm="HS256"))
    # jku/kid pointing elsewhere do not choose the key.
    attacker = "attacker-key-0123456789-0123456789"
    forged = jwt.encode(
        claims,
        attacker,
        algorithm="HS256",
        headers={"kid": "../../dev/null", "jku": "http://127.0.0.1:1/k"},
    )
    await assert_rejected(rclient, forged)


async def test_missing_claims_and_other_purposes_are_rejected(
    rclient: TestClient[Any, Any],
) -> None:
    user = await add_user(rclient.app)
    key = derive_key(TEST_SECRET)
    full = {
        "reset_password": user.id,
        "exp": int(time.time()) + 600,
        "iat": int(time.time()),
        "jti": "abcdefghijklmnop",
        "aud": AUDIENCE,
        "fp": fingerprint(user),
    }
    for missing in ("exp", "iat", "jti", "aud", "fp"):
        claims = {k: v for k, v in full.items() if k != missing}
        await assert_rejected(rclient, jwt.encode(claims, key, algorithm="HS256"))
    await assert_rejected(
        rclient, jwt.encode({**full, "aud": "resetd:verify_email"}, key, algorithm="HS256")
    )
    # A key derived for another purpose from the same secret never passes.
    other_key = derive_key(TEST_SECRET, b"resetd session v1")
    await assert_rejected(rclient, jwt.encode(full, other_key, algorithm="HS256"))


async def test_expired_token_is_rejected(rclient: TestClient[Any, Any]) -> None:
    user = await add_user(rclient.app)
    codec: TokenCodec = rclient.app[keys.codec]
    token, claims = codec.mint(user.id, fingerprint(user), now=time.time() - 3600)
    await record_token(rclient.app, claims)
    await assert_rejected(rclient, token)


async def test_token_not_in_the_ledger_is_rejected(rclient: TestClient[Any, Any]) -> None:
    user = await add_user(rclient.app)
    token, _ = rclient.app[keys.codec].mint(user.id, fingerprint(user))
    await assert_rejected(rclient, token)


@pytest.mark.parametrize("bad", ["x" * 5000, "é" * 20, "a.b.c", "%00"])
async def test_oversized_non_ascii_and_garbage_tokens_get_a_fast_4xx(
    rclient: TestClient[Any, Any], bad: str
) -> None:
    started = time.perf_counter()
    resp = await rclient.get(f"/reset_password/{bad}", allow_redirects=False)
    assert 400 <= resp.status < 500
    assert time.perf_counter() - started < 2


async def test_empty_token_is_a_4xx(rclient: TestClient[Any, Any]) -> None:
    resp = await rclient.get("/reset_password/", allow_redirects=False)
    assert 400 <= resp.status < 500


async def test_password_change_kills_outstanding_tokens(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    user = await add_user(rclient.app)
    first = await mailed_token(rclient, relay)
    second = await mailed_token(rclient, relay)
    assert (await set_new_password(rclient, second)).status == 303
    await assert_rejected(rclient, first)
    # Also when the password changes by another route (CLI, host app).
    third = await mailed_token(rclient, relay)
    await rclient.app[keys.users].set_password_hash(
        user.id, await rclient.app[keys.hasher].hash("another long passphrase here")
    )
    await assert_rejected(rclient, third)


async def test_twenty_concurrent_posts_with_one_token_give_exactly_one_success(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    # Room in the hashing queue for all twenty (one client): the race is at the ledger.
    cfg = make_config(
        dev_inbox={"enabled": False}, mail={"port": relay.port}, limits={"logins_in_progress": 32}
    )
    app = create_app(cfg)
    client = await aiohttp_client(app)
    user = await add_user(app)
    token = await mailed_token(client, relay)
    passwords = [f"concurrent passphrase number {i:02d}" for i in range(20)]

    async def attempt(password: str) -> tuple[str, int]:
        # Each attacker has its own session and posts straight to the token URL.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as c:
            page = await (await c.get(client.make_url("/login"))).text()
            match = CSRF_RE.search(page)
            assert match
            resp = await c.post(
                client.make_url(f"/reset_password/{token}"),
                data={"csrf_token": match.group(1), "password": password, "password2": password},
                allow_redirects=False,
            )
            return password, resp.status

    results = await asyncio.gather(*(attempt(p) for p in passwords))
    winners = [p for p, status in results if status == 303]
    assert len(winners) == 1, results
    assert all(status == 400 for p, status in results if p not in winners)
    stored = await app[keys.users].get(user.id)
    assert stored is not None
    assert await app[keys.hasher].verify(stored.password_hash, winners[0])
    assert not await app[keys.hasher].verify(stored.password_hash, GOOD_PASSWORD)


async def test_token_signed_with_a_fallback_secret_still_works(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    old = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(old))
    await add_user(client.app)
    token = await mailed_token(client, relay)
    await client.close()
    rotated = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port},
        server={
            "secret_key": "a-brand-new-secret-key-0123456789abcdef",
            "secret_key_fallbacks": [TEST_SECRET],
        },
    )
    client2 = await aiohttp_client(create_app(rotated))
    assert (await set_new_password(client2, token, NEW_PASSWORD)).status == 303


async def test_failed_posts_burn_the_token(rclient: TestClient[Any, Any], relay: Relay) -> None:
    await add_user(rclient.app)
    token = await mailed_token(rclient, relay)
    for _ in range(4):
        resp = await set_new_password(rclient, token, "short")
        assert resp.status == 400
        assert "at least 15 characters" in await resp.text()
    resp = await set_new_password(rclient, token, "short")  # the 5th failure burns it
    assert INVALID in await resp.text()
    assert (await set_new_password(rclient, token)).status == 400


async def test_every_refused_use_of_a_link_is_audited_with_its_reason(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    user = await add_user(rclient.app)
    burned = await mailed_token(rclient, relay)
    for _ in range(5):
        await set_new_password(rclient, burned, "short")
    used = await mailed_token(rclient, relay)
    assert (await set_new_password(rclient, used)).status == 303
    await assert_rejected(rclient, used)
    resp = await rclient.get("/reset_password", allow_redirects=False)
    assert resp.status == 400 and resp.headers["Referrer-Policy"] == "no-referrer"
    rejected = [
        (e.outcome, e.user_id)
        for e in reversed(await rclient.app[keys.audit].recent())
        if e.event == "token_use"
    ]
    assert rejected == [
        ("rejected: burned after too many failed attempts", str(user.id)),
        ("rejected: used", None),
        ("rejected: no token in session", None),
    ]
