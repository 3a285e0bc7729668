"""Templates compiled before traffic: no first visitor (or the loop) pays for Jinja."""

from __future__ import annotations

import aiohttp_jinja2
import jinja2
from aiohttp import web

from resetd import keys
from resetd.app import create_app
from resetd.render import warm_templates

from .helpers import ConfigFactory


def cached_names(env: jinja2.Environment) -> set[str]:
    """The names in Jinja's cache of compiled templates."""
    assert env.cache is not None
    return {name for _, name in env.cache.keys()}


def test_every_page_and_mail_template_is_compiled_up_front(
    make_config: ConfigFactory,
) -> None:
    app: web.Application = create_app(make_config())
    pages = aiohttp_jinja2.get_env(app)
    composer = app[keys.composer]
    assert cached_names(pages) == set()

    count = warm_templates(app)
    mails = composer.warm()

    page_names = {n for n in pages.list_templates() if not n.startswith("email/")}
    assert count == len(page_names) and "reset_password_request.html" in page_names
    assert cached_names(pages) == page_names
    assert mails == 4
    assert cached_names(composer._env) == {
        "reset_password.txt",
        "reset_password.html",
        "password_changed.txt",
        "password_changed.html",
    }
