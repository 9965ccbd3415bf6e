"""Test PKI: a throw-away CA and the certificates SecureGate's TLS set-ups need, made with `cryptography`.

    ca = CertificateAuthority.create("SecureGate test CA")
    ca.write(tmp_path / "ca")                                   # ca.pem (+ ca.key)
    server = ca.issue("localhost", hosts=["localhost", "127.0.0.1"], server=True)
    server.write(tmp_path / "server")                           # server.pem, server.key
    client = ca.issue("tenant-a", client=True)                  # for nginx `ssl_verify_client on`

EC P-256 keys keep generation instant (RSA-2048 costs ~0.1-1 s each on a small machine). Leaf certificates
carry a SubjectAlternativeName (DNS names, and IP addresses as both iPAddress and dNSName entries: Python's
ssl and nginx match iPAddress, while Ray's own test certificates put IPs in dNSName for gRPC), key usage and
extended key usage, so they pass strict verifiers (OpenSSL 3, Python 3.13's VERIFY_X509_STRICT).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=2)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SecureGate tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            pass
        names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


@dataclass
class Issued:
    """A certificate and its private key, in memory; `write` puts them on disk as PEM."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path | None = None
    key_path: Path | None = None

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, stem: Path) -> Issued:
        """`<stem>.pem` (certificate) and `<stem>.key` (private key, mode 0600)."""
        stem.parent.mkdir(parents=True, exist_ok=True)
        self.cert_path = stem.with_name(stem.name + ".pem")
        self.key_path = stem.with_name(stem.name + ".key")
        self.cert_path.write_bytes(self.cert_pem)
        self.key_path.touch(mode=0o600)
        self.key_path.write_bytes(self.key_pem)
        return self


@dataclass
class CertificateAuthority(Issued):
    @classmethod
    def create(cls, common_name: str = "SecureGate test CA") -> CertificateAuthority:
        key = _key()
        name = _name(common_name)
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert=cert, key=key)

    def issue(self, common_name: str, hosts: list[str] | None = None, *, server: bool = False,
              client: bool = False) -> Issued:
        """A leaf certificate signed by this CA. `hosts` become SANs (a server needs the names clients dial);
        `server`/`client` set the extended key usage (Ray's gRPC TLS needs both: every process is both)."""
        if not (server or client):
            raise ValueError("a leaf certificate is for a server, a client, or both")
        key = _key()
        now = _now()
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_agreement=True,
                                         content_commitment=False, data_encipherment=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if hosts:
            builder = builder.add_extension(_san(hosts), critical=False)
        return Issued(cert=builder.sign(self.key, hashes.SHA256()), key=key)
