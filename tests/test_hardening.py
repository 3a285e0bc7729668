"""Sessions, password policy, notification, headers, hash formats, audit, logs."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.passwords import werkzeug_scrypt_hash

from .helpers import (
    CSRF_RE,
    GOOD_PASSWORD,
    NEW_PASSWORD,
    ConfigFactory,
    add_user,
    csrf_from,
    eventually,
    set_new_password,
    sign_in,
)
from .relays import Relay
from .sqlite_rows import app_db
from .test_config import run_cli
from .test_tokens import mailed_token


async def test_reset_signs_out_every_existing_session(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    await add_user(rclient.app)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as victim:
        page = await (await victim.get(rclient.make_url("/login"))).text()
        match = CSRF_RE.search(page)
        assert match
        resp = await victim.post(
            rclient.make_url("/login"),
            data={"csrf_token": match.group(1), "username": "susan", "password": GOOD_PASSWORD},
        )
        assert resp.status == 200 and "Hi, susan" in await resp.text()

        token = await mailed_token(rclient, relay)
        assert (await set_new_password(rclient, token)).status == 303

        resp = await victim.get(rclient.make_url("/"), allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/login"


async def test_login_rejects_wrong_password_and_unknown_user_with_one_message(
    rclient: TestClient[Any, Any],
) -> None:
    await add_user(rclient.app)
    wrong = await sign_in(rclient, "susan", "not the password at all")
    unknown = await sign_in(rclient, "nobody", "not the password at all")
    assert wrong.status == unknown.status == 400
    assert "Invalid username or password." in await wrong.text()
    assert "Invalid username or password." in await unknown.text()
    assert (await sign_in(rclient, "SUSAN@example.com", GOOD_PASSWORD)).status == 303


async def test_anonymous_index_redirects_to_login_and_logout_needs_csrf(
    rclient: TestClient[Any, Any],
) -> None:
    resp = await rclient.get("/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/login"
    await add_user(rclient.app)
    assert (await sign_in(rclient, "susan", GOOD_PASSWORD)).status == 303
    assert (await rclient.post("/logout", allow_redirects=False)).status == 400
    assert (await rclient.get("/", allow_redirects=False)).status == 200
    csrf = await csrf_from(rclient, "/")
    resp = await rclient.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303
    assert (await rclient.get("/", allow_redirects=False)).status == 302


@pytest.mark.parametrize(
    ("password", "password2", "field", "message"),
    [
        ("short pass", "short pass", "password", "at least 15 characters"),
        ("susan@example.com", "susan@example.com", "password", "too similar"),
        ("susan-susan-susan", "susan-susan-susan", "password", "too similar"),
        ("a long enough passphrase", "a different passphrase!", "password2", "do not match"),
        ("x" * 300, "x" * 300, "password", "at most 256"),
    ],
)
async def test_password_policy_errors_appear_next_to_the_field(
    rclient: TestClient[Any, Any],
    relay: Relay,
    password: str,
    password2: str,
    field: str,
    message: str,
) -> None:
    await add_user(rclient.app)
    token = await mailed_token(rclient, relay)
    resp = await set_new_password(rclient, token, password, password2)
    assert resp.status == 400
    page = await resp.text()
    assert message in page
    # the error is shown right after its field's input
    after_field = page[page.index(f'id="{field}"') :]
    assert re.search(r'^[^<]*<p class="field-error">[^<]*' + re.escape(message), after_field)


async def test_common_passwords_are_refused_and_long_passphrases_accepted(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(
        dev_inbox={"enabled": False}, mail={"port": relay.port}, passwords={"min_length": 8}
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    token = await mailed_token(client, relay)
    resp = await set_new_password(client, token, "password1")
    assert resp.status == 400 and "too common" in await resp.text()
    long = "a passphrase that keeps going " * 6  # 180 characters, kept whole
    assert (await set_new_password(client, token, long)).status == 303
    user = await client.app[keys.users].find_by_login("susan")
    assert user is not None
    assert await client.app[keys.hasher].verify(user.password_hash, long)
    assert not await client.app[keys.hasher].verify(user.password_hash, long[:72])


async def test_successful_reset_sends_a_changed_notice_without_a_link(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    await add_user(rclient.app)
    token = await mailed_token(rclient, relay)
    assert (await set_new_password(rclient, token)).status == 303

    async def notice_arrived() -> bool:
        return any("changed" in str(r.message["Subject"]) for r in relay.received)

    await eventually(notice_arrived)
    notice = next(r for r in relay.received if "changed" in str(r.message["Subject"]))
    assert notice.rcpt_tos == ["susan@example.com"]
    assert notice.message.get_content_type() == "multipart/alternative"
    text = notice.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "127.0.0.1" in text
    assert "/reset_password/" not in notice.data.decode()


async def test_security_headers_on_every_page(rclient: TestClient[Any, Any]) -> None:
    cookie = (await rclient.get("/login")).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    for path in ("/login", "/reset_password_request", "/nope", "/reset_password/garbage"):
        resp = await rclient.get(path, allow_redirects=False)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "Referrer-Policy" in resp.headers
        assert "Strict-Transport-Security" not in resp.headers  # http public_url


async def test_https_public_url_adds_hsts_and_secure_cookies(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    cfg = make_config(
        server={"public_url": "https://auth.example.com"}, dev_inbox={"enabled": False}
    )
    client = await aiohttp_client(create_app(cfg))
    resp = await client.get("/login")
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Secure" in resp.headers["Set-Cookie"]


async def test_pages_load_nothing_from_third_parties(rclient: TestClient[Any, Any]) -> None:
    for path in ("/login", "/reset_password_request"):
        page = await (await rclient.get(path)).text()
        urls = re.findall(r'(?:src|href|action)="([^"]*)"', page)
        assert urls
        assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls


async def test_werkzeug_hashes_verify_and_are_upgraded_to_argon2_on_login(
    rclient: TestClient[Any, Any],
) -> None:
    users = rclient.app[keys.users]
    user = await users.add("old@example.com", "olduser", werkzeug_scrypt_hash(GOOD_PASSWORD))
    assert (await sign_in(rclient, "olduser", GOOD_PASSWORD)).status == 303
    upgraded = await users.get(user.id)
    assert upgraded is not None and upgraded.password_hash.startswith("$argon2id$")
    assert await rclient.app[keys.hasher].verify(upgraded.password_hash, GOOD_PASSWORD)


async def test_audit_trail_records_the_flow_without_secrets(
    rclient: TestClient[Any, Any], relay: Relay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await add_user(rclient.app)
    token = await mailed_token(rclient, relay)
    await rclient.get("/reset_password/garbage")
    assert (await set_new_password(rclient, token)).status == 303
    events = await rclient.app[keys.audit].recent()
    seen = {(e.event, e.outcome) for e in events}
    assert ("reset_requested", "mail_queued") in seen
    assert ("password_reset", "success") in seen
    assert any(e.event == "token_use" and e.outcome.startswith("rejected") for e in events)
    # Every event a request caused; mail_sent/mail_failed are the outbox worker's.
    assert all(e.client_ip == "127.0.0.1" for e in events if not e.event.startswith("mail_"))
    rows = await app_db(rclient.app).fetchall("SELECT * FROM audit")
    assert token not in repr([tuple(r) for r in rows])
    assert token not in caplog.text
    assert NEW_PASSWORD not in caplog.text

    cfg_file = tmp_path / "cli.toml"
    cfg_file.write_text(
        f'[server]\nsecret_key = "{"k" * 32}"\n'
        f'[database]\npath = "{rclient.app[keys.config].database.path}"\n'
    )
    result = run_cli("audit", "--config", str(cfg_file), cwd=tmp_path)
    assert result.returncode == 0
    assert "password_reset" in result.stdout and "reset_requested" in result.stdout
    assert token not in result.stdout


async def test_changed_argon2_parameters_rehash_on_the_next_login(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    weak = make_config(dev_inbox={"enabled": False})  # the tests' cheap parameters: t=1
    client = await aiohttp_client(create_app(weak))
    user = await add_user(client.app)
    assert ",t=1," in user.password_hash
    await client.close()
    stronger = make_config(dev_inbox={"enabled": False}, passwords={"argon2_time_cost": 3})
    client = await aiohttp_client(create_app(stronger))
    assert (await sign_in(client, "susan", GOOD_PASSWORD)).status == 303
    upgraded = await client.app[keys.users].get(user.id)
    assert upgraded is not None and ",t=3," in upgraded.password_hash
    assert await client.app[keys.hasher].verify(upgraded.password_hash, GOOD_PASSWORD)
