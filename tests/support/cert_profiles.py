"""Certificates for 127.0.0.1 as users' tooling issues them, each with one flaw that RFC 5280's
profile forbids (what ``VERIFY_X509_STRICT``, Python 3.13's default, refuses), or none; and a TLS
handshake in memory, for tests that verify a certificate without a socket.

Built with ``cryptography`` alone (trustme issues only compliant certificates), so that the unit
tests can run on the function's Python with the ``unit`` extras.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["FLAWS", "IssuedCert", "handshake_in_memory", "issue"]

# flaw -> (what it is, the OpenSSL verification code strict mode gives it).
FLAWS: dict[str, tuple[str, int | None]] = {
    "none": ("a CA with every extension RFC 5280 asks for", None),
    # `openssl req -x509` with OpenSSL's default configuration (v3_ca): no keyUsage.
    "ca-without-key-usage": ("a CA without keyUsage", 92),
    "ca-constraints-not-critical": ("a CA whose basicConstraints is not critical", 89),
    # OpenSSL 1.1's `openssl x509 -req` adds no extension the -extfile does not name.
    "leaf-without-authority-key-id": ("a server certificate without authorityKeyIdentifier", 85),
    "ca-without-subject-key-id": ("a CA without subjectKeyIdentifier", 86),
    # `openssl req -x509 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1`, trusted as its
    # own CA: a trust anchor, which strict mode does not hold to the CA profile.
    "self-signed-leaf": ("a self-signed server certificate, its own CA", None),
    # The CA file holds the intermediate CA that signed the server's certificate, not the root
    # above it: a trust anchor in 3.13 (VERIFY_X509_PARTIAL_CHAIN), "unable to get issuer
    # certificate" (2) before it.
    "intermediate-ca-file": ("a CA file of the intermediate CA alone", None),
}


@dataclass(frozen=True)
class IssuedCert:
    """PEM files: the CA to trust, the server's certificate (and the intermediate CA after it,
    if any) and its key."""

    ca_file: str
    cert_file: str
    key_file: str

    def server_context(self) -> ssl.SSLContext:
        """A server context like Logstash's ``ssl_enabled`` input with this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def issue(directory: Path, flaw: str) -> IssuedCert:
    """A CA and a server certificate for 127.0.0.1 and localhost with ``flaw`` (a ``FLAWS`` key),
    written under ``directory``."""
    if flaw not in FLAWS:
        raise ValueError(f"unknown flaw {flaw!r}")
    now = datetime.datetime.now(datetime.UTC)
    names = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    def ca_extensions(key: ec.EllipticCurvePrivateKey) -> list[tuple[x509.ExtensionType, bool]]:
        constraints = x509.BasicConstraints(ca=True, path_length=None)
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (constraints, flaw != "ca-constraints-not-critical")
        ]
        if flaw != "ca-without-key-usage":
            # digitalSignature, keyCertSign and cRLSign, what a CA's keyUsage holds.
            usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
            extensions.append((usage, True))
        if flaw != "ca-without-subject-key-id":
            extensions.append((x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False))
        return extensions

    def authority(key: ec.EllipticCurvePrivateKey) -> tuple[x509.ExtensionType, bool]:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False

    server_key = ec.generate_private_key(ec.SECP256R1())
    chain: list[x509.Certificate] = []
    if flaw == "self-signed-leaf":
        server = certificate("127.0.0.1", server_key, "127.0.0.1", server_key, [(names, False)])
        ca = server
    else:
        issuer, issuer_key = "Test Logstash CA", ec.generate_private_key(ec.SECP256R1())
        ca = certificate(issuer, issuer_key, issuer, issuer_key, ca_extensions(issuer_key))
        if flaw == "intermediate-ca-file":
            key = ec.generate_private_key(ec.SECP256R1())
            extensions = [*ca_extensions(key), authority(issuer_key)]
            ca = certificate("Test Logstash Intermediate CA", key, issuer, issuer_key, extensions)
            chain = [ca]
            issuer, issuer_key = "Test Logstash Intermediate CA", key
        leaf_extensions: list[tuple[x509.ExtensionType, bool]] = [(names, False)]
        if flaw != "leaf-without-authority-key-id":
            leaf_extensions.append(authority(issuer_key))
        server = certificate("127.0.0.1", server_key, issuer, issuer_key, leaf_extensions)
    files = IssuedCert(
        ca_file=str(directory / f"{flaw}-ca.pem"),
        cert_file=str(directory / f"{flaw}.pem"),
        key_file=str(directory / f"{flaw}.key"),
    )
    Path(files.ca_file).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    Path(files.cert_file).write_bytes(
        b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in [server, *chain])
    )
    Path(files.key_file).write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


# A TLS 1.3 handshake takes two flights each way; a few more rounds are slack, not retries.
_HANDSHAKE_ROUNDS = 8


def handshake_in_memory(
    client: ssl.SSLContext, server: ssl.SSLContext, server_hostname: str
) -> None:
    """A TLS handshake between ``client`` and ``server`` through memory buffers (real OpenSSL,
    no socket). Raises what the client's side raises (``ssl.SSLCertVerificationError`` for a
    certificate it refuses)."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    sides = (
        (client.wrap_bio(client_in, client_out, server_hostname=server_hostname), server_in),
        (server.wrap_bio(server_in, server_out, server_side=True), client_in),
    )
    outs = (client_out, server_out)
    for _ in range(_HANDSHAKE_ROUNDS):
        done = True
        for (side, peer_in), out in zip(sides, outs, strict=True):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                done = False
            peer_in.write(out.read())
        if done:
            return
    raise AssertionError("the in-memory handshake did not finish")
