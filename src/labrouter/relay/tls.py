"""The relay's TLS identity: a self-signed certificate, its fingerprint, the SSL contexts.

Owns making the node's certificate at first start (an ECDSA P-256 key, written 0600), loading
it afterwards, the SHA-256 fingerprint of its DER form (hex, the form announced to peers)
and the server-side ``ssl.SSLContext``. Trust does not come from a CA: a client accepts a
peer only when the certificate it presents has the fingerprint that peer announced in its
authenticated announcement (see ``client.py``, which pins with ``aiohttp.Fingerprint``).

Must not import ``app``, ``desktop`` or ``cluster``: the caller gives the directory
(``paths.tls_dir``) and the function that writes a private file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

CERT_FILE = "relay.crt"
KEY_FILE = "relay.key"
#: pinned certificates never expire in practice; a long validity avoids a surprise rotation
#: (a new fingerprint) on a machine that has been running for years
VALIDITY_DAYS = 20 * 365


@dataclass(frozen=True)
class RelayIdentity:
    """The node's relay certificate on disk and its announced fingerprint."""

    cert_file: Path
    key_file: Path
    fingerprint: str  # SHA-256 of the DER certificate, lower-case hex (64 characters)

    def server_context(self) -> ssl.SSLContext:
        return server_ssl_context(self.cert_file, self.key_file)


def fingerprint_of(der: bytes) -> str:
    """SHA-256 of a DER certificate, as lower-case hex."""
    return hashlib.sha256(der).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """Accept ``AB:CD:...`` or hex in any case; return plain lower-case hex.

    Raises ValueError for anything that is not a SHA-256 digest.
    """
    hexed = text.replace(":", "").strip().lower()
    if len(hexed) != 64 or any(c not in "0123456789abcdef" for c in hexed):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return hexed


def ensure_identity(tls_dir: Path, write_private: Callable[[Path, bytes], None],
                    common_name: str = "labrouter",
                    now: dt.datetime | None = None) -> RelayIdentity:
    """Load the relay certificate from ``tls_dir``, making a new one when none is usable.

    ``write_private`` writes the key file 0600 from its first byte (``app.paths``).
    """
    cert_path, key_path = tls_dir / CERT_FILE, tls_dir / KEY_FILE
    if cert_path.exists() and key_path.exists():
        try:
            return _load(cert_path, key_path)
        except (ValueError, OSError) as exc:
            # a damaged or mismatched pair: a new identity is safe, peers learn the new
            # fingerprint from the next announcement
            log.warning("relay certificate in %s unusable (%s); making a new one", tls_dir, exc)
    return _create(cert_path, key_path, common_name, write_private,
                   now or dt.datetime.now(dt.UTC))


def _load(cert_path: Path, key_path: Path) -> RelayIdentity:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ValueError("the key does not belong to the certificate")
    der = cert.public_bytes(serialization.Encoding.DER)
    return RelayIdentity(cert_path, key_path, fingerprint_of(der))


def _create(cert_path: Path, key_path: Path, common_name: str,
            write_private: Callable[[Path, bytes], None], now: dt.datetime) -> RelayIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "labrouter")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))  # tolerate a peer's clock running late
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # the key first, 0600 from its first byte; the certificate is public, but it is the
    # machine's identity: owner-only like every file labrouter keeps
    write_private(key_path, key_pem)
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    der = cert.public_bytes(serialization.Encoding.DER)
    fp = fingerprint_of(der)
    log.info("made a new relay certificate, fingerprint %s", fp)
    return RelayIdentity(cert_path, key_path, fp)


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The relay's server context: TLS 1.2+, no client certificates (requests carry proof)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx
