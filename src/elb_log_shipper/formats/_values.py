"""Conversions of single ELB field values, shared by the format modules.

Every function takes the raw field text and either returns the typed value, returns None for "no
value" (``-``), or raises ParseError naming the field. Values repeat heavily within one object
(timestamps to the second, TLS versions, target addresses), so the costlier conversions memoise in
bounded dictionaries.
"""

from __future__ import annotations

import re
from datetime import datetime
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any, Final

from elb_log_shipper.errors import ParseError
from elb_log_shipper.privacy import REDACTED

__all__ = [
    "ECS",
    "ECS_VERSION",
    "FLOAT_MAX",
    "LONG_MAX",
    "MEMO_LIMIT",
    "PORT_MAX",
    "REDACTED",
    "STATUS_MAX",
    "byte_count",
    "client_source",
    "duration",
    "host_port",
    "integer",
    "ip_address",
    "ip_port",
    "milliseconds",
    "parse_request",
    "seconds",
    "target_port",
    "timestamp",
    "tls_version",
    "valid_seconds",
]

# A bounded memo: cleared when full, so a long object with ever-new values cannot grow it forever.
# Sized to hold one object's distinct values for seconds/targets comfortably.
MEMO_LIMIT = 4096

# The ECS version our events follow: the one Elastic's elb_logs ingest pipeline sets (8.11.0), so
# that events shipped by us and by Elastic's integration carry the same value.
ECS_VERSION: Final = "8.11.0"
# `ecs` of every event: one object shared by all of them (events are never mutated once built).
ECS: Final[dict[str, str]] = {"version": ECS_VERSION}

# Elasticsearch's `long` is a signed 64-bit integer: a larger number is rejected by the mapping
# (and orjson cannot serialise an int of 2**64 or more at all).
LONG_MAX: Final = 2**63 - 1
# The largest finite value of Elasticsearch's `float` (IEEE single precision): a larger duration
# would be stored as infinity, which the mapping rejects.
FLOAT_MAX: Final = 3.4028234663852886e38
# TCP and UDP ports are 16-bit.
PORT_MAX: Final = 65535
# An HTTP status code has three digits (RFC 9110, section 15).
STATUS_MAX: Final = 999

# Whether the seconds of a timestamp are a valid date and time, by those seconds and the point
# that follows them (`2018-07-02T22:23:00.`): a key takes the point with it, so that a caller
# that reads a memoised timestamp's first 20 characters has checked the point too.
valid_seconds: dict[str, bool] = {}

# The seconds of a timestamp as ELB writes it, in ASCII digits. `datetime.fromisoformat` alone also
# reads other ISO 8601 text of 19 characters (`2018-07-02T22:23+01`, the week date
# `2018-W27-1T22:23:00`, the basic `2018-07-02T20364000`) and non-ASCII digits: Elasticsearch's
# date format reads none of them, and a `@timestamp` it cannot read loses the whole event. The
# hour is 00-23 here: Python 3.14's `fromisoformat` takes `T24:00:00` as the next midnight, which
# Elasticsearch's strict format refuses (a function moved to that runtime would pass it on).
_SECONDS_LAYOUT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-9]{2}:[0-9]{2}")


def timestamp(value: str, name: str) -> str:
    """Return ``value`` as RFC 3339 UTC with microseconds and ``Z``.

    ELB writes ``2018-07-02T22:23:00.186641Z`` (ALB, Classic, connection logs),
    ``2018-12-20T02:59:40`` without fraction or zone (NLB, which is UTC) and
    ``2023-09-21T22:43:21Z`` (connection logs' certificate validity). Accepted: exactly
    ``YYYY-MM-DDTHH:MM:SS``, a fraction of 1 to 9 digits, ``Z``, in ASCII, and a valid date and
    time; anything else is a ParseError naming the field.

    >>> timestamp("2018-12-20T02:59:40", "time")
    '2018-12-20T02:59:40.000000Z'
    >>> timestamp("2018-12-20T02:59+01", "time")
    Traceback (most recent call last):
    elb_log_shipper.errors.ParseError: time: '2018-12-20T02:59+01' is not an ISO 8601 timestamp
    """
    if (
        len(value) == 27
        and value[26] == "Z"
        and value[19] == "."
        and value[20:26].isdigit()
        and value.isascii()  # O(1) for a str: its ASCII-ness is a flag
    ):
        ok = valid_seconds.get(value[:20])
        if ok is None:
            ok = _check_seconds(value[:19])
        if ok:
            return value
    return _timestamp_slow(value, name)


