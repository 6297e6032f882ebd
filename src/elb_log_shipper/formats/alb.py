"""Application Load Balancer access logs (reference §3): 29 documented fields and more appended.

Fields are read by position; a shorter line (older files) simply lacks the later fields and a
longer one keeps what follows the known fields in ``aws.elb.extra_fields``.

This is the hottest code of the product, so it trades a little elegance for speed: sub-objects
whose source text repeats across lines (user agent, TLS, target group, certificate, domain,
target and its status, processing times) are memoised and shared between events. Events are
serialised, never mutated after they are built, so sharing is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any, Generic, TypeVar

from elb_log_shipper.errors import ParseError
from elb_log_shipper.formats._values import (
    ECS,
    LONG_MAX,
    MEMO_LIMIT,
    PORT_MAX,
    REDACTED,
    STATUS_MAX,
    _seconds,
    byte_count,
    client_source,
    duration,
    host_port,
    integer,
    parse_request,
    seconds,
    target_port,
    timestamp,
    tls_version,
    valid_seconds,
)

__all__ = ["KNOWN_FIELDS", "MIN_FIELDS", "TYPES", "parse", "parse_quoted_parts"]

TYPES = frozenset({"http", "https", "h2", "grpcs", "ws", "wss"})
# Through sent_bytes: a line with less than this is truncated, not an older format.
MIN_FIELDS = 12
KNOWN_FIELDS = 33

_V = TypeVar("_V")


class _PairMemo(Generic[_V]):
    """Values by two keys, read on the per-line path as ``by_outer.get(a, {}).get(b)``, and
    bounded as the other memos are, in its values over all its inner dicts: bounding the outer
    dict alone let the lines of one target (or cipher) with ever new status codes (or
    protocols) grow it for the container's life."""

    __slots__ = ("_count", "by_outer")

    def __init__(self) -> None:
        self.by_outer: dict[str, dict[str, _V]] = {}
        self._count = 0

    def remember(self, outer: str, inner: str, value: _V) -> None:
        if self._count >= MEMO_LIMIT:
            self.by_outer.clear()  # in place: the module's names for it stay valid
            self._count = 0
        self.by_outer.setdefault(outer, {})[inner] = value
        self._count += 1


_BACKENDS: _PairMemo[dict[str, Any]] = _PairMemo()
_backends = _BACKENDS.by_outer
_NO_BACKENDS: dict[str, dict[str, Any]] = {}
_agents: dict[str, dict[str, str]] = {}
_TLS: _PairMemo[dict[str, str]] = _PairMemo()
_tls = _TLS.by_outer
_target_groups: dict[str, dict[str, str]] = {}
_certificates: dict[str, dict[str, str]] = {}
_domains: dict[str, dict[str, str]] = {}
_EMPTY: dict[str, dict[str, str]] = {}


# The 29 documented fields; an older, shorter line is padded with "-" (absent) to this length.
_DOCUMENTED = 29
_PADDING = ["-"] * _DOCUMENTED
# Fields appended since 2024, in the order they follow the documented ones.
_LATER_FIELDS = (
    "connection_trace_id",
    "transformed_host",
    "transformed_uri",
    "request_transform_status",
)


def parse(f: list[str]) -> dict[str, Any]:
    """Event fields of one ALB access-log line split into fields ``f``."""
    n = len(f)
    if n < MIN_FIELDS:
        raise ParseError(f"ALB line has {n} fields, at least {MIN_FIELDS} expected")
    # The 29 documented fields and the list of later ones (list[Any]: mypy cannot count a list).
    args: list[Any] = f[:_DOCUMENTED] if n >= _DOCUMENTED else f + _PADDING[n:]
    if not ("".join(args[:12]).isascii() and args[21].isascii()):
        _check_strictly(args)
    args.append(f[_DOCUMENTED:])
    return _event(*args)


