"""Step 2: render a mail from ``templates/email/`` into multipart/alternative bytes.

The MIME is assembled directly rather than through ``email.message.EmailMessage``:
the stdlib's header machinery costs about 2.5 ms per mail, which on the event
loop would stall every other request during a burst; this costs ~50 µs. The
output is plain RFC 5322/2045 (7bit when ASCII, quoted-printable otherwise);
every header holding an outside value (a username, an address, the configured
sender) is built by :mod:`resetd.mail_headers`, and the tests parse the mail
back with the stdlib's strict ``email.policy.default``.
"""

from __future__ import annotations

import quopri
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate, parseaddr
from typing import Any

import jinja2

from ..assets import template_dir
from ..mail_headers import address_header, check_address, clean, unstructured_header


@dataclass(frozen=True)
class ComposedMail:
    """What the outbox stores: the envelope, a subject for listings, the bytes."""

    sender: str
    recipient: str
    subject: str
    data: bytes


def _part(content_type: str, body: str) -> bytes:
    body = body.replace("\r\n", "\n")
    if body.isascii() and all(len(line) <= 990 for line in body.split("\n")):
        encoding, payload = "7bit", body.encode("ascii")
    else:
        encoding, payload = "quoted-printable", quopri.encodestring(body.encode("utf-8"))
    head = (
        f'Content-Type: {content_type}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode("ascii")
    return head + payload.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def build_alternative(headers: list[str], text: str, html: str) -> bytes:
    """A complete multipart/alternative message (CRLF line endings).

    ``headers`` are complete, folded header fields (``Name: value``), ASCII
    except for an address with a non-ASCII local part (RFC 6532)."""
    boundary = "=_resetd_" + secrets.token_hex(12)
    lines = [*headers, "MIME-Version: 1.0"]
    # Folded: on one line it would run past RFC 5322's 78 characters.
    lines.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"')
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    for ctype, body in (("text/plain", text), ("text/html", html)):
        out += f"--{boundary}\r\n".encode() + _part(ctype, body) + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


class MailComposer:
    """Text + HTML alternatives from a template pair, addressed to one user."""

    def __init__(self, sender: str, public_url: str, link_url: str = "") -> None:
        """Raises :class:`~resetd.errors.UnsendableAddress` when ``sender`` holds no usable address
        (config_rules refuses such a ``[mail] sender`` first).

        ``link_url`` (``[reset] link_url``) is where the reset link points
        instead of ``public_url/reset_password/<token>``, ``{token}`` replaced."""
        self.sender = sender
        name, addr = parseaddr(sender)
        self.sender_name, self.sender_addr = clean(name), check_address(addr)
        self._from = address_header("From", self.sender_name, self.sender_addr)
        self.public_url = public_url.rstrip("/")
        self.link_url = link_url
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(template_dir() / "email"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self._msgid_domain = _msgid_domain(self.sender_addr)

    def warm(self) -> int:
        """Compile every mail template now (see :func:`resetd.render.warm_templates`)."""
        names = self._env.list_templates()
        for name in names:
            self._env.get_template(name)
        return len(names)

    def compose(
        self, template: str, subject: str, to_name: str, to_addr: str, **context: Any
    ) -> ComposedMail:
        """The mail for ``to_addr`` (a stored address: trimmed, its domain made
        IDNA when only the domain is non-ASCII, see
        :func:`~resetd.mail_headers.check_address`); the envelope recipient is that
        same address. Raises :class:`~resetd.errors.UnsendableAddress` when it cannot be sent to.
        ``to_name`` may hold anything: it is cleaned for the body and the header."""
        recipient = check_address(to_addr)
        to_name = clean(to_name)
        ctx = {"public_url": self.public_url, "username": to_name, **context}
        text = self._env.get_template(f"{template}.txt").render(ctx)
        html = self._env.get_template(f"{template}.html").render(ctx)
        msgid = f"<{int(time.time() * 1000)}.{secrets.token_hex(8)}@{self._msgid_domain}>"
        data = build_alternative(
            [
                unstructured_header("Subject", subject),
                self._from,
                address_header("To", to_name, recipient),
                "Date: " + formatdate(localtime=False, usegmt=True),
                "Message-ID: " + msgid,
                "Auto-Submitted: auto-generated",
            ],
            text,
            html,
        )
        return ComposedMail(self.sender_addr, recipient, subject, data)

    def reset_mail(self, username: str, email: str, token: str, ttl: int) -> ComposedMail:
        link = reset_link(self.public_url, self.link_url, token)
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
    ) -> ComposedMail:
        return self.compose(
            "password_changed",
            "[resetd] Your password was changed",
            username,
            email,
            when=when.strftime("%Y-%m-%d %H:%M:%S UTC"),
            client_ip=clean(client_ip),
            user_agent=clean(user_agent[:200]),
            request_url=f"{self.public_url}/reset_password_request",
        )


def reset_link(public_url: str, link_url: str, token: str) -> str:
    """The mailed link: built from the configuration and the token only (never
    from a request), so nobody can point it elsewhere. A token is URL-safe
    base64 and dots: it needs no escaping, in a path or a fragment."""
    if link_url:
        return link_url.replace("{token}", token)
    return f"{public_url.rstrip('/')}/reset_password/{token}"


def _msgid_domain(sender: str) -> str:
    """The right-hand side of our Message-IDs: the sender's domain when it is a
    plain ASCII host name (an A-label after check_address), else ``localhost``."""
    domain = sender.rpartition("@")[2]
    if domain and domain.isascii() and all(c.isalnum() or c in ".-" for c in domain):
        return domain
    return "localhost"