def _check_seconds(seconds: str) -> bool:
    """Whether ``seconds`` (19 characters) is a valid date and time, remembered under
    ``seconds`` and the point (``valid_seconds``)."""
    try:
        valid = _SECONDS_LAYOUT.fullmatch(seconds) is not None and bool(
            datetime.fromisoformat(seconds)
        )
    except ValueError:
        valid = False
    if len(valid_seconds) >= MEMO_LIMIT:
        valid_seconds.clear()
    valid_seconds[f"{seconds}."] = valid
    return valid


def _timestamp_slow(value: str, name: str) -> str:
    text = value[:-1] if value.endswith("Z") else value
    fraction = ""
    if len(text) > 19 and text[19] == ".":
        text, fraction = text[:19], text[20:]
        if not (fraction.isdigit() and fraction.isascii()) or len(fraction) > 9:
            raise ParseError(f"{name}: {value!r} is not an ISO 8601 timestamp")
    if len(text) != 19 or not _check_seconds(text):
        raise ParseError(f"{name}: {value!r} is not an ISO 8601 timestamp")
    return f"{text}.{fraction[:6].ljust(6, '0')}Z"


def _is_integer_text(value: str) -> bool:
    """Whether ``value`` is an integer as ELB writes one: ASCII digits, after a minus sign at most.

    ``int()`` reads more (``2_00``, ``+200``, `` 200 ``, Arabic-Indic or fullwidth digits): a
    field holding such text is damaged, and its number is not what the load balancer wrote.
    """
    digits = value[1:] if value[:1] == "-" else value
    return digits.isdigit() and digits.isascii()


# A decimal number as ``float()`` reads it, less its extensions (``_`` between digits, a plus
# sign, surrounding whitespace, non-ASCII digits, ``nan``, ``inf``).
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def integer(value: str, name: str, high: int = LONG_MAX) -> int | None:
    """A non-negative integer of at most ``high``, in ASCII digits; None for ``-``.

    A number the mapping cannot hold is a parse failure, never an event Elasticsearch refuses.

    >>> integer("1000", "elb_status_code", 999)
    Traceback (most recent call last):
    elb_log_shipper.errors.ParseError: elb_status_code: '1000' is out of range 0-999
    >>> integer("2_00", "elb_status_code", 999)
    Traceback (most recent call last):
    elb_log_shipper.errors.ParseError: elb_status_code: '2_00' is not an integer
    """
    if value == "-":
        return None
    if value.isdigit() and value.isascii():
        number = int(value)
        if number <= high:
            return number
    elif not _is_integer_text(value):
        raise ParseError(f"{name}: {value!r} is not an integer")
    raise ParseError(f"{name}: {value!r} is out of range 0-{high}")


def byte_count(value: str, name: str) -> int | None:
    """A byte count; None for ``-`` and for ``-1`` (Classic TCP/SSL lines with no count).

    ``integer`` unrolled: one call a field, on the path of every line.
    """
    if value.isdigit() and value.isascii():
        number = int(value)
        if number <= LONG_MAX:
            return number
    elif value in {"-", "-1"}:
        return None
    elif not _is_integer_text(value):
        raise ParseError(f"{name}: {value!r} is not an integer")
    raise ParseError(f"{name}: {value!r} is out of range 0-{LONG_MAX}")


def duration(value: str, name: str) -> float | None:
    """Seconds or milliseconds as a float; None for ``-1`` (not dispatched, however written:
    ``-1.0``) and ``-``. No other time is negative: a ParseError, as for any value that is no
    time (``-0`` is 0).

    >>> duration("-1.000", "t"), duration("-0", "t"), duration("0.001", "t")
    (None, 0.0, 0.001)
    """
    if value in {"-1", "-"}:
        return None
    if _DECIMAL.fullmatch(value) is None:
        raise ParseError(f"{name}: {value!r} is not a number")
    number = float(value)
    if value[0] == "-":  # a test of the text: no float is made for the common time
        if number == -1:
            return None
        if number == 0:
            return 0.0  # not -0.0
        raise ParseError(f"{name}: {value!r} is negative, and not -1 (not dispatched)")
    # 1e999 reads as infinity, which no `float` mapping accepts.
    if number > FLOAT_MAX:
        raise ParseError(f"{name}: {value!r} is not a finite number")
    return number


