"""Languages: Accept-Language chooses among [server] languages; pages, error
pages and both mails are in the chosen language, the reset mail in that of the
request that asked for it; the shipped catalogs are complete and compiled."""

from __future__ import annotations

import gettext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from resetd import i18n
from resetd.app import create_app
from resetd.config import ConfigError
from resetd.i18n import MAX_RANGES, SHIPPED, choose

from .helpers import (
    ConfigFactory,
    add_user,
    csrf_from,
    request_reset,
    set_new_password,
    token_in,
)
from .relays import Relay

REPO = Path(__file__).resolve().parent.parent
ES = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("es", "es"),
        ("es-MX", "es"),
        ("ES_ar", "es"),
        ("fr-CA, fr;q=0.9, es;q=0.8, en;q=0.7", "es"),
        ("en;q=0.2, es;q=0.9", "es"),
        ("es;q=0, en", "en"),
        ("de, fr", "en"),  # nothing offered: the first offered
        ("*", "en"),
        ("es;q=abc, en;q=0.5", "en"),  # a malformed q counts as 0
        ("es;q=1e5, en;q=0.1", "en"),
        ("es;q=nan, en;q=0.1", "en"),
        ("es;q=1.5, en;q=0.1", "en"),
        ("es ; q = 0.8 , en ; q = 0.7", "es"),
    ],
)
def test_accept_language_picks_the_preferred_offered_language(
    header: str | None, expected: str
) -> None:
    assert choose(header, SHIPPED) == expected


def test_accept_language_reads_only_its_first_ranges_and_characters() -> None:
    # A hostile header: only MAX_RANGES ranges (and MAX_HEADER characters) are
    # looked at, so a matching range past them is never reached.
    assert choose("xx," * MAX_RANGES + "es", SHIPPED) == "en"
    assert choose("xx," * (MAX_RANGES - 1) + "es", SHIPPED) == "es"
    assert choose(" " * 600 + "es", SHIPPED) == "en"
    for hostile in (";" * 100_000, "q=" * 100_000, "es;q=" + "9" * 100_000, "-" * 100_000):
        assert choose(hostile, SHIPPED) == "en"


def test_the_first_configured_language_is_the_default(make_config: ConfigFactory) -> None:
    cfg = make_config(server={"languages": ["es"]})
    assert cfg.languages == ("es",)
    assert choose("en", cfg.languages) == "es"


@pytest.mark.parametrize("languages", [["fr"], ["en", "en"]])
def test_a_language_that_is_not_shipped_is_refused(
    make_config: ConfigFactory, languages: list[str]
) -> None:
    with pytest.raises(ConfigError, match=r"^\[server\] languages: "):
        make_config(server={"languages": languages})


async def test_pages_are_in_spanish_for_a_spanish_browser_and_say_so(client: Any) -> None:
    resp = await client.get("/login", headers=ES)
    page = await resp.text()
    assert '<html lang="es">' in page
    assert "<title>Iniciar sesión · resetd</title>" in page
    assert "¿Olvidaste tu contraseña?" in page and "Recordarme" in page
    assert resp.headers["Content-Language"] == "es"
    assert "Accept-Language" in resp.headers["Vary"]

    page = await (await client.get("/reset_password_request", headers=ES)).text()
    assert "Solicitar restablecimiento de contraseña" in page

    resp = await client.get("/login")
    assert '<html lang="en">' in await resp.text()
    assert resp.headers["Content-Language"] == "en"


async def test_error_pages_and_form_errors_are_in_spanish(client: Any) -> None:
    resp = await client.get("/no/such/page", headers=ES)
    assert resp.status == 404 and "Página no encontrada" in await resp.text()

    resp = await client.get("/reset_password/not-a-token", headers=ES)
    assert resp.status == 400
    assert "Este enlace no es válido o ha caducado" in await resp.text()

    csrf = await csrf_from(client, "/login")
    resp = await client.post(
        "/login", data={"csrf_token": csrf, "username": "", "password": ""}, headers=ES
    )
    assert resp.status == 400 and "Este campo es obligatorio." in await resp.text()

    resp = await client.post("/login", data={"username": "x"}, headers=ES)  # no CSRF token
    assert resp.status == 400 and "Este formulario ha caducado" in await resp.text()