def _check_strictly(args: list[str]) -> None:
    """Raise ParseError for the first invalid field of those ``_event`` reads as ASCII (slow: only
    for a line with non-ASCII text among its first 12 fields or in request_creation_time)."""
    timestamp(args[1], "time")
    if args[21] != "-":
        timestamp(args[21], "request_creation_time")
    problem = _first_invalid(args[3:12])
    if problem is not None:
        raise ParseError(problem)


# What `line.split('"')` gives for the ALB layout of every file since 2018 (parts[1:24:2] are
# the 12 quoted fields): 6 single spaces between neighbouring quoted fields.
_ALB_SPACES = [" "] * 6
# The parts of a line of 2025's layout, with the three quoted transform fields: 31.
_TRANSFORMED_PARTS = 31


def parse_quoted_parts(parts: list[str]) -> dict[str, Any] | None:
    """Event fields of an ALB line from ``line.split('"')``, or None to take the general path.

    The fast path for nearly all real traffic: it reads the fields straight from the quoted and
    unquoted parts, without building the tokenizer's field list. It answers only for a line
    without backslashes in the common layout (12 quoted fields; 12, 3 and 2 unquoted fields
    around them; plain tokens after them; or, since 2025, the connection's trace id and three
    more quoted fields before those tokens) and then gives exactly what the tokenizer and
    ``parse`` give, which a property test checks; for anything else it returns None.
    """
    count = len(parts)
    if count == 25:
        tail = parts[24]
        later = tail.split() if tail else _NO_MORE
    elif count == _TRANSFORMED_PARTS:
        # 2025's layout: the connection's trace id between the last two groups of quoted fields,
        # then the transformed host, the transformed URI and the transform's status, quoted.
        trace = parts[24].split()
        if len(trace) != 1 or parts[24][-1] != " " or parts[26] != " " or parts[28] != " ":
            return None
        tail = parts[30]
        later = [trace[0], parts[25], parts[27], parts[29]]
        if tail:
            later += tail.split()
    else:
        return None
    head = parts[0].split()
    middle = parts[4].split()
    created = parts[10].split()
    if (
        len(head) != 12
        or head[0] not in TYPES
        or len(middle) != 3
        or len(created) != 2
        or parts[0][-1:] != " "
        or parts[4][-1:] != " "
        or parts[10][-1:] != " "
        # `_event` reads the numbers and times of these two as ASCII (`isascii` is O(1): a flag).
        or not parts[0].isascii()
        or not parts[10].isascii()
        or parts[2] != " "
        or parts[6] != " "
        or parts[8] != " "
        or parts[12:23:2] != _ALB_SPACES
    ):
        return None
    (kind, ts, name, client, target, request_time, target_time, response_time, status,
     target_status, received, sent) = head  # fmt: skip
    return _event(
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
        parts[1],
        parts[3],
        middle[0],
        middle[1],
        middle[2],
        parts[5],
        parts[7],
        parts[9],
        created[0],
        created[1],
        parts[11],
        parts[13],
        parts[15],
        parts[17],
        parts[19],
        parts[21],
        parts[23],
        later,
    )


_NO_MORE: list[str] = []
_HEAD_MIDDLE_CREATED = [12, 3, 2]
_TWO_SPACES = [" ", " "]


def common_layout(parts: list[str]) -> bool:
    """Whether ``parse_quoted_parts`` reads ``parts`` (it then gives the event, or raises
    ParseError for a value), without building the event: for a caller that decides on the line
    unparsed (a drop filter; ``privacy.LinePrivacy.alb_parts``). A property test holds the two
    to the same answer.

    >>> line = 'h2 1 2 3 4 5 6 7 8 9 10 11 "r" "a" x y z "t" "d" "c" 0 c' + ' "-"' * 7
    >>> common_layout(line.split('"')), common_layout(line.replace("x y z", "x y").split('"'))
    (True, False)
    """
    count = len(parts)
    if count == _TRANSFORMED_PARTS:
        trace = parts[24]
        if len(trace.split()) != 1 or trace[-1:] != " " or parts[26:29:2] != _TWO_SPACES:
            return False
    elif count != 25:  # 2018-2024's layout
        return False
    head = parts[0].split()
    return (
        [len(head), len(parts[4].split()), len(parts[10].split())] == _HEAD_MIDDLE_CREATED
        and head[0] in TYPES
        and parts[0][-1:] == parts[4][-1:] == parts[10][-1:] == " "
        and parts[0].isascii()
        and parts[10].isascii()
        and parts[2] == parts[6] == parts[8] == " "
        and parts[12:23:2] == _ALB_SPACES
    )