def milliseconds(value: str, name: str) -> int | None:
    """Whole milliseconds (NLB's connection and handshake times, mapped as ``long``); None for
    ``-1`` and ``-``. A fraction, which NLB does not write, is cut as Elasticsearch would; any
    other negative time is a ParseError (``-0`` is 0), as in ``duration``.

    >>> milliseconds("2.5", "t"), milliseconds("-0", "t"), milliseconds("-01", "t")
    (2, 0, None)
    """
    if _is_integer_text(value) or value == "-":
        try:
            return byte_count(value, name)
        except ParseError:
            # Read from the text: int() refuses more than 4,300 digits.
            magnitude = value[1:].lstrip("0") if value[0] == "-" else None
            if magnitude == "":
                return 0
            if magnitude == "1":
                return None
            raise
    fraction = duration(value, name)  # a fraction, or not a number at all
    if fraction is None:  # -1.0
        return None
    number = int(fraction)
    if number <= LONG_MAX:
        return number
    raise ParseError(f"{name}: {value!r} is out of range 0-{LONG_MAX}")


_seconds: dict[str, dict[str, float]] = {}


def seconds(value: str, name: str) -> dict[str, float] | None:
    """``{"sec": float}`` for a processing time; None for ``-1`` (not dispatched) and ``-``.

    ALB writes milliseconds precision, so the values repeat and the objects are shared.
    """
    found = _seconds.get(value)
    if found is None:
        number = duration(value, name)
        if number is None:
            return None
        if len(_seconds) >= MEMO_LIMIT:
            _seconds.clear()
        found = _seconds[value] = {"sec": number}
    return found


def host_port(value: str, name: str) -> tuple[str, int]:
    """Split ``ip:port`` at the LAST colon (ELB does not bracket IPv6 addresses; the bracketed
    form ``[2001:db8::1]:443`` that some tools write is accepted and unbracketed).

    >>> host_port("2001:db8::1:443", "client:port")
    ('2001:db8::1', 443)
    >>> host_port("[2001:db8::1]:443", "client:port")
    ('2001:db8::1', 443)
    >>> host_port("[10.0.0.1:80", "target:port")
    Traceback (most recent call last):
    elb_log_shipper.errors.ParseError: target:port: '[10.0.0.1:80' is not an address:port

    A closing bracket without its opening one is left to the caller: ``ip_address`` refuses it
    for an ``ip`` field, ``target_port`` for a keyword.
    """
    ip, sep, port = value.rpartition(":")
    if not sep or not ip or not port.isdigit() or not port.isascii():
        raise ParseError(f"{name}: {value!r} is not an address:port")
    number = int(port)
    if number > PORT_MAX:
        raise ParseError(f"{name}: {value!r} has a port out of range 0-{PORT_MAX}")
    if ip[0] == "[":
        if ip[-1] != "]" or len(ip) < 3:
            raise ParseError(f"{name}: {value!r} is not an address:port")
        ip = ip[1:-1]
    return ip, number


def target_port(value: str, name: str) -> tuple[str, int]:
    """``host_port`` of a target's or backend's field, whose address is a keyword (which would
    take a damaged one as it is): a bracket without its pair fails the line. Memoised by its
    callers, so off the path of most lines.

    >>> target_port("10.0.0.1]:80", "backend:port")
    Traceback (most recent call last):
    elb_log_shipper.errors.ParseError: backend:port: '10.0.0.1]:80' is not an address:port
    """
    ip, port = host_port(value, name)
    if ip[-1] == "]":
        raise ParseError(f"{name}: {value!r} is not an address:port")
    return ip, port


def ip_address(ip: str) -> bool:
    """Whether ``ip`` is an address that an Elasticsearch ``ip`` field takes: IPv4 as four
    decimal bytes without leading zeros, or IPv6 (a little stricter than Elasticsearch, which also
    takes a zone, or a group of more than four digits: ELB writes neither). The C library's
    parser, about 0.1 µs: a damaged address fails its line as a damaged number does, instead of
    the document.

    >>> [ip_address(ip) for ip in ("192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7")]
    [True, True, True]
    >>> [ip_address(ip) for ip in ("999.0.2.7", "192.0.2", "192.0.2.07", "fe80::1%eth0", "-")]
    [False, False, False, False, False]
    """
    try:
        inet_pton(AF_INET6 if ":" in ip else AF_INET, ip)
    except (OSError, ValueError):  # ValueError: a NUL in the text
        return False
    return True


