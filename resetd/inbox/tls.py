"""STARTTLS for the SMTP sink: a self-signed certificate made on first start.

With ``[dev_inbox] starttls = true`` the sink offers STARTTLS (never requires
it). The certificate and its key live next to the inbox database
(``<path>.cert.pem``, ``<path>.key.pem``, the key readable by its owner only)
and are reused on later starts, so a client told to trust the file once keeps
working. Clients of a dev inbox usually skip verification anyway.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("dev inbox: created a self-signed STARTTLS certificate at %s", cert_path)


def _context(db_path: str) -> ssl.SSLContext:
    cert_path, key_path = cert_paths(db_path)
    if not (cert_path.exists() and key_path.exists()):
        _create(cert_path, key_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


async def server_context(db_path: str) -> ssl.SSLContext:
    """The sink's TLS context; creates the certificate first if there is none.

    Raises OSError when the files cannot be written or read, ssl.SSLError when
    they do not hold a matching certificate and key.
    """
    return await asyncio.to_thread(_context, db_path)
