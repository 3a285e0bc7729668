"""The application's own name, templates and static files ([server] site_name,
templates, static), on the real app with mail over real SMTP, and ``resetd
serve`` refusing a template that cannot work."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import pytest

from resetd.app import create_app
from resetd.config import ConfigError
from resetd.reset.compose import MailComposer

from .helpers import ConfigFactory, add_user, request_reset, set_new_password, token_in
from .processes import Server, run_cli, write_config
from .relays import Relay

BASE = """<!doctype html>
<html lang="{{ lang }}">
<head><title>{% block title %}{% endblock %}</title></head>
<body class="microblog">
<div id="app-nav">Microblog: Home · Explore</div>
{% for category, message in flashes %}<p class="flash">{{ message }}</p>{% endfor %}
{% block content %}{% endblock %}
</body>
</html>
"""

RESET_TXT = """Dear {{ username }},

Microblog's own words. Follow {{ link }} within {{ expires_in }}.
"""


def _serve_config(tmp_path: Path, relay_port: int, **server: Any) -> Path:
    return write_config(
        tmp_path / "resetd.toml",
        {
            "server": {
                "host": "127.0.0.1",
                "port": 0,
                "public_url": "http://localhost:8080",
                "secret_key": "k" * 40,
                **server,
            },
            "database": {"path": str(tmp_path / "resetd.db")},
            "mail": {"server": "127.0.0.1", "port": relay_port, "sender": "r <r@example.test>"},
            "passwords": {"argon2_memory_cost": 8192, "argon2_time_cost": 1},
        },
    )


async def test_site_name_is_in_both_subjects_the_title_and_the_header(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(
        server={"site_name": "Microblog"}, dev_inbox={"enabled": False}, mail={"port": relay.port}
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)

    page = await (await client.get("/reset_password_request")).text()
    assert "<title>Reset password · Microblog</title>" in page
    assert re.search(r'class="brand"[^>]*>Microblog</a>', page)
    assert "resetd" not in page.replace("resetd.css", "").replace("resetd_session", "")

    assert (await request_reset(client, "susan@example.com")).status == 303
    [reset] = await relay.wait_for(1)
    assert reset.message["Subject"] == "[Microblog] Reset Your Password"
    # The sender stays [mail] sender.
    assert reset.message["From"] == "resetd <no-reply@example.test>"
    assert "Microblog" in reset.message.get_body(("plain",)).get_content()

    assert (await set_new_password(client, token_in(reset))).status == 303
    [_, changed] = await relay.wait_for(2)
    assert changed.message["Subject"] == "[Microblog] Your password was changed"


async def test_a_site_name_is_escaped_in_pages_and_kept_as_typed_in_the_subject(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    name = "Tom & Jerry's <b>Blog</b> 100% %(link)s"
    cfg = make_config(
        server={"site_name": name}, dev_inbox={"enabled": False}, mail={"port": relay.port}
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    page = await (await client.get("/login", headers={"Accept-Language": "es"})).text()
    assert "Tom &amp; Jerry&#39;s &lt;b&gt;Blog&lt;/b&gt; 100% %(link)s" in page
    assert "<b>Blog</b>" not in page
    await request_reset(client, "susan@example.com", headers={"Accept-Language": "es"})
    [reset] = await relay.wait_for(1)
    assert reset.message["Subject"] == f"[{name}] Restablece tu contraseña"


async def test_without_site_name_everything_still_says_resetd(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    page = await (await client.get("/login")).text()
    assert "<title>Sign in · resetd</title>" in page and '<html lang="en">' in page
    await request_reset(client, "susan@example.com")
    [reset] = await relay.wait_for(1)
    assert reset.message["Subject"] == "[resetd] Reset Your Password"
    text = reset.message.get_body(("plain",)).get_content()
    assert "The link works once and expires in 10 minutes." in text
    assert (await set_new_password(client, token_in(reset))).status == 303
    [_, changed] = await relay.wait_for(2)
    assert changed.message["Subject"] == "[resetd] Your password was changed"
    # English mail stays plain ASCII, its date included.
    for mail in (reset, changed):
        assert b"quoted-printable" not in mail.data and b"7bit" in mail.data
    assert re.search(r"changed on \w+ \d+, \d{4}, \d+:\d\d:\d\d [AP]M UTC", changed.data.decode())


@pytest.mark.parametrize("name", ["", "   ", "Micro\nblog", "x" * 101])
def test_a_site_name_that_cannot_be_a_subject_is_refused(
    make_config: ConfigFactory, name: str
) -> None:
    with pytest.raises(ConfigError, match=r"^\[server\] site_name: "):
        make_config(server={"site_name": name})


@pytest.mark.parametrize("key", ["templates", "static"])
def test_a_missing_override_directory_is_refused(
    make_config: ConfigFactory, tmp_path: Path, key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^\[server\] {key}: not a directory"):
        make_config(server={key: str(tmp_path / "nowhere")})


async def test_a_template_directory_replaces_base_and_the_text_mail_and_nothing_else(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    theirs = tmp_path / "microblog-templates"
    (theirs / "email").mkdir(parents=True)
    (theirs / "base.html").write_text(BASE, encoding="utf-8")
    (theirs / "email" / "reset_password.txt").write_text(RESET_TXT, encoding="utf-8")
    cfg = make_config(
        server={"templates": str(theirs)}, dev_inbox={"enabled": False}, mail={"port": relay.port}
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)

    page = await (await client.get("/reset_password_request")).text()
    # Their base.html around the shipped page's content block.
    assert '<div id="app-nav">Microblog: Home · Explore</div>' in page
    assert 'class="topbar"' not in page
    assert "<h1>Reset password</h1>" in page and 'name="email"' in page

    await request_reset(client, "susan@example.com")
    [mail] = await relay.wait_for(1)
    text = mail.message.get_body(("plain",)).get_content()
    html = mail.message.get_body(("html",)).get_content()
    assert "Microblog's own words. Follow http://localhost:8080/reset_password/" in text
    assert "within 10 minutes." in text
    # The HTML part was not replaced: the shipped one.
    assert "click here</a>" in html and "Microblog's own words" not in html


async def test_a_static_directory_serves_its_files_first_and_shows_its_logo(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path
) -> None:
    static = tmp_path / "microblog-static"
    static.mkdir()
    (static / "resetd.css").write_text("body { color: rebeccapurple }", encoding="utf-8")
    (static / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>", "utf-8")
    (tmp_path / "secret.txt").write_text("not for the web", encoding="utf-8")
    client = await aiohttp_client(create_app(make_config(server={"static": str(static)})))

    resp = await client.get("/static/resetd.css")
    assert resp.status == 200 and "rebeccapurple" in await resp.text()
    resp = await client.get("/static/favicon.svg")  # not theirs: the shipped one
    assert resp.status == 200 and "svg" in await resp.text()
    assert (await client.get("/static/inbox.js")).status == 200
    page = await (await client.get("/login")).text()
    assert '<img class="logo" src="/static/logo.svg" alt="">' in page
    for path in ("/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/.hidden"):
        assert (await client.get(path)).status == 404, path
    (static / "out").symlink_to(tmp_path / "secret.txt")
    assert (await client.get("/static/out")).status == 404


async def test_a_page_template_missing_a_variable_answers_500_without_a_traceback(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path, caplog: Any
) -> None:
    theirs = tmp_path / "t"
    theirs.mkdir()
    (theirs / "login.html").write_text(
        '{% extends "base.html" %}{% block content %}{{ their_variable }}{% endblock %}',
        encoding="utf-8",
    )
    client = await aiohttp_client(create_app(make_config(server={"templates": str(theirs)})))
    resp = await client.get("/login")
    body = await resp.text()
    assert resp.status == 500
    assert "their_variable" not in body and "Traceback" not in body
    assert "'their_variable' is undefined" in caplog.text


def test_a_mail_template_missing_a_variable_raises_instead_of_mailing_a_blank(
    tmp_path: Path,
) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "reset_password.txt").write_text("Hi {{ usernme }}", "utf-8")
    composer = MailComposer("r <r@example.test>", "http://localhost:8080", templates=[tmp_path])
    with pytest.raises(jinja2.UndefinedError, match="usernme"):
        composer.reset_mail("susan", "susan@example.com", "tok", 600)


async def test_serve_shows_the_site_name_in_its_banner(tmp_path: Path, relay: Relay) -> None:
    server = Server(_serve_config(tmp_path, relay.port, site_name="Microblog"), tmp_path)
    try:
        banner = await server.start()
    finally:
        await server.kill()
    assert "resetd is running for Microblog" in banner


@pytest.mark.parametrize("name", ["email/reset_password.html", "base.html"])
async def test_serve_refuses_a_template_that_does_not_compile_naming_file_and_line(
    tmp_path: Path, relay: Relay, name: str
) -> None:
    theirs = tmp_path / "templates"
    (theirs / "email").mkdir(parents=True)
    broken = theirs / name
    broken.write_text("<p>\n{% if username %}\n{{ username }\n</p>\n", encoding="utf-8")
    cfg = _serve_config(tmp_path, relay.port, templates=str(theirs))
    code, out, err = await run_cli("serve", "--config", str(cfg))
    assert code == 2
    assert f"[server] templates: {broken}, line 3: " in err
    assert "Traceback" not in err and "is running" not in out


async def test_serve_refuses_a_template_that_extends_one_that_does_not_exist(
    tmp_path: Path, relay: Relay
) -> None:
    theirs = tmp_path / "templates"
    theirs.mkdir()
    bad = theirs / "login.html"
    bad.write_text('{# ours #}\n{% extends "layout.html" %}\n', encoding="utf-8")
    cfg = _serve_config(tmp_path, relay.port, templates=str(theirs))
    code, _out, err = await run_cli("serve", "--config", str(cfg))
    assert code == 2
    assert f"[server] templates: {bad}, line 2: template 'layout.html' not found" in err


async def test_serve_refuses_a_mail_template_that_needs_a_variable_mail_lacks(
    tmp_path: Path, relay: Relay
) -> None:
    theirs = tmp_path / "templates"
    (theirs / "email").mkdir(parents=True)
    bad = theirs / "email" / "password_changed.txt"
    bad.write_text("Dear {{ username }},\n\nsee {{ app_url }}\n", encoding="utf-8")
    cfg = _serve_config(tmp_path, relay.port, templates=str(theirs))
    code, _out, err = await run_cli("serve", "--config", str(cfg))
    assert code == 2
    assert f"[server] templates: {bad}, line 3: UndefinedError: 'app_url' is undefined" in err
