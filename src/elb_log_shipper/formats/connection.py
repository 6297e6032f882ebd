"""ALB connection logs (reference §5, 2023): 11 fields in the first files, 12 since
``conn_trace_id`` was appended, 15 with the later additions.

Names follow Elastic's elb_logs ingest pipeline, which parses connection logs in its newer
versions: the client as ``client.ip``/``client.port``, the listener port as ``aws.elb.listener``,
the handshake latency as ``aws.elb.tls_handshake_latency`` (seconds), and ``Failed:<code>`` split
into ``aws.elb.tls_verify_status`` and ``aws.elb.tls_error_code``.
"""

from __future__ import annotations

from typing import Any

from elb_log_shipper.errors import ParseError
from elb_log_shipper.formats._values import (
    ECS,
    PORT_MAX,
    REDACTED,
    duration,
    integer,
    ip_address,
    timestamp,
    tls_version,
)

__all__ = ["KNOWN_FIELDS", "MIN_FIELDS", "parse"]

# Through tls_verify_status: the first connection logs had no conn_trace_id.
MIN_FIELDS = 11
KNOWN_FIELDS = 15


def parse(f: list[str]) -> dict[str, Any]:
    """Event fields of one ALB connection-log line split into fields ``f``."""
    n = len(f)
    if n < MIN_FIELDS:
        raise ParseError(f"connection log line has {n} fields, at least {MIN_FIELDS} expected")
    ts = timestamp(f[0], "timestamp")
    # Elastic's pipeline: no HTTP in the line, so the protocol is `tcp`.
    elb: dict[str, Any] = {"protocol": "tcp"}
    event: dict[str, Any] = {
        "kind": "event",
        "category": ["network"],
        "dataset": "aws.elb_logs",
        "end": ts,
    }
    out: dict[str, Any] = {"@timestamp": ts, "ecs": ECS, "event": event, "aws": {"elb": elb}}
    ip = f[1]
    if ip[:1] == "[" and ip[-1:] == "]":
        ip = ip[1:-1]
    if ip not in ("-", REDACTED) and not ip_address(ip):
        # Also how a Classic line whose client is `-` is told from a connection log: its load
        # balancer's name is in this place.
        raise ParseError(f"client_ip: {ip!r} is no IP address")
    port = integer(f[2], "client_port", PORT_MAX)
    # client.*, as Elastic's pipeline sets it, and not source.*: its dashboards count and map
    # source.ip over the whole data stream, where a TLS connection is no request.
    if ip == REDACTED:
        # The privacy rules' answer for a client that is no address: no `ip` field.
        out["client"] = {"address": ip} if port is None else {"address": ip, "port": port}
    elif ip != "-":
        out["client"] = {"ip": ip} if port is None else {"ip": ip, "port": port}
    if (v := f[3]) != "-":
        integer(v, "listener_port", PORT_MAX)
        elb["listener"] = v
    tls: dict[str, Any] = {}
    if (v := f[4]) != "-":
        elb["ssl_protocol"] = v
        version = tls_version(v)
        if version is not None:
            tls["version"], tls["version_protocol"] = version
    if (v := f[5]) != "-":
        elb["ssl_cipher"] = tls["cipher"] = v
    if tls:
        out["tls"] = tls
    latency = duration(f[6], "tls_handshake_latency")
    if latency is not None:
        elb["tls_handshake_latency"] = latency
    if (v := f[7]) != "-":
        elb["leaf_client_cert_subject"] = v
    if (v := f[8]) != "-":
        for part in v.split(";"):
            key, _, when = part.partition("=")
            if key == "NotBefore":
                elb["leaf_client_cert_not_before"] = timestamp(when, "leaf_client_cert_validity")
            elif key == "NotAfter":
                elb["leaf_client_cert_not_after"] = timestamp(when, "leaf_client_cert_validity")
    if (v := f[9]) != "-":
        elb["leaf_client_cert_serial_number"] = v
    status, _, code = f[10].partition(":")
    if status != "-":
        elb["tls_verify_status"] = status
    if code:
        elb["tls_error_code"] = code
    event["outcome"] = "failure" if status == "Failed" else "success"
    if n > 11 and (v := f[11]) != "-":
        elb["connection_trace_id"] = v
    if n > 12 and (v := f[12]) != "-":
        elb["tls_keyexchange"] = v
    if n > 13 and (v := f[13]) != "-":
        elb["name"] = v
    if n > 14 and (v := f[14]) != "-":
        elb["ip_address"] = v
    if n > KNOWN_FIELDS:
        elb["extra_fields"] = f[KNOWN_FIELDS:]
    return out