def _event(  # noqa: PLR0917 - locals from one call are cheaper than a list read field by field
    kind: str,
    ts: str,
    name: str,
    client: str,
    target: str,
    request_time: str,
    target_time: str,
    response_time: str,
    status: str,
    target_status: str,
    received: str,
    sent: str,
    request_line: str,
    agent: str,
    cipher: str,
    protocol: str,
    group: str,
    trace: str,
    domain: str,
    cert: str,
    priority: str,
    created: str,
    actions: str,
    redirect: str,
    reason: str,
    targets: str,
    statuses: str,
    classification: str,
    classification_reason: str,
    later: list[str],
) -> dict[str, Any]:
    """The event fields of the 29 documented fields and the ``later`` ones appended since.

    ``ts``, ``client``, ``status``, ``received``, ``sent`` and ``created`` must be ASCII (both
    callers test the text they come from): their digits are tested with ``isdigit``, which is
    also true of other scripts' digits (U+0665, Arabic-Indic five), and int() reads those.
    """
    try:
        if not (
            # The memo's key holds the point after the seconds: a time whose seconds are known
            # but whose point is another character is read (and failed) by timestamp().
            len(ts) == 27 and ts[26] == "Z" and valid_seconds.get(ts[:20]) and ts[20:26].isdigit()
        ):
            ts = timestamp(ts, "time")
        # Every ALB line carries an HTTP status, so Elastic's pipeline calls it `http`.
        elb: dict[str, Any] = {"type": kind, "name": name, "protocol": "http"}
        known = _statuses.get(status)
        if known is not None:
            code, outcome = known
            response: dict[str, Any] = {"status_code": code}
        elif status == "-":
            outcome = "unknown"
            response = {}
        else:
            code, outcome = _status(status)
            response = {"status_code": code}
        event: dict[str, Any] = {
            "kind": "event",
            "category": ["web"],
            "outcome": outcome,
            "dataset": "aws.elb_logs",
            "end": ts,
        }
        out: dict[str, Any] = {"@timestamp": ts, "ecs": ECS, "event": event, "aws": {"elb": elb}}
        if client != "-":
            ip, _, port = client.rpartition(":")
            if not ip or not port.isdigit():
                raise ValueError(client)
            number = int(port)
            if number > PORT_MAX or ip[0] == "[":
                # Rare: a bracketed IPv6 address, or a port no TCP port can be.
                ip, number = host_port(client, "client:port")
            # `_values.ip_address`, inline: an `ip` field takes nothing else.
            try:
                inet_pton(AF_INET6 if ":" in ip else AF_INET, ip)
            except OSError:
                if ip != REDACTED:
                    raise
                # The privacy rules' answer for a client that is no address: no `ip` field.
                out["source"] = {"address": ip, "port": number}
            else:
                out["source"] = {"address": ip, "ip": ip, "port": number}
        backend = _backends.get(target, _NO_BACKENDS).get(target_status)
        if backend is None:
            backend = _backend(target, target_status)
        if backend:
            elb["backend"] = backend
        if (time := _seconds.get(request_time)) is not None or (
            time := seconds(request_time, "request_processing_time")
        ) is not None:
            elb["request_processing_time"] = time
        if (time := _seconds.get(target_time)) is not None or (
            time := seconds(target_time, "target_processing_time")
        ) is not None:
            elb["backend_processing_time"] = time
        if (time := _seconds.get(response_time)) is not None or (
            time := seconds(response_time, "response_processing_time")
        ) is not None:
            elb["response_processing_time"] = time
        # `-1` bytes (no count) is absent like `-`; a count no `long` holds fails the line, and
        # so does any other text than digits.
        if sent.isdigit():
            size = int(sent)
            if size > LONG_MAX:
                raise ValueError(sent)
            response["body"] = {"bytes": size}
        elif sent not in {"-", "-1"}:
            raise ValueError(sent)
        request: dict[str, Any] = {}
        if received.isdigit():
            size = int(received)
            if size > LONG_MAX:
                raise ValueError(received)
            request["body"] = {"bytes": size}
        elif received not in {"-", "-1"}:
            raise ValueError(received)
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
                and valid_seconds.get(created[:20])
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
        if later:
            for field, value in zip(_LATER_FIELDS, later, strict=False):
                if value != "-":
                    elb[field] = value  # noqa: PERF403 - cheaper than a comprehension for 1-4
            if len(later) > len(_LATER_FIELDS):
                elb["extra_fields"] = later[len(_LATER_FIELDS) :]
        return out
    except (ValueError, OSError):  # OSError: `inet_pton`
        # The fast path converts without naming fields; find the culprit for the message.
        checked = [client, target, request_time, target_time, response_time, status]
        raise ParseError(diagnose([*checked, target_status, received, sent])) from None