def ip_port(value: str, name: str) -> tuple[str, int]:
    """``host_port`` of a field whose address goes to an ``ip`` field (``source.ip``,
    ``destination.ip``): the address must be one (``ip_address``).

    >>> ip_port("192.0.2.7:80", "client:port")
    ('192.0.2.7', 80)
    >>> ip_port("192.0.2.700:80", "client:port")
    Traceback (most recent call last):
    ...
    elb_log_shipper.errors.ParseError: client:port: '192.0.2.700:80' holds no IP address
    """
    ip, port = host_port(value, name)
    if not ip_address(ip):
        raise ParseError(f"{name}: {value!r} holds no IP address")
    return ip, port


def client_source(value: str, name: str = "client:port") -> dict[str, Any]:
    """``source`` of a client field (``ip:port``): ``address``, ``ip`` and ``port``; for
    ``REDACTED``, the privacy rules' answer for a client that is no address, no ``ip`` (ALB's
    parser does the same inline).

    >>> client_source("REDACTED:80")
    {'address': 'REDACTED', 'port': 80}
    """
    ip, port = host_port(value, name)
    if ip == REDACTED:
        return {"address": ip, "port": port}
    if not ip_address(ip):
        raise ParseError(f"{name}: {value!r} holds no IP address")
    return {"address": ip, "ip": ip, "port": port}


_TLS_PROTOCOLS: dict[str, tuple[str, str] | None] = {}


def tls_version(value: str) -> tuple[str, str] | None:
    """``TLSv1.2`` / ``tlsv12`` / ``SSLv3`` → (version, protocol), e.g. ``("1.2", "tls")``; None
    for a text that names no version in ASCII digits (``TLSv1_2``, ``TLSv1..2``, other digits).

    ``str.isdigit`` is also true of other scripts' digits and of superscripts: ``tls.version``
    held Arabic-Indic digits, or ``².0``. The field is derived from ``aws.elb.ssl_protocol``,
    which keeps the text as written, so such a text leaves it out rather than failing the line.

    >>> tls_version("tlsv13"), tls_version("TLSv\u0661.\u0662")
    (('1.3', 'tls'), None)
    """
    try:
        return _TLS_PROTOCOLS[value]
    except KeyError:
        pass
    result: tuple[str, str] | None = None
    lower = value.lower()
    for protocol in ("tls", "ssl"):
        if lower.startswith(protocol + "v"):
            number = lower[len(protocol) + 1 :]
            major, dot, minor = number.partition(".")
            if not (number.isascii() and major.isdigit()):
                break
            if not dot and len(number) == 2:
                result = (f"{number[0]}.{number[1]}", protocol)
            elif not dot:
                result = (f"{number}.0", protocol)
            elif minor.isdigit():
                result = (number, protocol)
    if len(_TLS_PROTOCOLS) < MEMO_LIMIT:
        _TLS_PROTOCOLS[value] = result
    return result


_Request = tuple[str | None, str | None, dict[str, Any] | None, bool]
_requests: dict[str, _Request] = {}


def parse_request(request: str, http: dict[str, Any], event: dict[str, Any]) -> bool:
    """Split ``METHOD URL VERSION`` (the URL may hold spaces) into ``http`` and ``event["url"]``.

    Returns False when the request is empty (``"- - - "`` of TCP/SSL listeners). Request lines
    repeat (health checks, assets, API routes), so their parts are memoised and shared.
    """
    parts = _requests.get(request)
    if parts is None:
        parts = _split_request(request)
        if len(_requests) >= MEMO_LIMIT:
            _requests.clear()
        _requests[request] = parts
    method, version, url, present = parts
    if method is not None:
        http["request"]["method"] = method
    if version is not None:
        http["version"] = version
    if url is not None:
        event["url"] = url
    return present


def _split_request(request: str) -> _Request:
    method, _, rest = request.partition(" ")
    url, _, version = rest.rstrip(" ").rpartition(" ")
    if version[:5] != "HTTP/":
        if version == "-":
            version = ""
        elif not version.upper().startswith("HTTP/"):
            # No version: "METHOD URL" or a URL that ends in spaced words.
            url = f"{url} {version}" if url else version
            version = ""
    if method == "-" and url in ("-", "", "- -") and not version:
        return None, None, None, False
    return (
        method if method and method != "-" else None,
        version[5:] if version else None,
        parse_url(url) if url and url != "-" else None,
        True,
    )


