"""Mailpit's render routes, /dev/inbox/view/{ID}.html and .txt, as its clients call them."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from aiohttp.test_utils import TestClient

from tests.inbox_helpers import api_json, make_message, send_smtplib

VIEW = "/dev/inbox/view"


async def test_view_html_and_txt_serve_the_bodies_alone(client: TestClient[Any, Any]) -> None:
    await send_smtplib(
        client.app, make_message("Both", text="Plain words", html="<p>Rich <b>words</b></p>")
    )
    mid = (await api_json(client, "/dev/inbox/api/v1/message/latest"))["ID"]
    html = await client.get(f"{VIEW}/{mid}.html")
    assert html.status == 200
    assert html.headers["Content-Type"] == "text/html; charset=utf-8"
    assert (await html.text()).strip() == "<p>Rich <b>words</b></p>"
    embedded = await (await client.get(f"{VIEW}/{mid}.html?embed=1")).text()
    assert embedded.strip() == '<base target="_blank"><p>Rich <b>words</b></p>'
    text = await client.get(f"{VIEW}/{mid}.txt")
    assert text.status == 200 and text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert (await text.text()).strip() == "Plain words"


async def test_view_latest_and_latest_with_a_query(client: TestClient[Any, Any]) -> None:
    await send_smtplib(client.app, make_message("First", text="one", to="a@example.com"))
    await send_smtplib(client.app, make_message("Second", text="two", to="b@example.com"))
    assert (await (await client.get(f"{VIEW}/latest.txt")).text()).strip() == "two"
    query = await client.get(f"{VIEW}/latest.txt?query=to:a@example.com")
    assert (await query.text()).strip() == "one"
    none = await client.get(f"{VIEW}/latest.html?query=subject:nothing-like-it")
    assert none.status == 404


async def test_view_without_a_suffix_opens_the_message_page(client: TestClient[Any, Any]) -> None:
    await send_smtplib(client.app, make_message("Page"))
    mid = (await api_json(client, "/dev/inbox/api/v1/message/latest"))["ID"]
    resp = await client.get(f"{VIEW}/latest", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == f"/dev/inbox/{mid}"


async def test_view_html_of_a_text_only_mail_and_an_unknown_id_are_404(
    client: TestClient[Any, Any],
) -> None:
    await send_smtplib(client.app, make_message("Text only", text="just text"))
    assert (await client.get(f"{VIEW}/latest.html")).status == 404
    assert (await client.get(f"{VIEW}/latest.txt")).status == 200
    assert (await client.get(f"{VIEW}/999.html")).status == 404
    assert (await client.get(f"{VIEW}/nonsense.txt")).status == 404


async def test_view_html_is_sandboxed_with_no_script_and_cid_images_linked(
    client: TestClient[Any, Any],
) -> None:
    """The mail's markup is served from the inbox's origin: the CSP's ``sandbox``
    (no allow-scripts, no allow-same-origin) keeps its script from running as the inbox."""
    msg = make_message(
        "Evil", text="t", html='<script>alert(1)</script><img src="cid:logo@x"><p>Hi</p>'
    )
    html_part = msg.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@x>")
    await send_smtplib(client.app, msg)
    full = await api_json(client, "/dev/inbox/api/v1/message/latest")
    resp = await client.get(f"{VIEW}/{full['ID']}.html")
    csp = [d.strip() for d in resp.headers["Content-Security-Policy"].split(";")]
    assert "sandbox" in csp  # bare: neither allow-scripts nor allow-same-origin
    assert "default-src 'none'" in csp
    assert not any(d.startswith("script-src") for d in csp)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    body = await resp.text()
    part_url = f"/dev/inbox/api/v1/message/{full['ID']}/part/{full['Inline'][0]['PartID']}"
    assert f'src="{part_url}"' in body
