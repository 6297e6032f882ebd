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

_backends: dict[str, dict[str, dict[str, Any]]] = {}
_NO_BACKENDS: dict[str, dict[str, Any]] = {}
_agents: dict[str, dict[str, str]] = {}
_tls: dict[str, dict[str, dict[str, str]]] = {}
_target_groups: dict[str, dict[str, str]] = {}
_certificates: dict[str, dict[str, str]] = {}
_domains: dict[str, dict[str, str]] = {}
_ciphers: dict[str, dict[str, str]] = {}
_EMPTY: dict[str, dict[str, str]] = {}


# The 29 documented fields; an older, shorter line is padded with "-" (absent) to this length.
_DOCUMENTED = 29
_PADDING = ["-"] * _DOCUMENTED
# Fields appended since 2024, by position.
_LATER_FIELDS = (
    (29, "connection_trace_id"),
    (30, "transformed_host"),
    (31, "transformed_uri"),
    (32, "request_transform_status"),
)


def parse(f: list[str]) -> dict[str, Any]:
    """Event fields of one ALB access-log line split into fields ``f``."""
    n = len(f)
    if n < MIN_FIELDS:
        raise ParseError(f"ALB line has {n} fields, at least {MIN_FIELDS} expected")
    # One unpacking into locals is much cheaper than 29 subscripts and length checks.
    (
        kind,
        ts,
        name,
        client,
        target,
        request_time,
        target_time,
        response_time,
        status,
        target_status,
        received,
        sent,
        request_line,
        agent,
        cipher,
        protocol,
        group,
        trace,
        domain,
        cert,
        priority,
        created,
        actions,
        redirect,
        reason,
        targets,
        statuses,
        classification,
        classification_reason,
    ) = f[:_DOCUMENTED] if n >= _DOCUMENTED else f + _PADDING[n:]
    try:
        if not (
            len(ts) == 27 and ts[26] == "Z" and valid_seconds.get(ts[:19]) and ts[20:26].isdigit()
        ):
            ts = timestamp(ts, "time")
        elb: dict[str, Any] = {"type": kind, "name": name}
        if status == "-":
            outcome = "unknown"
            response: dict[str, Any] = {}
        else:
            code = int(status)
            outcome = "success" if code < 400 else "failure"
            response = {"status_code": code}
        event: dict[str, Any] = {
            "kind": "event",
            "category": ["web"],
            "outcome": outcome,
            "dataset": "aws.elb_logs",
            "end": ts,
        }
        out: dict[str, Any] = {"@timestamp": ts, "event": event, "aws": {"elb": elb}}
        if client != "-":
            ip, _, port = client.rpartition(":")
            if not ip or not port.isdigit():
                raise ValueError(client)
            out["source"] = {"ip": ip, "port": int(port)}
        backend = _backends.get(target, _NO_BACKENDS).get(target_status)
        if backend is None:
            backend = _backend(target, target_status)
        if backend:
            elb["backend"] = backend
        if (time := _seconds.get(request_time)) is not None or (
            time := seconds(request_time, "")
        ) is not None:
            elb["request_processing_time"] = time
        if (time := _seconds.get(target_time)) is not None or (
            time := seconds(target_time, "")
        ) is not None:
            elb["backend_processing_time"] = time
        if (time := _seconds.get(response_time)) is not None or (
            time := seconds(response_time, "")
        ) is not None:
            elb["response_processing_time"] = time
        if sent != "-":
            response["body"] = {"bytes": int(sent)}
        request: dict[str, Any] = {"body": {"bytes": int(received)}} if received != "-" else {}
        http: dict[str, Any] = {"request": request}
        if response:
            http["response"] = response
        out["http"] = http
        parse_request(request_line, http, out)
        if not request:
            del http["request"]

        if agent != "-" and agent:
            found = _agents.get(agent)
            if found is None:
                if len(_agents) >= MEMO_LIMIT:
                    _agents.clear()
                found = _agents[agent] = {"original": agent}
            out["user_agent"] = found
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
        if group != "-":
            elb["target_group"] = _target_groups.get(group) or _shared(_target_groups, "arn", group)
        if trace != "-":
            elb["trace_id"] = trace
            out["trace"] = {"id": trace}
        if domain != "-":
            out["destination"] = _domains.get(domain) or _shared(_domains, "domain", domain)
        if cert != "-":
            elb["chosen_cert"] = _certificates.get(cert) or _shared(_certificates, "arn", cert)
        if priority != "-":
            elb["matched_rule_priority"] = priority
        if created != "-":
            if not (
                len(created) == 27
                and created[26] == "Z"
                and valid_seconds.get(created[:19])
                and created[20:26].isdigit()
            ):
                created = timestamp(created, "request_creation_time")
            event["start"] = created
        if actions != "-":
            elb["action_executed"] = actions.split(",")
        if redirect != "-":
            elb["redirect_url"] = redirect
        if reason != "-":
            elb["error"] = {"reason": reason}
        if targets != "-" and targets:
            elb["target_port"] = targets.split(" ")
        if statuses != "-" and statuses:
            elb["target_status_code"] = statuses.split(" ")
        if classification != "-":
            elb["classification"] = classification
        if classification_reason != "-":
            elb["classification_reason"] = classification_reason
        if n > _DOCUMENTED:
            for index, field in _LATER_FIELDS:
                if index < n and (value := f[index]) != "-":
                    elb[field] = value
            if n > KNOWN_FIELDS:
                elb["extra_fields"] = f[KNOWN_FIELDS:]
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
    _backends.setdefault(target, {})[code] = backend
    return backend


def _shared(memo: dict[str, dict[str, str]], name: str, value: str) -> dict[str, str]:
    """A one-key object such as ``{"arn": value}``, shared between events."""
    found = memo.get(value)
    if found is None:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        found = memo[value] = {name: value}
    return found


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
