"""Which certificates of Logstash the function accepts, the same on every Python: the function
runs on python3.13, whose default verification is strict (RFC 5280's profile, and a CA file's
intermediate trusted), and the command may run on 3.11, whose default is not. A real OpenSSL
handshake in memory: no network."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.logstash.connection import build_ssl_context, tls_failure
from tests.support.cert_profiles import FLAWS, handshake_in_memory, issue

# What each refused flaw's message must tell the user to change (beside the verification message).
REMEDIES = {
    "ca-without-key-usage": "keyUsage=critical,keyCertSign,cRLSign",
    "ca-constraints-not-critical": "basicConstraints=critical,CA:TRUE",
    "leaf-without-authority-key-id": "authorityKeyIdentifier=keyid,issuer",
    "ca-without-subject-key-id": "subjectKeyIdentifier=hash",
}


@pytest.mark.parametrize("flaw", [flaw for flaw, (_, code) in FLAWS.items() if code is None])
def test_a_certificate_rfc_5280_allows_is_accepted(tmp_path: Path, flaw: str) -> None:
    issued = issue(tmp_path, flaw)
    client = build_ssl_context(Settings(host="127.0.0.1", tls=True, ca_file=issued.ca_file))
    handshake_in_memory(client, issued.server_context(), "127.0.0.1")


@pytest.mark.parametrize("flaw", sorted(REMEDIES))
def test_a_certificate_rfc_5280_forbids_is_refused_saying_what_to_fix(
    tmp_path: Path, flaw: str
) -> None:
    # Refused on 3.11 too: otherwise the command accepts what the deployed function refuses.
    issued = issue(tmp_path, flaw)
    client = build_ssl_context(Settings(host="127.0.0.1", tls=True, ca_file=issued.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError) as raised:
        handshake_in_memory(client, issued.server_context(), "127.0.0.1")
    assert raised.value.verify_code == FLAWS[flaw][1]
    failure = tls_failure(raised.value, "127.0.0.1:5044")
    assert failure is not None
    message = str(failure)
    assert REMEDIES[flaw] in message
    # The CA file is the right one: telling the user to change it would send them astray.
    assert f"set {ENV.LOGSTASH_CA_FILE}" not in message
    assert message.count(". ") == 0, "one sentence"
