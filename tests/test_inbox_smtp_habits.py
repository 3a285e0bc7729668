"""Habits of apps coming from Mailpit: a trusted STARTTLS certificate, SMTPS,
CRAM-MD5, and the SMTP AUTH user name shown as ``Username``.

Real clients (smtplib, aiosmtplib) over loopback into the real app; the
certificates are a real CA and a server certificate it signed, as mkcert makes.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import ipaddress
import smtplib
import ssl
from base64 import b64decode, b64encode
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from resetd.app import create_app
from resetd.config import ConfigError
from resetd.inbox import keys as ikeys
from resetd.inbox import tls_banner
from resetd.inbox.capture import SinkHandler, SinkStats
from resetd.inbox.sink import start_sink
from resetd.inbox.smtp_auth import SinkLogin
from resetd.inbox.writer import Arrival
from tests.helpers import ConfigFactory
from tests.inbox_helpers import api_json, make_message, smtp_address

API = "/dev/inbox/api/v1"
PASSWORD = "a-long-inbox-password-1234"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for localhost / 127.0.0.1 it signed: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_ca_and_server_cert(tmp_path)


async def _tls_client(
    aiohttp_client: Any, make_config: ConfigFactory, certs: tuple[Path, Path, Path]
) -> TestClient[Any, Any]:
    _, cert, key = certs
    config = make_config(
        dev_inbox={"starttls": True, "smtps_port": 0, "tls_cert": str(cert), "tls_key": str(key)}
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
    return client


async def test_starttls_verifies_against_the_configured_certificates_ca(
    aiohttp_client: Any, make_config: ConfigFactory, certs: tuple[Path, Path, Path]
) -> None:
    client = await _tls_client(aiohttp_client, make_config, certs)
    host, port = smtp_address(client.app)

    def send() -> str:
        context = ssl.create_default_context(cafile=str(certs[0]))  # verifies, checks the name
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.starttls(context=context)
            smtp.send_message(make_message("Over verified STARTTLS"))
            return str(smtp.sock.version())  # type: ignore[union-attr]

    assert (await asyncio.to_thread(send)).startswith("TLS")
    latest = await api_json(client, f"{API}/message/latest")
    assert latest["Subject"] == "Over verified STARTTLS"


async def test_smtps_port_takes_mail_over_implicit_tls(
    aiohttp_client: Any, make_config: ConfigFactory, certs: tuple[Path, Path, Path]
) -> None:
    client = await _tls_client(aiohttp_client, make_config, certs)
    smtps = client.app[ikeys.smtps_address]
    assert smtps is not None and smtps != smtp_address(client.app)

    def send() -> bool:
        context = ssl.create_default_context(cafile=str(certs[0]))
        with smtplib.SMTP_SSL(smtps[0], smtps[1], timeout=10, context=context) as smtp:
            smtp.ehlo()
            offers_starttls = smtp.has_extn("starttls")
            smtp.login("smtps-user", "anything")
            smtp.send_message(make_message("Over SMTPS"))
        return offers_starttls

    assert await asyncio.to_thread(send) is False  # already encrypted
    latest = await api_json(client, f"{API}/message/latest")
    assert latest["Subject"] == "Over SMTPS" and latest["Username"] == "smtps-user"


async def test_a_trusted_certificate_is_named_in_the_banner_without_a_trust_hint(
    aiohttp_client: Any, make_config: ConfigFactory, certs: tuple[Path, Path, Path]
) -> None:
    client = await _tls_client(aiohttp_client, make_config, certs)
    text = "\n".join(tls_banner(client.app))
    fingerprint = x509.load_pem_x509_certificate(certs[1].read_bytes()).fingerprint(hashes.SHA256())
    assert str(certs[1].resolve()) in text and "[dev_inbox] tls_cert" in text
    assert fingerprint.hex(":").upper() in text
    assert "SMTPS" in text and "CA file" not in text


async def test_the_self_signed_certificate_is_shown_with_its_fingerprint_and_a_hint(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    config = make_config(dev_inbox={"starttls": True})
    client = await aiohttp_client(create_app(config))
    lines = tls_banner(client.app)
    cert = Path(f"{config.dev_inbox.path}.cert.pem")
    fingerprint = x509.load_pem_x509_certificate(cert.read_bytes()).fingerprint(hashes.SHA256())
    text = "\n".join(lines)
    assert str(cert.resolve()) in text and "self-signed" in text
    assert fingerprint.hex(":").upper() in text
    assert "CA file" in text  # the hint for trusting it
    plain = await aiohttp_client(create_app(make_config()))
    assert tls_banner(plain.app) == []  # no TLS, no lines


def test_tls_cert_needs_its_key_a_readable_pair_and_tls_on(
    make_config: ConfigFactory, certs: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = certs
    cases = [
        ({"starttls": True, "tls_cert": str(cert)}, "[dev_inbox] tls_key"),
        ({"tls_cert": str(cert), "tls_key": str(key)}, "[dev_inbox] tls_cert: only used"),
        ({"starttls": True, "tls_cert": str(cert), "tls_key": str(ca)}, "[dev_inbox] tls_cert"),
        (
            {"starttls": True, "tls_cert": str(cert) + ".nope", "tls_key": str(key)},
            "[dev_inbox] tls_cert: no such file",
        ),
        ({"smtps_port": 70000}, "[dev_inbox] smtps_port"),
    ]
    for section, message in cases:
        with pytest.raises(ConfigError) as info:
            make_config(dev_inbox=section)
        assert str(info.value).startswith(message), (section, str(info.value))


def _cram_md5(smtp: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """One AUTH CRAM-MD5 exchange by hand, as RFC 2195 spells it."""
    code, challenge = smtp.docmd("AUTH", "CRAM-MD5")
    assert code == 334, (code, challenge)
    digest = hmac.new(password.encode(), b64decode(challenge), "md5").hexdigest()
    return smtp.docmd(b64encode(f"{user} {digest}".encode()).decode())


async def test_cram_md5_with_any_credentials_and_the_user_name_shown(
    client: TestClient[Any, Any],
) -> None:
    host, port = smtp_address(client.app)

    def send() -> None:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.ehlo()
            assert "CRAM-MD5" in smtp.esmtp_features["auth"].split()
            # smtplib's own CRAM-MD5, chosen explicitly (login() picks it first too).
            smtp.user, smtp.password = "msmtp-user", "whatever"
            code, _ = smtp.auth("CRAM-MD5", smtp.auth_cram_md5)
            assert code == 235
            smtp.send_message(make_message("Over CRAM-MD5"))
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.send_message(make_message("Without AUTH"))

    await asyncio.to_thread(send)
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10) as smtp:
        await smtp.login("plain-user", "x")  # aiosmtplib picks PLAIN or LOGIN
        await smtp.send_message(make_message("Over aiosmtplib AUTH"))
    listing = await api_json(client, f"{API}/messages")
    users = {m["Subject"]: m["Username"] for m in listing["messages"]}
    assert users == {
        "Over aiosmtplib AUTH": "plain-user",
        "Without AUTH": "",
        "Over CRAM-MD5": "msmtp-user",
    }
    by_subject = {m["Subject"]: m["ID"] for m in listing["messages"]}
    full = await api_json(client, f"{API}/message/{by_subject['Over CRAM-MD5']}")
    assert full["Username"] == "msmtp-user"
    assert (await api_json(client, f"{API}/message/latest"))["Username"] == "plain-user"


class _Collecting:
    """Stands in for the inbox writer: keeps what the sink accepted."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def expect(self) -> Arrival:
        return Arrival(None)

    async def submit(self, incoming: Any, arrival: Arrival | None = None) -> None:
        self.received.append(incoming)


async def test_cram_md5_verifies_the_password_where_auth_is_required(
    make_config: ConfigFactory,
) -> None:
    cfg = make_config(dev_inbox={"allow_remote": True, "password": PASSWORD})
    writer = _Collecting()
    handler = SinkHandler(writer, SinkStats())  # type: ignore[arg-type]
    sink = await start_sink(cfg.dev_inbox, handler, None, SinkLogin(PASSWORD))
    host, port = sink.address
    try:

        def exchange() -> list[int]:
            with smtplib.SMTP(host, port, timeout=10) as smtp:
                smtp.ehlo()
                codes = [_cram_md5(smtp, "anyone", "not the password")[0]]
                codes.append(smtp.mail("a@example.com")[0])
                codes.append(_cram_md5(smtp, "anyone", PASSWORD)[0])
                smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: in\r\n\r\nx\r\n")
            return codes

        assert await asyncio.to_thread(exchange) == [535, 530, 235]
        assert [m.username for m in writer.received] == ["anyone"]
    finally:
        await sink.close()