async def test_the_reset_mail_is_in_the_language_of_the_request_that_asked(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    await add_user(client.app, "tom", "tom@example.com")

    resp = await request_reset(client, "susan@example.com", headers=ES)
    assert resp.status == 303
    [es] = await relay.wait_for(1)
    await request_reset(client, "tom@example.com")
    [_, en] = await relay.wait_for(2)

    assert es.message["Subject"] == "[resetd] Restablece tu contraseña"
    text = es.message.get_body(("plain",)).get_content()
    html = es.message.get_body(("html",)).get_content()
    assert "Hola, susan:" in text
    assert "El enlace funciona una sola vez y caduca en 10 minutos." in text
    assert '<html lang="es">' in html and "haz clic aquí</a>" in html
    assert en.message["Subject"] == "[resetd] Reset Your Password"
    assert "expires in 10 minutes" in en.message.get_body(("plain",)).get_content()

    # The page that follows the link, its errors and the notice: Spanish too.
    token = token_in(es)
    resp = await client.get(f"/reset_password/{token}", headers=ES)
    assert "Elige una contraseña nueva" in await resp.text()
    csrf = await csrf_from(client, "/reset_password")
    resp = await client.post(
        "/reset_password",
        data={"csrf_token": csrf, "password": "short", "password2": "short"},
        headers=ES,
    )
    assert resp.status == 400 and "Usa al menos 15 caracteres (llevas 5)." in await resp.text()


async def test_the_password_changed_mail_is_in_the_language_of_the_reset(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    await request_reset(client, "susan@example.com", headers=ES)
    [reset] = await relay.wait_for(1)
    client.session.headers.update(ES)  # the browser that follows the link is Spanish
    assert (await set_new_password(client, token_in(reset))).status == 303
    [_, changed] = await relay.wait_for(2)
    assert changed.message["Subject"] == "[resetd] Tu contraseña ha cambiado"
    text = changed.message.get_body(("plain",)).get_content()
    assert "La contraseña de tu cuenta se cambió el " in text
    year = datetime.now(UTC).year
    assert f" de {year}, " in text and " UTC\r\ndesde la dirección IP 127.0.0.1" in text
    page = await (await client.get("/login")).text()
    assert "Tu contraseña se ha restablecido." in page


TRANS_CASES = [
    "{% trans %}Sincerely,{% endtrans %}",
    "{% trans %}Dear {{ username }},{% endtrans %}",
    "{% trans %}100%% sure, {{ username }}{% endtrans %}",
    "{% trans %}100% sure{% endtrans %}",
    '{% trans %}To reset your password <a href="{{ link }}">click here</a>.{% endtrans %}',
    "{% trans n=count %}{{ n }} minute{% pluralize %}{{ n }} minutes{% endtrans %}",
    "{{ _('Sincerely,') }} {{ gettext('Dear %(username)s,', username=username) }}",
    "{{ ngettext('%(num)d minute', '%(num)d minutes', count) }}",
]


@pytest.mark.parametrize("autoescape", [True, False])
@pytest.mark.parametrize("lang", SHIPPED)
def test_templates_translate_as_with_jinjas_own_newstyle_gettext(
    autoescape: bool, lang: str
) -> None:
    """i18n.install calls the catalog without Jinja's wrappers: every form of
    trans, with variables to escape or not, plurals and literal percent signs,
    renders exactly as Jinja's own newstyle callables render it."""
    ours = jinja2.Environment(autoescape=autoescape)
    i18n.install(ours)
    jinjas = jinja2.Environment(autoescape=autoescape, extensions=["jinja2.ext.i18n"])
    jinjas.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    for source in TRANS_CASES:
        for count in (1, 5):
            ctx = {"username": "<b>Zoë & 'x' %(y)s 100%</b>", "count": count, "link": "/r?a=1&b"}
            with i18n.using(lang):
                expected = jinjas.from_string(source).render(ctx)
                assert ours.from_string(source).render(ctx) == expected, source


def test_dates_and_the_expiry_read_naturally_in_each_language() -> None:
    moment = datetime(2026, 12, 2, 16, 55, tzinfo=UTC)
    assert i18n.when(moment, "en") == "December 2, 2026, 4:55:00 PM UTC"
    assert i18n.when(moment, "es") == "2 de diciembre de 2026, 16:55:00 UTC"
    assert i18n.expires_in(600, "en") == "10 minutes"
    assert i18n.expires_in(600, "es") == "10 minutos"
    assert i18n.expires_in(3600, "es") == "1 hora"


async def test_the_dev_inbox_stays_english(client: Any) -> None:
    resp = await client.get("/dev/inbox", headers=ES)
    assert resp.status == 200
    assert resp.headers["Content-Language"] == "en"


# --- the shipped catalogs ------------------------------------------------------


def _po_files() -> list[Path]:
    files = sorted((REPO / "resetd" / "locale").glob("*/LC_MESSAGES/messages.po"))
    assert [p.parent.parent.name for p in files] == [lang for lang in SHIPPED if lang != "en"]
    return files


@pytest.mark.parametrize("po", _po_files(), ids=lambda p: p.parent.parent.name)
def test_each_compiled_catalog_matches_its_po_file(po: Path) -> None:
    """``pybabel compile`` was run after the last edit of the .po file."""
    with po.open("rb") as fh:
        catalog = read_po(fh)
    wanted = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    with po.with_suffix(".mo").open("rb") as fh:
        compiled = gettext.GNUTranslations(fh)
    got = {k: v for k, v in compiled._catalog.items() if k}  # type: ignore[attr-defined]
    assert got == wanted, "run: pybabel compile -D messages -d resetd/locale"


@pytest.mark.parametrize("po", _po_files(), ids=lambda p: p.parent.parent.name)
def test_each_catalog_translates_every_message_in_the_source(po: Path) -> None:
    """Every string marked in the code and templates is in the catalog, translated
    and not fuzzy (``pybabel extract`` + ``update`` were run after the last change)."""
    with (REPO / "babel.cfg").open(encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    marked = {
        msg[2] if isinstance(msg[2], str) else msg[2][0]
        for msg in extract_from_dir(str(REPO), method_map, options_map)
    }
    with po.open("rb") as fh:
        catalog = read_po(fh)
    done = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    assert "Reset password" in marked and "[%(site_name)s] Reset Your Password" in marked
    assert sorted(marked - done) == []
