"""Step 2: render a mail from ``templates/email/`` into multipart/alternative bytes.

The templates are the operator's ``[server] templates``/email/ first, then the
shipped ones; the mail is in the language given (:mod:`resetd.i18n`), its
subject names ``[server] site_name``.

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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any

import jinja2

from .. import i18n
from ..assets import template_dir
from ..i18n import _
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

    def __init__(
        self,
        sender: str,
        public_url: str,
        link_url: str = "",
        *,
        site_name: str = "resetd",
        templates: Sequence[Path] = (),
    ) -> None:
        """``templates``: the directories whose ``email/`` holds the mails, first
        found wins; the shipped one when empty. Raises
        :class:`~resetd.errors.UnsendableAddress` when ``sender`` holds no usable address
        (config_rules refuses such a ``[mail] sender`` first).

        ``link_url`` (``[reset] link_url``) is where the reset link points
        instead of ``public_url/reset_password/<token>``, ``{token}`` replaced."""
        self.sender = sender
        self.site_name = site_name
        name, addr = parseaddr(sender)
        self.sender_name, self.sender_addr = clean(name), check_address(addr)
        self._from = address_header("From", self.sender_name, self.sender_addr)
        self.public_url = public_url.rstrip("/")
        dirs = list(templates) or [template_dir()]
        self.link_url = link_url
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(d / "email") for d in dirs]),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        i18n.install(self._env)
        self._env.globals["site_name"] = site_name
        self._msgid_domain = _msgid_domain(self.sender_addr)

    def warm(self, languages: Sequence[str] = ()) -> int:
        """Compile every mail template now (see :func:`resetd.render.warm_templates`);
        returns how many.

        Then compose each mail once in each of ``languages`` with sample values,
        so a template (an operator's, say) that needs a variable the mail does
        not give stops ``serve`` at start rather than failing each request:
        raises :class:`jinja2.UndefinedError` (or whatever rendering raises)."""
        names = self._env.list_templates()
        for name in names:
            self._env.get_template(name)
        sample = datetime(2000, 1, 1, tzinfo=UTC)
        for lang in languages:
            self.reset_mail("sample", "sample@example.com", "sample-token", 600, lang)
            self.changed_mail("sample", "sample@example.com", sample, "192.0.2.1", "UA", lang)
        return len(names)

    def compose(
        self,
        template: str,
        subject: str,
        to_name: str,
        to_addr: str,
        lang: str = i18n.SOURCE,
        **context: Any,
    ) -> ComposedMail:
        """The mail for ``to_addr`` (a stored address: trimmed, its domain made
        IDNA when only the domain is non-ASCII, see
        :func:`~resetd.mail_headers.check_address`); the envelope recipient is that
        same address. Raises :class:`~resetd.errors.UnsendableAddress` when it cannot be sent to.
        ``to_name`` may hold anything: it is cleaned for the body and the header."""
        recipient = check_address(to_addr)
        to_name = clean(to_name)
        ctx = {"public_url": self.public_url, "username": to_name, "lang": lang, **context}
        with i18n.using(lang):
            text = self._render(f"{template}.txt", ctx)
            html = self._render(f"{template}.html", ctx)
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

    def _render(self, name: str, ctx: dict[str, Any]) -> str:
        """``get_template(name).render(ctx)``, the same text and errors.

        ``Template.render`` copies the environment's globals into each context
        through a ``ChainMap``, a dozen lookups in Python per render: 16 µs of
        the 82 a reset mail took. Merged into the context's dict here (a copy
        in C) and shared with the context, as ``new_context(shared=True)``
        allows, they cost next to nothing."""
        tpl = self._env.get_template(name)
        context = tpl.new_context({**self._env.globals, **ctx}, shared=True)
        try:
            return self._env.concat(tpl.root_render_func(context))
        except Exception:
            self._env.handle_exception()

    def reset_mail(
        self, username: str, email: str, token: str, ttl: int, lang: str = i18n.SOURCE
    ) -> ComposedMail:
        link = reset_link(self.public_url, self.link_url, token)
        with i18n.using(lang):
            subject = _("[%(site_name)s] Reset Your Password") % {"site_name": self.site_name}
        return self.compose(
            "reset_password",
            subject,
            username,
            email,
            lang,
            link=link,
            minutes=max(1, ttl // 60),
            expires_in=i18n.expires_in(ttl, lang),
        )

    def changed_mail(
        self,
        username: str,
        email: str,
        when: datetime,
        client_ip: str,
        user_agent: str,
        lang: str = i18n.SOURCE,
    ) -> ComposedMail:
        with i18n.using(lang):
            subject = _("[%(site_name)s] Your password was changed") % {"site_name": self.site_name}
        return self.compose(
            "password_changed",
            subject,
            username,
            email,
            lang,
            when=i18n.when(when, lang),
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
