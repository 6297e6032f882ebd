"""Application Load Balancer access logs (reference §3): 29 documented fields and more appended.

Fields are read by position; a shorter line (older files) simply lacks the later fields and a
longer one keeps what follows the known fields in ``aws.elb.extra_fields``.

This is the hottest code of the product, so it trades a little elegance for speed: sub-objects
whose source text repeats across lines (user agent, TLS, target group, certificate, domain,
target and its status, processing times) are memoised and shared between events. Events are
serialised, never mutated after they are built, so sharing is safe.
"""

from __future__ import annotations

from typing import Any

from elb_log_shipper.errors import ParseError
from elb_log_shipper.formats._values import (
    MEMO_LIMIT,
    _seconds,
    duration,
    host_port,
    integer,
    parse_request,
    seconds,
    timestamp,
    tls_version,
    valid_seconds,
)

__all__ = ["KNOWN_FIELDS", "MIN_FIELDS", "TYPES", "parse"]

TYPES = frozenset({"http", "https", "h2", "grpcs", "ws", "wss"})
# Through sent_bytes: a line with less than this is truncated, not an older format.
MIN_FIELDS = 12
KNOWN_FIELDS = 33

_backends: dict[str, dict[str, Any]] = {}
_agents: dict[str, dict[str, str]] = {}
_tls: dict[str, dict[str, dict[str, str]]] = {}
_target_groups: dict[str, dict[str, str]] = {}
_certificates: dict[str, dict[str, str]] = {}
_domains: dict[str, dict[str, str]] = {}
_ciphers: dict[str, dict[str, str]] = {}
_EMPTY: dict[str, dict[str, str]] = {}


def parse(f: list[str]) -> dict[str, Any]:
    """Event fields of one ALB access-log line split into fields ``f``."""
    n = len(f)
    if n < MIN_FIELDS:
        raise ParseError(f"ALB line has {n} fields, at least {MIN_FIELDS} expected")
    try:
        ts = f[1]
        if not (
            len(ts) == 27 and ts[26] == "Z" and valid_seconds.get(ts[:19]) and ts[20:26].isdigit()
        ):
            ts = timestamp(ts, "time")
        elb: dict[str, Any] = {"type": f[0], "name": f[2]}
        v = f[8]
        if v == "-":
            outcome = "unknown"
            response: dict[str, Any] = {}
        else:
            status = int(v)
            outcome = "success" if status < 400 else "failure"
            response = {"status_code": status}
        event: dict[str, Any] = {
            "kind": "event",
            "category": ["web"],
            "outcome": outcome,
            "dataset": "aws.elb_logs",
            "end": ts,
        }
        out: dict[str, Any] = {"@timestamp": ts, "event": event, "aws": {"elb": elb}}
        if (v := f[3]) != "-":
            ip, _, port = v.rpartition(":")
            if not ip or not port.isdigit():
                raise ValueError(v)
            out["source"] = {"ip": ip, "port": int(port)}
        backend = _backends.get(f[4] + " " + f[9])
        if backend is None:
            backend = _backend(f[4], f[9])
        if backend:
            elb["backend"] = backend
        if (time := _seconds.get(f[5])) is not None or (time := seconds(f[5], "")) is not None:
            elb["request_processing_time"] = time
        if (time := _seconds.get(f[6])) is not None or (time := seconds(f[6], "")) is not None:
            elb["backend_processing_time"] = time
        if (time := _seconds.get(f[7])) is not None or (time := seconds(f[7], "")) is not None:
            elb["response_processing_time"] = time
        if (v := f[11]) != "-":
            response["body"] = {"bytes": int(v)}
        if (v := f[10]) != "-":
            http: dict[str, Any] = {"request": {"body": {"bytes": int(v)}}}
        else:
            http = {"request": {}}
        if response:
            http["response"] = response
        out["http"] = http
        if n > 12:
            parse_request(f[12], http, out)
        if not http["request"]:
            del http["request"]
        if n > 13:
            _rest(f, n, out, elb, event)
        return out
    except ValueError:
        # The fast path converts without naming fields; find the culprit for the message.
        raise ParseError(diagnose(f)) from None


