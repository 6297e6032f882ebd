"""ALB connection logs (reference §5, 2023): 12 fields, 15 with the later additions."""

from __future__ import annotations

from typing import Any

from elb_log_shipper.errors import ParseError
from elb_log_shipper.formats._values import duration, integer, timestamp, tls_version

__all__ = ["KNOWN_FIELDS", "MIN_FIELDS", "parse"]

MIN_FIELDS = 12
KNOWN_FIELDS = 15


def parse(f: list[str]) -> dict[str, Any]:
    """Event fields of one ALB connection-log line split into fields ``f``."""
    n = len(f)
    if n < MIN_FIELDS:
        raise ParseError(f"connection log line has {n} fields, at least {MIN_FIELDS} expected")
    ts = timestamp(f[0], "timestamp")
    elb: dict[str, Any] = {}
    event: dict[str, Any] = {"kind": "event", "category": ["network"], "dataset": "aws.elb_logs"}
    out: dict[str, Any] = {"@timestamp": ts, "event": event, "aws": {"elb": elb}}
    port = integer(f[2], "client_port")
    out["source"] = {"ip": f[1]} if port is None else {"ip": f[1], "port": port}
    listener = integer(f[3], "listener_port")
    if listener is not None:
        elb["listener_port"] = listener
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
        elb["tls_handshake_latency"] = {"sec": latency}
    if (v := f[7]) != "-":
        elb["leaf_client_cert_subject"] = v
    if (v := f[8]) != "-":
        for part in v.split(";"):
            key, _, when = part.partition("=")
            if key == "NotBefore":
                elb["leaf_client_cert_not_before"] = when
            elif key == "NotAfter":
                elb["leaf_client_cert_not_after"] = when
    if (v := f[9]) != "-":
        elb["leaf_client_cert_serial_number"] = v
    status = f[10]
    if status != "-":
        elb["tls_verify_status"] = status
    event["outcome"] = "failure" if status.startswith("Failed") else "success"
    if (v := f[11]) != "-":
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
