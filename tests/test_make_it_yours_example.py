"""The README's whole "Make it yours" example loads as it stands and does what the
README says: a microblog under /auth, its name, Spanish, its own templates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from resetd.app import create_app
from resetd.config_load import load_config

from .helpers import add_user, eventually
from .relays import Relay

README = Path(__file__).resolve().parent.parent / "README.md"
MARK = "<!-- microblog-example -->\n```toml\n"


def example_toml() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(MARK) + len(MARK)
    return text[start : text.index("```", start)]


async def test_the_readme_example_serves_a_spanish_microblog_under_auth(
    aiohttp_client: Any, relay: Relay, tmp_path: Path
) -> None:
    templates, static = tmp_path / "templates", tmp_path / "static"
    (templates / "email").mkdir(parents=True)
    static.mkdir()
    (templates / "email" / "reset_password.txt").write_text(
        "Microblog says: {{ link }} ({{ expires_in }})\n", encoding="utf-8"
    )
    toml = example_toml()
    assert 'site_name = "Microblog"' in toml and "/auth" in toml
    toml = toml.replace("/srv/microblog/resetd-templates", str(templates))
    toml = toml.replace("/srv/microblog/resetd-static", str(static))
    path = tmp_path / "resetd.toml"
    path.write_text(toml, encoding="utf-8")
    env = {"RESETD_SERVER_SECRET_KEY": "s" * 40, "RESETD_WEBHOOKS_SECRET": "w" * 40}
    # Only what a test needs differs: a database in tmp, the test relay, fast hashing.
    cfg = load_config(
        path,
        env,
        overrides={
            "database": {"path": str(tmp_path / "resetd.db")},
            "mail": {"server": "127.0.0.1", "port": relay.port, "use_tls": False},
            "passwords": {"argon2_memory_cost": 8192, "argon2_time_cost": 1},
        },
    )
    assert cfg.prefix == "/auth" and cfg.server.site_name == "Microblog"
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app, "susan", "susan@example.com")

    es = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}
    page = await client.get("/auth/reset_password_request", headers=es)
    assert page.status == 200 and page.headers["Content-Language"] == "es"
    assert "Microblog" in await page.text()
    assert (await client.get("/reset_password_request")).status == 404

    # The session cookie is Secure under an https public_url, so this plain-http
    # client asks through the JSON API, which needs no cookie.
    resp = await client.post(
        "/auth/api/v1/reset-requests", json={"email": "susan@example.com"}, headers=es
    )
    assert resp.status == 202
    await eventually(lambda: _got(relay))
    (mail,) = relay.received
    msg = mail.message
    assert msg["Subject"] == "[Microblog] Restablece tu contraseña"
    assert msg["From"] == "Microblog <no-reply@example.com>"
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert text.startswith("Microblog says: https://www.example.com/auth/reset_password/")
    assert re.search(r"\(\d+ minutos\)", text), text


async def _got(relay: Relay) -> bool:
    return bool(relay.received)