def diagnose(f: list[str]) -> str:
    """Name the first field of ``f`` whose value is invalid (slow; only for failed lines)."""
    checks = (
        (3, "client:port", lambda v: v == "-" or host_port(v, "client:port")),
        (4, "target:port", lambda v: v == "-" or host_port(v, "target:port")),
        (5, "request_processing_time", lambda v: duration(v, "")),
        (6, "target_processing_time", lambda v: duration(v, "")),
        (7, "response_processing_time", lambda v: duration(v, "")),
        (8, "elb_status_code", lambda v: integer(v, "")),
        (9, "target_status_code", lambda v: integer(v, "")),
        (10, "received_bytes", lambda v: integer(v, "")),
        (11, "sent_bytes", lambda v: integer(v, "")),
    )
    for index, name, check in checks:
        try:
            check(f[index])
        except (ParseError, ValueError):
            return f"{name}: {f[index]!r} is not valid"
    return "invalid field value"


def _backend(target: str, code: str) -> dict[str, Any]:
    backend: dict[str, Any] = {}
    if target != "-":
        backend["ip"], backend["port"] = host_port(target, "target:port")
    if code != "-":
        backend["http"] = {"response": {"status_code": int(code)}}
    if len(_backends) >= MEMO_LIMIT:
        _backends.clear()
    _backends[target + " " + code] = backend
    return backend


def _shared(memo: dict[str, dict[str, str]], name: str, value: str) -> dict[str, str]:
    """A one-key object such as ``{"arn": value}``, shared between events."""
    found = memo.get(value)
    if found is None:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        found = memo[value] = {name: value}
    return found


def _rest(f: list[str], n: int, out: dict[str, Any], elb: dict[str, Any], event: Any) -> None:
    v = f[13]
    if v != "-" and v:
        agent = _agents.get(v)
        if agent is None:
            if len(_agents) >= MEMO_LIMIT:
                _agents.clear()
            agent = _agents[v] = {"original": v}
        out["user_agent"] = agent
    if n > 15:
        cipher, protocol = f[14], f[15]
        if cipher != "-" or protocol != "-":
            tls = _tls.get(cipher, _EMPTY).get(protocol)
            if tls is None:
                tls = _tls_fields(cipher, protocol)
            if tls:
                out["tls"] = tls
            if cipher != "-":
                elb["ssl_cipher"] = cipher
            if protocol != "-":
                elb["ssl_protocol"] = protocol
    elif n > 14 and (v := f[14]) != "-":
        elb["ssl_cipher"] = v
        out["tls"] = _shared(_ciphers, "cipher", v)
    if n <= 16:
        return
    if (v := f[16]) != "-":
        elb["target_group"] = _target_groups.get(v) or _shared(_target_groups, "arn", v)
    if n > 17 and (v := f[17]) != "-":
        elb["trace_id"] = v
        out["trace"] = {"id": v}
    if n > 18 and (v := f[18]) != "-":
        out["destination"] = _domains.get(v) or _shared(_domains, "domain", v)
    if n > 19 and (v := f[19]) != "-":
        elb["chosen_cert"] = _certificates.get(v) or _shared(_certificates, "arn", v)
    if n > 20 and (v := f[20]) != "-":
        elb["matched_rule_priority"] = v
    if n > 21 and (v := f[21]) != "-":
        event["start"] = timestamp(v, "request_creation_time")
    if n > 22 and (v := f[22]) != "-":
        elb["action_executed"] = v.split(",")
    if n > 23 and (v := f[23]) != "-":
        elb["redirect_url"] = v
    if n > 24 and (v := f[24]) != "-":
        elb["error"] = {"reason": v}
    if n <= 25:
        return
    if (v := f[25]) != "-" and v:
        elb["target_port"] = v.split(" ")
    if n > 26 and (v := f[26]) != "-" and v:
        elb["target_status_code"] = v.split(" ")
    if n > 27 and (v := f[27]) != "-":
        elb["classification"] = v
    if n > 28 and (v := f[28]) != "-":
        elb["classification_reason"] = v
    if n > 29 and (v := f[29]) != "-":
        elb["connection_trace_id"] = v
    if n > 30 and (v := f[30]) != "-":
        elb["transformed_host"] = v
    if n > 31 and (v := f[31]) != "-":
        elb["transformed_uri"] = v
    if n > 32 and (v := f[32]) != "-":
        elb["request_transform_status"] = v
    if n > KNOWN_FIELDS:
        elb["extra_fields"] = f[KNOWN_FIELDS:]


def _tls_fields(cipher: str, protocol: str) -> dict[str, str]:
    tls: dict[str, str] = {}
    if cipher != "-":
        tls["cipher"] = cipher
    version = tls_version(protocol) if protocol != "-" else None
    if version is not None:
        tls["version"], tls["version_protocol"] = version
    if len(_tls) >= MEMO_LIMIT:
        _tls.clear()
    _tls.setdefault(cipher, {})[protocol] = tls
    return tls
