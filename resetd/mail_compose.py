"""Step 2: render a mail from ``templates/email/`` into a multipart EmailMessage."""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import jinja2

from .assets import template_dir


class MailComposer:
    """Text + HTML alternatives from a template pair, addressed to one user."""

    def __init__(self, sender: str, public_url: str) -> None:
        self.sender = sender
        self.public_url = public_url.rstrip("/")
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(template_dir() / "email"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        domain = self.sender.rsplit("@", 1)[-1].strip(" >") or "localhost"
        self._msgid_domain = domain

    def compose(
        self, template: str, subject: str, to_name: str, to_addr: str, **context: Any
    ) -> EmailMessage:
        ctx = {"public_url": self.public_url, "username": to_name, **context}
        text = self._env.get_template(f"{template}.txt").render(ctx)
        html = self._env.get_template(f"{template}.html").render(ctx)
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.sender
        local, _, domain = to_addr.rpartition("@")
        msg["To"] = Address(display_name=to_name, username=local, domain=domain)
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain=self._msgid_domain)
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        return msg

    def reset_mail(self, username: str, email: str, token: str, ttl: int) -> EmailMessage:
        link = f"{self.public_url}/reset_password/{token}"
        return self.compose(
            "reset_password",
            "[resetd] Reset Your Password",
            username,
            email,
            link=link,
            minutes=max(1, ttl // 60),
        )

    def changed_mail(
        self, username: str, email: str, when: datetime, client_ip: str, user_agent: str
    ) -> EmailMessage:
        return self.compose(
            "password_changed",
            "[resetd] Your password was changed",
            username,
            email,
            when=when.strftime("%Y-%m-%d %H:%M:%S UTC"),
            client_ip=client_ip,
            user_agent=user_agent[:200],
            request_url=f"{self.public_url}/reset_password_request",
        )