def diagnose(values: list[str]) -> str:
    """Name the first of ``values`` (client:port through sent_bytes) that is invalid, and why
    (slow; only for failed lines)."""
    return _first_invalid(values) or "invalid field value"


def _first_invalid(values: list[str]) -> str | None:
    """``diagnose``'s answer; None when every value is valid."""
    checks: tuple[tuple[str, Callable[[str], object]], ...] = (
        ("client:port", lambda v: v == "-" or client_source(v, "")),
        ("target:port", lambda v: v == "-" or target_port(v, "")),
        ("request_processing_time", lambda v: duration(v, "")),
        ("target_processing_time", lambda v: duration(v, "")),
        ("response_processing_time", lambda v: duration(v, "")),
        ("elb_status_code", lambda v: integer(v, "", STATUS_MAX)),
        ("target_status_code", lambda v: integer(v, "", STATUS_MAX)),
        ("received_bytes", lambda v: byte_count(v, "")),
        ("sent_bytes", lambda v: byte_count(v, "")),
    )
    for (name, check), value in zip(checks, values, strict=True):
        try:
            check(value)
        except ParseError as error:
            # The checks are given no name: their message starts at ": <value> is ...".
            return f"{name}{error}"
        except ValueError:
            return f"{name}: {value!r} is not valid"
    return None


_statuses: dict[str, tuple[int, str]] = {}


def _status(text: str) -> tuple[int, str]:
    """The code and ``event.outcome`` of a valid elb_status_code, memoised; ValueError otherwise.

    Digits only: int() also reads `2_00` (and non-ASCII digits, which the callers exclude).
    """
    if not text.isdigit():
        raise ValueError(text)
    code = int(text)
    if code > STATUS_MAX:
        raise ValueError(text)
    if len(_statuses) >= MEMO_LIMIT:
        _statuses.clear()
    found = _statuses[text] = (code, "success" if code < 400 else "failure")
    return found


def _backend(target: str, code: str) -> dict[str, Any]:
    backend: dict[str, Any] = {}
    if target != "-":
        ip, port = target_port(target, "target:port")
        # The integration maps aws.elb.backend.port as a keyword.
        backend["ip"], backend["port"] = ip, str(port)
    if code != "-":
        status = integer(code, "target_status_code", STATUS_MAX)
        backend["http"] = {"response": {"status_code": status}}
    _BACKENDS.remember(target, code, backend)
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
    _TLS.remember(cipher, protocol, tls)
    return tls
