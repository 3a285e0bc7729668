"""TLS for the SMTP sink: the developer's certificate, or a self-signed one made on first start.

With ``[dev_inbox] starttls = true`` the sink offers STARTTLS (never requires
it); with ``smtps_port`` it also listens for implicit TLS there. The
certificate is ``[dev_inbox] tls_cert`` / ``tls_key`` when set (mkcert's, say,
which every client on the machine already trusts); otherwise a self-signed one
next to the inbox database (``<path>.cert.pem``, ``<path>.key.pem``, both
mode 0600), reused on later starts, so a client told to trust the file once
keeps working. The banner shows its path and SHA-256 fingerprint
(:class:`TlsInfo`).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..config import DevInboxConfig
from ..private_files import make_private_dir, warn_if_exposed, write_private

log = logging.getLogger(__name__)

VALID_DAYS = 3650


def cert_paths(db_path: str) -> tuple[Path, Path]:
    """(certificate, key) files for the inbox database at ``db_path``."""
    return Path(f"{db_path}.cert.pem"), Path(f"{db_path}.key.pem")


def _create(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "resetd dev inbox")])
    now = datetime.datetime.now(datetime.UTC)
    hosts = sorted({"localhost", socket.gethostname() or "localhost"})
    alt_names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    make_private_dir(key_path.parent)
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    # Public, but private like every file resetd makes; its owner can copy it.
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    log.info("dev inbox: created a self-signed STARTTLS certificate at %s", cert_path)


@dataclass(frozen=True)
class TlsInfo:
    """The certificate the sink presents, for the banner."""

    cert_path: str
    fingerprint: str  # SHA-256 of the DER certificate, "AB:CD:…"
    self_signed: bool  # made by resetd (a client must be told to trust it)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint of the first certificate in ``cert_pem``, as openssl prints it."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _context(cfg: DevInboxConfig) -> tuple[ssl.SSLContext, TlsInfo]:
    if cfg.tls_cert:
        cert_path, key_path = Path(cfg.tls_cert), Path(cfg.tls_key)
        warn_if_exposed([key_path], "the dev inbox's TLS private key")
        self_signed = False
    else:
        cert_path, key_path = cert_paths(cfg.path)
        if not (cert_path.exists() and key_path.exists()):
            _create(cert_path, key_path)
        else:
            warn_if_exposed([key_path], "the dev inbox's TLS private key")
        self_signed = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    info = TlsInfo(str(cert_path.resolve()), fingerprint(cert_path.read_bytes()), self_signed)
    return context, info


async def server_context(cfg: DevInboxConfig) -> tuple[ssl.SSLContext, TlsInfo]:
    """The sink's TLS context and what to show of its certificate; creates the
    self-signed certificate first when there is neither one nor ``tls_cert``.

    Raises OSError when the files cannot be written or read, ssl.SSLError when
    they do not hold a matching certificate and key.
    """
    return await asyncio.to_thread(_context, cfg)
