"""Helpers for the dev inbox tests: real SMTP clients over loopback."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from aiohttp import web
from aiohttp.test_utils import TestClient

from resetd.inbox import keys as ikeys


def make_message(
    subject: str = "Hello",
    to: str = "susan@example.com",
    sender: str = "App <app@example.test>",
    text: str | None = "Plain text body",
    html: str | None = None,
    **headers: str,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if text is not None:
        msg.set_content(text)
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    return msg


def smtp_address(app: web.Application) -> tuple[str, int]:
    return app[ikeys.smtp_address]


async def send_smtplib(
    app: web.Application,
    message: EmailMessage | bytes,
    mail_from: str = "app@example.test",
    rcpt_tos: list[str] | None = None,
    login: tuple[str, str] | None = None,
) -> None:
    """Send with the stdlib client (in a thread) and wait until it is stored."""
    host, port = smtp_address(app)

    def send() -> None:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            if login:
                smtp.login(*login)
            if isinstance(message, bytes):
                smtp.sendmail(mail_from, rcpt_tos or ["susan@example.com"], message)
            else:
                smtp.send_message(message, mail_from, rcpt_tos)

    await asyncio.to_thread(send)
    await app[ikeys.writer].flush()


async def send_aiosmtplib(
    app: web.Application,
    message: EmailMessage,
    rcpt_tos: list[str] | None = None,
    **kwargs: Any,
) -> None:
    """Send with aiosmtplib and wait until it is stored."""
    host, port = smtp_address(app)
    await aiosmtplib.send(
        message, hostname=host, port=port, recipients=rcpt_tos, timeout=10, **kwargs
    )
    await app[ikeys.writer].flush()


async def api_json(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    assert resp.status == status, await resp.text()
    return await resp.json()