_authorities: dict[str, tuple[dict[str, Any] | None, int]] = {}

# RFC 3986, section 3.1. Only text that starts the URL and ends at its first `://` can be one.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def parse_url(url: str) -> dict[str, Any]:
    """ECS ``url.*`` fields of an absolute ``scheme://host:port/path?query`` or a bare path.

    ``url.original`` always; the parts only where they are well formed, as Elasticsearch's
    ``uri_parts`` processor (which Elastic's ELB pipeline runs) names them. The parts are not
    percent-decoded (docs/elb-log-formats.md, section 8).

    >>> parse_url("https://example.com:443/a b/app.min.js?q=1")["extension"]
    'js'
    >>> parse_url("/login?next=https://example.com/")
    {'original': '/login?next=https://example.com/', 'path': '/login', 'query': 'next=https://example.com/'}
    """
    start = url.find("://")
    if start > 0:
        # The authority ends at the first `/`, `?` or `#` (RFC 3986, section 3.2). Memoised by
        # the URL up to its first `/` (which holds the others when they come first): the
        # authority's parts, and where it ends.
        slash = url.find("/", start + 3)
        prefix = url if slash < 0 else url[:slash]
        try:
            base, end = _authorities[prefix]
        except KeyError:
            end = len(prefix)
            mark = prefix.find("?", start + 3)
            if mark >= 0:
                end = mark
            mark = prefix.find("#", start + 3, end)
            if mark >= 0:
                end = mark
            base = _authority(url[:start], url[start + 3 : end])
            if len(_authorities) >= MEMO_LIMIT:
                _authorities.clear()
            _authorities[prefix] = base, end
        if base is not None:
            fields = {"original": url, **base}
            if end != slash:
                # No path (`http://a.com`, `http://a.com?q`): an empty one, as uri_parts gives.
                fields["path"] = ""
            if end < len(url):
                _add_path(fields, url[end:])
            return fields
    # No scheme: a bare path (whose query may hold `://`), or text that is no URL.
    fields = {"original": url}
    if url[:1] == "/":
        _add_path(fields, url)
    return fields


def _add_path(fields: dict[str, Any], rest: str) -> None:
    """``url.path``, ``url.extension``, ``url.query``, ``url.fragment`` of ``/path?query#frag``.

    A ``?`` or ``#`` with nothing after it gives an empty query or fragment, as ``uri_parts``
    gives (ECS: "If there is a ``?`` but no query, the query field exists with an empty string").
    """
    if "#" in rest:
        rest, _, fragment = rest.partition("#")
        fields["fragment"] = fragment
    path, mark, query = rest.partition("?")
    if path:
        fields["path"] = path
        # As uri_parts does: the text after the last dot of the last segment; ECS sets none
        # when it is empty.
        dot = path.rfind(".")
        if dot > path.rfind("/") and dot < len(path) - 1:
            fields["extension"] = path[dot + 1 :]
    if mark:
        fields["query"] = query


def _authority(scheme: str, authority: str) -> dict[str, Any] | None:
    """The parts of ``scheme://authority``; None when ``scheme`` is not one (the URL has none)."""
    if _SCHEME.fullmatch(scheme) is None:
        return None
    fields: dict[str, Any] = {"scheme": scheme.lower()}
    user, at, host_port_text = authority.rpartition("@")
    if at:
        # Credentials in the URL: the user name is an ECS field; the password stays only in
        # url.original (it is no less secret for having been logged).
        authority = host_port_text
        if name := user.partition(":")[0]:
            fields["username"] = name
    if authority.startswith("["):
        # An IPv6 literal keeps its brackets in url.domain, as ECS says and uri_parts gives.
        address, closed, port = authority[1:].partition("]")
        host = f"[{address}]" if closed and address else ""
        port = port[1:] if port.startswith(":") else ""
    elif ":" in authority:
        host, _, port = authority.rpartition(":")
    else:
        host, port = authority, ""
    if host:
        fields["domain"] = host
    # A port the client wrote that no TCP port can be (AWS logs the URL as sent) is dropped, and
    # the URL kept: url.port is mapped as `long`, and orjson cannot serialise 2**64 or more.
    if port.isdigit() and port.isascii() and len(port) <= len(str(PORT_MAX)):
        number = int(port)
        if number <= PORT_MAX:
            fields["port"] = number
    return fields
