"""Network Load Balancer TLS access logs (reference §4): 21 or 22 fields.

``time`` has no fraction and no zone; it is UTC. Connection and handshake times are milliseconds.
"""

from __future__ import annotations

from typing import Any

from elb_log_shipper.errors import ParseError
from elb_log_shipper.formats._values import (
    ECS,
    MEMO_LIMIT,
    byte_count,
    client_source,
    ip_port,
    milliseconds,
    timestamp,
    tls_version,
)

__all__ = ["KNOWN_FIELDS", "MIN_FIELDS", "parse"]

# Through sent_bytes: fewer fields is a truncated line.
MIN_FIELDS = 11
KNOWN_FIELDS = 22


_destinations: dict[str, tuple[str, int]] = {}


def _destination(value: str) -> tuple[str, int]:
    if len(_destinations) >= MEMO_LIMIT:
        _destinations.clear()
    found = _destinations[value] = ip_port(value, "destination:port")
    return found


def parse(f: list[str]) -> dict[str, Any]:
    """Event fields of one NLB access-log line split into fields ``f``."""
    n = len(f)
    if n < MIN_FIELDS:
        raise ParseError(f"NLB line has {n} fields, at least {MIN_FIELDS} expected")
    ts = timestamp(f[2], "time")
    # No HTTP in an NLB line: Elastic's pipeline calls its protocol `tcp`.
    elb: dict[str, Any] = {
        "type": f[0],
        "version": f[1],
        "name": f[3],
        "listener": f[4],
        "protocol": "tcp",
    }
    event: dict[str, Any] = {
        "kind": "event",
        "category": ["network"],
        "dataset": "aws.elb_logs",
        "end": ts,
    }
    out: dict[str, Any] = {"@timestamp": ts, "ecs": ECS, "event": event, "aws": {"elb": elb}}
    source: dict[str, Any] = {} if (v := f[5]) == "-" else client_source(v)
    destination: dict[str, Any] = {}
    if (v := f[6]) != "-":
        # A handful of targets: checked once each.
        ip, port = _destinations.get(v) or _destination(v)
        destination["ip"], destination["port"] = ip, port
        # ECS calls the target the destination; Elastic's integration calls it the backend (its
        # port a keyword), and its dashboards read that: both are set.
        elb["backend"] = {"ip": ip, "port": str(port)}
    value = milliseconds(f[7], "connection_time")
    if value is not None:
        elb["connection_time"] = {"ms": value}
    handshake = milliseconds(f[8], "tls_handshake_time")
    if handshake is not None:
        elb["tls_handshake_time"] = {"ms": handshake}
    size = byte_count(f[9], "received_bytes")
    if size is not None:
        source["bytes"] = size
    size = byte_count(f[10], "sent_bytes")
    if size is not None:
        destination["bytes"] = size
    alert = f[11] if n > 11 and f[11] != "-" else None
    if alert is not None:
        elb["incoming_tls_alert"] = alert
    event["outcome"] = "success" if handshake is not None and alert is None else "failure"
    if n > 12 and (v := f[12]) != "-":
        elb["chosen_cert"] = {"arn": v}
    if n > 13 and (v := f[13]) != "-":
        elb.setdefault("chosen_cert", {})["serial"] = v
    tls: dict[str, Any] = {}
    if n > 14 and (v := f[14]) != "-":
        elb["ssl_cipher"] = tls["cipher"] = v
    if n > 15 and (v := f[15]) != "-":
        elb["ssl_protocol"] = v
        version = tls_version(v)
        if version is not None:
            tls["version"], tls["version_protocol"] = version
    if tls:
        out["tls"] = tls
    if n > 16 and (v := f[16]) != "-":
        elb["tls_named_group"] = v
    if n > 17 and (v := f[17]) != "-":
        destination["domain"] = v
    if n > 18 and (v := f[18]) != "-":
        elb["alpn_fe_protocol"] = v
    if n > 19 and (v := f[19]) != "-":
        elb["alpn_be_protocol"] = v
    if n > 20 and (v := f[20]) != "-":
        elb["alpn_client_preference_list"] = alpn_list(v)
    if n > 21 and (v := f[21]) != "-":
        elb["tls_connection_creation_time"] = timestamp(v, "tls_connection_creation_time")
    if source:
        out["source"] = source
    if destination:
        out["destination"] = destination
    if n > KNOWN_FIELDS:
        elb["extra_fields"] = f[KNOWN_FIELDS:]
    return out


def alpn_list(value: str) -> list[str]:
    """``"h2","http/1.1"`` (quotes possibly backslash-escaped) → ``["h2", "http/1.1"]``."""
    return [item.strip('\\"') for item in value.split(",") if item.strip('\\"')]
