"""Test certificates: a trustme CA, a server certificate for 127.0.0.1/localhost/::1, a client
certificate, all written to a directory so they can be passed as ``ca_file`` and friends."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["CertBundle", "make_certs"]


@dataclass(frozen=True)
class CertBundle:
    """Paths of the PEM files plus the CA, for building server contexts."""

    ca: trustme.CA
    server: trustme.LeafCert
    misnamed_server: trustme.LeafCert  # signed by the CA, but for another host name
    expired_server: trustme.LeafCert  # signed by the CA for 127.0.0.1, expired yesterday
    ca_file: str
    client_cert_file: str
    client_key_file: str
    other_ca_file: str  # a CA that signed nothing we use: the "wrong CA"

    def server_context(
        self,
        *,
        require_client_cert: bool = False,
        misnamed: bool = False,
        expired: bool = False,
        maximum_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ) -> ssl.SSLContext:
        """A server context like Logstash's ``ssl_enabled`` tcp input."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.maximum_version = maximum_version
        leaf = self.misnamed_server if misnamed else self.server
        (self.expired_server if expired else leaf).configure_cert(context)
        if require_client_cert:
            # Logstash ssl_client_authentication => required
            self.ca.configure_trust(context)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def make_certs(directory: Path) -> CertBundle:
    """Issue the certificates and write them under ``directory``."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost", "::1")
    misnamed = ca.issue_cert("logstash.example")
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert(
        "127.0.0.1",
        "localhost",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    client = ca.issue_cert("elb-log-shipper.test")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client_cert = directory / "client.pem"
    client_key = directory / "client.key"
    client.cert_chain_pems[0].write_to_path(str(client_cert))
    client.private_key_pem.write_to_path(str(client_key))
    other_ca_file = directory / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca_file))
    return CertBundle(
        ca=ca,
        server=server,
        misnamed_server=misnamed,
        expired_server=expired,
        ca_file=str(ca_file),
        client_cert_file=str(client_cert),
        client_key_file=str(client_key),
        other_ca_file=str(other_ca_file),
    )
