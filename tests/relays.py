"""A real SMTP relay for tests, on a real loopback socket, with scripted faults.

Built on aiosmtpd in the test's own event loop. Each DATA is an "attempt";
``script`` decides per attempt: accept, reply with an error, drop the
connection, stall past the client's timeout, or accept slowly.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.message
import email.policy
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ACCEPT = "250 OK"
DROP = "drop"
STALL = "stall"  # wait stall_seconds, then answer 451
SLOW = "slow"  # wait stall_seconds, then accept


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    encrypted: bool = False  # arrived over TLS
    mail_options: list[str] = field(default_factory=list)  # MAIL FROM parameters

    @property
    def message(self) -> email.message.EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


@dataclass
class Relay:
    """``script(attempt_number) -> ACCEPT | "4xx/5xx reply" | DROP | STALL | SLOW``.

    ``envelope(command, address)`` may refuse a MAIL or RCPT with a reply (None
    accepts). ``pipelining`` advertises PIPELINING (aiosmtpd reads commands line
    by line, so it handles pipelined input; it just does not say so). ``chunks``
    keeps every read from the client, to see what arrived together.
    """

    script: Callable[[int], str] = lambda n: ACCEPT
    stall_seconds: float = 30.0
    envelope: Callable[[str, str], str | None] = lambda command, address: None
    pipelining: bool = False
    smtputf8: bool = False
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False  # TLS from the first byte rather than STARTTLS
    refuse_auth: bool = False  # offer AUTH (without TLS) and answer every login 535
    chunks: list[bytes] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    connections: int = 0
    open_connections: int = 0
    max_open: int = 0
    server: asyncio.AbstractServer | None = None
    port: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    transports: set[Any] = field(default_factory=set)

    def authenticate(self, *args: Any) -> AuthResult:
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=not self.refuse_auth, handled=False)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.envelope("MAIL", address)
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.envelope("RCPT", address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    def pipelined_reads(self) -> int:
        """How many reads held MAIL, RCPT and DATA together."""
        return sum(
            b"MAIL FROM:" in c and b"RCPT TO:" in c and b"DATA\r\n" in c for c in self.chunks
        )

    def envelope_reads(self) -> int:
        """How many reads held a MAIL or RCPT command."""
        return sum(b"MAIL FROM:" in c or b"RCPT TO:" in c for c in self.chunks)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        action = self.script(self.attempts)
        if action == DROP:
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return "421 closing"
        if action == STALL:
            await asyncio.sleep(self.stall_seconds)
            return "451 too late"
        if action == SLOW:
            await asyncio.sleep(self.stall_seconds)
            action = ACCEPT
        if action.startswith("250"):
            content = envelope.original_content or envelope.content or b""
            assert isinstance(content, bytes)
            tls = server.transport is not None and server.transport.get_extra_info("ssl_object")
            self.received.append(
                Received(
                    str(envelope.mail_from),
                    [str(r) for r in envelope.rcpt_tos],
                    content,
                    encrypted=bool(tls),
                    mail_options=list(envelope.mail_options),
                )
            )
            self.arrived.set()
        return action

    async def start(self, port: int = 0) -> int:
        relay = self

        class CountingSMTP(SMTP):
            def connection_made(self, transport: Any) -> None:
                relay.connections += 1
                relay.open_connections += 1
                relay.max_open = max(relay.max_open, relay.open_connections)
                relay.transports.add(transport)
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                relay.open_connections -= 1
                relay.transports.discard(self.transport)
                super().connection_lost(exc)

            def data_received(self, data: bytes) -> None:
                relay.chunks.append(data)
                super().data_received(data)

        loop = asyncio.get_running_loop()
        starttls = self.tls_context if not self.implicit_tls else None
        self.server = await loop.create_server(
            partial(
                CountingSMTP,
                self,
                hostname="relay.test",
                decode_data=False,
                enable_SMTPUTF8=self.smtputf8,
                tls_context=starttls,
                require_starttls=starttls is not None,
                authenticator=relay.authenticate,
                auth_require_tls=False,
            ),
            "127.0.0.1",
            port,
            ssl=self.tls_context if self.implicit_tls else None,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for transport in list(self.transports):
                transport.abort()
            await self.server.wait_closed()
            self.server = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        async def enough() -> None:
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.received

    def count_for(self, recipient: str) -> int:
        """How many accepted mails were addressed to ``recipient``."""
        return sum(recipient in r.rcpt_tos for r in self.received)


def first_n(n: int, action: str) -> Callable[[int], str]:
    """Script: ``action`` for attempts 1..n, then accept."""
    return lambda attempt: action if attempt <= n else ACCEPT


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def self_signed(
    tmp_path: Path, names: tuple[str, ...] = ("127.0.0.1",), *, expired: bool = False
) -> tuple[ssl.SSLContext, Path]:
    """A relay's server context with a new self-signed certificate (its own CA) for
    ``names`` (IP addresses or DNS names), and the certificate's PEM file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.datetime.now(datetime.UTC)
    if expired:
        now -= datetime.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([_alt_name(n) for n in names]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx, cert_path


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
