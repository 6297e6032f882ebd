"""Classic Load Balancer access logs (reference §2): 15 fields, 12 in files before 2015.

HTTP/HTTPS listeners log a request line; TCP/SSL listeners log ``"- - - "`` and no status codes.
"""

from __future__ import annotations

import re
from typing import Any

from elb_log_shipper.errors import ParseError
from elb_log_shipper.formats._values import (
    ECS,
    MEMO_LIMIT,
    STATUS_MAX,
    byte_count,
    client_source,
    integer,
    parse_request,
    seconds,
    target_port,
    timestamp,
    tls_version,
)

__all__ = ["KNOWN_FIELDS", "MIN_FIELDS", "parse"]

# Through sent_bytes: fewer fields is a truncated line.
MIN_FIELDS = 11
KNOWN_FIELDS = 15
# The request alone: the lines of before 2015, which AWS then extended to 15 fields (the user agent
# and the TLS fields). Between the two a field was split: the request holds raw quotes (an odd
# number leaves one unclosed), so every field after it moved on.
_SHORTER_FIELDS = 12
# Past 15 fields, AWS may have appended some (§1: kept as extras), or the request was split as
# above; the split shows where the cipher and the protocol should be: other fields' text.
_CIPHER = re.compile(r"-|[A-Z0-9_-]+")
_PROTOCOL = re.compile(r"-|(?:TLS|SSL)v[0-9.]+")


_backends: dict[str, tuple[str, str]] = {}


def _backend(value: str) -> tuple[str, str]:
    """The instance's address and port; the integration maps aws.elb.backend.port as a
    keyword."""
    ip, port = target_port(value, "backend:port")
    if len(_backends) >= MEMO_LIMIT:
        _backends.clear()
    found = _backends[value] = (ip, str(port))
    return found


def parse(f: list[str]) -> dict[str, Any]:
    """Event fields of one Classic access-log line split into fields ``f``."""
    n = len(f)
    if n < MIN_FIELDS:
        raise ParseError(f"Classic line has {n} fields, at least {MIN_FIELDS} expected")
    if n != KNOWN_FIELDS and n > _SHORTER_FIELDS and _split(f):
        raise ParseError(
            f"Classic line has {n} fields, not {_SHORTER_FIELDS} or {KNOWN_FIELDS}: a field is "
            "split (raw quotes in the request), so the fields after it cannot be told apart"
        )
    ts = timestamp(f[0], "timestamp")
    elb: dict[str, Any] = {"name": f[1]}
    event: dict[str, Any] = {"kind": "event", "dataset": "aws.elb_logs", "end": ts}
    out: dict[str, Any] = {"@timestamp": ts, "ecs": ECS, "event": event, "aws": {"elb": elb}}
    if (v := f[2]) != "-":
        out["source"] = client_source(v)
    backend: dict[str, Any] = {}
    # No instance reached: `-` (and `-1` in some old files).
    if (v := f[3]) != "-" and v != "-1":
        # A handful of instances: each read once.
        backend["ip"], backend["port"] = _backends.get(v) or _backend(v)
    if (time := seconds(f[4], "request_processing_time")) is not None:
        elb["request_processing_time"] = time
    if (time := seconds(f[5], "backend_processing_time")) is not None:
        elb["backend_processing_time"] = time
    if (time := seconds(f[6], "response_processing_time")) is not None:
        elb["response_processing_time"] = time
    status = integer(f[7], "elb_status_code", STATUS_MAX)
    code = integer(f[8], "backend_status_code", STATUS_MAX)
    if code is not None:
        backend["http"] = {"response": {"status_code": code}}
    if backend:
        elb["backend"] = backend
    # TCP/SSL lines may write `-1`: no count, like `-`.
    received = byte_count(f[9], "received_bytes")
    sent = byte_count(f[10], "sent_bytes")

    request: dict[str, Any] = {}
    response: dict[str, Any] = {}
    http: dict[str, Any] = {"request": request, "response": response}
    is_http = n > 11 and parse_request(f[11], http, out)
    if is_http or status is not None:
        elb["protocol"] = "http"
        event["category"] = ["web"]
        if status is not None:
            response["status_code"] = status
        if received is not None:
            request["body"] = {"bytes": received}
        if sent is not None:
            response["body"] = {"bytes": sent}
    else:
        # TCP/SSL listener: bytes of a connection, not of an HTTP body.
        elb["protocol"] = "tcp"
        event["category"] = ["network"]
        if received is not None:
            out["source"] = {**out.get("source", {}), "bytes": received}
        if sent is not None:
            out["destination"] = {"bytes": sent}
    if request:
        http["request"] = request
    else:
        del http["request"]
    if not response:
        del http["response"]
    if http:
        out["http"] = http
    if status is not None:
        event["outcome"] = "success" if status < 400 else "failure"
    elif code is not None:
        event["outcome"] = "success" if code < 400 else "failure"
    elif is_http:
        event["outcome"] = "success"
    else:
        # A TCP/SSL listener writes no status: a connection that reached no instance (backend
        # `-`, times `-1`: it could not be dispatched, or the client sent nothing) failed.
        reached = "ip" in backend and "request_processing_time" in elb
        event["outcome"] = "success" if reached else "failure"

    if n > 12 and (v := f[12]) != "-" and v:
        out["user_agent"] = {"original": v}
    if n > 13 and (v := f[13]) != "-":
        elb["ssl_cipher"] = v
        out["tls"] = {"cipher": v}
    if n > 14 and (v := f[14]) != "-":
        elb["ssl_protocol"] = v
        version = tls_version(v)
        if version is not None:
            tls = out.setdefault("tls", {})
            tls["version"], tls["version_protocol"] = version
    if n > KNOWN_FIELDS:
        elb["extra_fields"] = f[KNOWN_FIELDS:]
    return out


def _split(f: list[str]) -> bool:
    """Whether a line of more than 12 fields, and not 15, has its request split by raw quotes:
    13 or 14 fields, or more than 15 without a cipher and a protocol where 15 fields have them
    (what AWS appends comes after them)."""
    return (
        len(f) < KNOWN_FIELDS
        or _CIPHER.fullmatch(f[13]) is None
        or _PROTOCOL.fullmatch(f[14]) is None
    )
