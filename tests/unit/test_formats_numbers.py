"""Integers of every size in every numeric field (issue 12, item 7): one event, always.

AWS logs what clients send (the URL's port among it), and a damaged file can hold anything, so a
numeric field may hold 20 digits. Whatever it holds, the line gives exactly one event that orjson
can serialise and whose every field fits Elastic's mapping: the value itself when it fits, a
tagged parse failure naming the field when it does not, and for the URL's port (which is the
client's text, not the load balancer's) the URL kept without ``url.port``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from elb_log_shipper.formats import PARSE_FAILURE_TAG, EventBuilder, parse_line
from tests.support.elastic import violations
from tests.support.events import built, field

LONG_MAX = 2**63 - 1
FLOAT_MAX = 3.4028234663852886e38
PORT = (0, 65535)
STATUS = (0, 999)
LONG = (0, LONG_MAX)

ALB = (
    "https 2026-11-28T23:35:00.186641Z app/my-alb/50dc6c495c0c9188 192.168.131.39:{client_port} "
    "10.0.0.1:{target_port} {request_time} {target_time} {response_time} {status} {target_status} "
    "{received} {sent}"
    ' "GET https://www.example.com:{url_port}/ HTTP/1.1" "curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256'
    " TLSv1.2 arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/73e2d6bc24d8a067"
    ' "Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" "-" 1 '
    '2026-11-28T23:34:48.364000Z "forward" "-" "-" "10.0.0.1:80" "200" "-" "-" TID_1'
)
CLASSIC = (
    "2026-11-28T23:39:43.945958Z lb 192.168.131.39:{client_port} 10.0.0.1:{backend_port} "
    "{request_time} 0.1 0.1 {status} {backend_status} {received} {sent} "
    '"GET http://www.example.com:{url_port}/ HTTP/1.1" "curl/7.38.0" - -'
)
NLB = (
    "tls 2.0 2026-11-28T23:40:42 net/my-nlb/c6e77e28c25b2234 g3d4b5e8bb8464cd "
    "72.21.218.154:{client_port} 172.100.100.185:{destination_port} {connection_time} "
    "{handshake_time} {received} {sent} - - - ECDHE-RSA-AES128-SHA tlsv12 - - - - - -"
)
CONNECTION = (
    "2026-11-28T23:41:15.514108Z 203.0.113.1 {client_port} {listener_port} TLSv1.2 "
    'ECDHE-RSA-AES128-GCM-SHA256 {latency} "-" - - Success TID_1'
)

# (line template, placeholder, where the value lands, its range or "float", the name a failure
# gives). A value out of range fails the line, except url_port.
FIELDS: list[tuple[str, str, str, Any, str]] = [
    (ALB, "client_port", "source.port", PORT, "client:port"),
    (ALB, "target_port", "aws.elb.backend.port", PORT, "target:port"),
    (ALB, "request_time", "aws.elb.request_processing_time.sec", "float", "request_processing"),
    (ALB, "target_time", "aws.elb.backend_processing_time.sec", "float", "target_processing"),
    (ALB, "response_time", "aws.elb.response_processing_time.sec", "float", "response_process"),
    (ALB, "status", "http.response.status_code", STATUS, "elb_status_code"),
    (ALB, "target_status", "aws.elb.backend.http.response.status_code", STATUS, "target_status"),
    (ALB, "received", "http.request.body.bytes", LONG, "received_bytes"),
    (ALB, "sent", "http.response.body.bytes", LONG, "sent_bytes"),
    (ALB, "url_port", "url.port", PORT, ""),
    (CLASSIC, "client_port", "source.port", PORT, "client:port"),
    (CLASSIC, "backend_port", "aws.elb.backend.port", PORT, "backend:port"),
    (CLASSIC, "request_time", "aws.elb.request_processing_time.sec", "float", "request_processing"),
    (CLASSIC, "status", "http.response.status_code", STATUS, "elb_status_code"),
    (CLASSIC, "backend_status", "aws.elb.backend.http.response.status_code", STATUS, "backend_st"),
    (CLASSIC, "received", "http.request.body.bytes", LONG, "received_bytes"),
    (CLASSIC, "sent", "http.response.body.bytes", LONG, "sent_bytes"),
    (CLASSIC, "url_port", "url.port", PORT, ""),
    (NLB, "client_port", "source.port", PORT, "client:port"),
    (NLB, "destination_port", "destination.port", PORT, "destination:port"),
    (NLB, "connection_time", "aws.elb.connection_time.ms", LONG, "connection_time"),
    (NLB, "handshake_time", "aws.elb.tls_handshake_time.ms", LONG, "tls_handshake_time"),
    (NLB, "received", "source.bytes", LONG, "received_bytes"),
    (NLB, "sent", "destination.bytes", LONG, "sent_bytes"),
    (CONNECTION, "client_port", "client.port", PORT, "client_port"),
    (CONNECTION, "listener_port", "aws.elb.listener", PORT, "listener_port"),
    (CONNECTION, "latency", "aws.elb.tls_handshake_latency", "float", "tls_handshake_latency"),
]
DEFAULTS = {
    "client_port": "2817",
    "target_port": "80",
    "backend_port": "80",
    "destination_port": "443",
    "listener_port": "443",
    "request_time": "0.086",
    "target_time": "0.048",
    "response_time": "0.037",
    "status": "200",
    "target_status": "200",
    "backend_status": "200",
    "received": "10",
    "sent": "57",
    "url_port": "443",
    "connection_time": "5",
    "handshake_time": "2",
    "latency": "4.036",
}

# Every size: small, around each boundary that matters (port, status, long, orjson's 2**64,
# float), and far beyond.
integers = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.integers(0, 2**200),
    st.sampled_from([-1, 0, 999, 1000, 65535, 65536, LONG_MAX, LONG_MAX + 1, 2**64, 10**19]),
    st.sampled_from([10**39, 10**400]),
)


# Where ELB writes -1 for "none" (times of requests not dispatched, Classic TCP byte counts): the
# field is absent, as for "-".
MINUS_ONE_IS_NONE = {
    "request_time",
    "target_time",
    "response_time",
    "received",
    "sent",
    "connection_time",
    "handshake_time",
    "latency",
}


def _expected(name: str, value: int, bounds: Any) -> Any:
    """What the event must hold for ``value``: the number, None (absent), or "fail"."""
    if value == -1 and name in MINUS_ONE_IS_NONE:
        return None
    if bounds == "float":
        # The parser reads the text as a float: what counts is the value after rounding. A time
        # is never negative but for -1.
        try:
            number = float(value)
        except OverflowError:
            return "fail"
        return number if 0 <= number <= FLOAT_MAX else "fail"
    low, high = bounds
    return value if low <= value <= high else "fail"


@pytest.mark.parametrize("case", FIELDS, ids=[f"{t.split()[0][:5]}-{n}" for t, n, *_ in FIELDS])
@settings(max_examples=60, deadline=None)
@given(value=integers)
@example(value=99999999999999999999)
def test_every_integer_in_every_numeric_field_gives_one_valid_event(
    case: tuple[str, str, str, Any, str], value: int
) -> None:
    template, name, path, bounds, reason = case
    line = template.format(**{**DEFAULTS, name: str(value)})
    event = built(EventBuilder(bucket="b", key="k", version="v"), line.encode(), 0)
    data = orjson.dumps(event)  # never raises: nothing out of orjson's range gets through
    assert violations(orjson.loads(data)) == []
    expected = _expected(name, value, bounds)
    failed = PARSE_FAILURE_TAG in event.get("tags", [])
    if name == "url_port":
        # The client's URL: an impossible port is dropped, the line and its URL are kept.
        assert not failed, event.get("error")
        assert field(event, "url.original") == f"https://www.example.com:{value}/".replace(
            "https", "https" if template is ALB else "http"
        )
        assert field(event, path) == (expected if expected != "fail" else None)
    elif expected == "fail":
        assert failed
        assert reason in event["error"]["message"]
        assert event["event"]["original"] == line
    else:
        assert not failed, event.get("error")
        got = field(event, path)
        if path in ("aws.elb.backend.port", "aws.elb.listener"):
            assert got == (None if expected is None else str(expected))
        else:
            assert got == expected


# What Python's int() and float() read beyond the notation ELB writes: `_` between digits, a plus
# sign, and digits of other scripts (Arabic-Indic, fullwidth, Devanagari). Elastic's grok patterns
# read none of them as the number; in a field of the load balancer they are damage.
NOT_ELB_NUMBERS = ["2_0", "1_000", "+5", "\u0665\u0660", "\uff15", "\u0967\u0966", "0.0_1"]


# More digits than int() reads: it raises a ValueError of its own rather than take quadratic time.
# The number is out of range like any other too large; where the per-line code does not name the
# field (a try there would cost every line), the message quotes the number's start.
TOO_LONG = "9" * 5000
TOO_LONG_SAID = "...: a number of 5,000 digits is out of range of every numeric field"


@pytest.mark.parametrize("parse", ["builder", "parse_line"])
@pytest.mark.parametrize(
    "text", [*NOT_ELB_NUMBERS, TOO_LONG], ids=[*NOT_ELB_NUMBERS, "5000-digits"]
)
@pytest.mark.parametrize("case", FIELDS, ids=[f"{t.split()[0][:5]}-{n}" for t, n, *_ in FIELDS])
def test_a_number_elb_does_not_write_fails_the_line_naming_the_field(
    case: tuple[str, str, str, Any, str], text: str, parse: str
) -> None:
    template, name, path, _, reason = case
    line = template.format(**{**DEFAULTS, name: text})
    if parse == "builder":
        event = built(EventBuilder(bucket="b", key="k", version="v"), line.encode(), 0)
    else:
        event = parse_line(line)
    if name == "url_port":
        # The client's URL: the port is left out, the URL kept.
        assert PARSE_FAILURE_TAG not in event.get("tags", []), event.get("error")
        assert field(event, path) is None
        assert text in field(event, "url.original")
    else:
        assert event.get("tags") == [PARSE_FAILURE_TAG], field(event, path)
        assert event["event"]["original"] == line
        message = event["error"]["message"]
        if text == TOO_LONG and message.endswith(TOO_LONG_SAID):
            token = next(part for part in line.split() if text in part)
            assert message == repr(token[:24]) + TOO_LONG_SAID
        else:
            assert message.startswith(reason), message[:120]
            assert text[:100] in message


@pytest.mark.timeout(30)
def test_a_line_of_long_digit_runs_is_said_out_of_range_in_one_pass() -> None:
    # The message's search for the number ran a pattern retried from every position: minutes for
    # such a line (a damaged file can hold anything). Now one pass; the line is near the limit.
    listener = ("x" * 2_000 + "9" * 4_300) * 8  # digit runs just short of too long
    line = NLB.format(**{**DEFAULTS, "received": "9" * 4_301}).replace("g3d4b5e8bb8464cd", listener)
    event = parse_line(line)
    assert event["tags"] == [PARSE_FAILURE_TAG]
    assert event["error"]["message"] == repr("9" * 24) + TOO_LONG_SAID.replace("5,000", "4,301")


# The TLS protocol as each format writes it, and texts it never writes: digits of other scripts
# (Arabic-Indic, fullwidth, superscript), which str.isdigit also accepts, and numbers of no TLS
# version. A text that names no version keeps aws.elb.ssl_protocol and gives no tls.version, as
# for any other unknown protocol: the line is not lost for a field derived from another.
TLS_PROTOCOLS: dict[str, tuple[str, str] | None] = {
    "TLSv1.2": ("1.2", "tls"),
    "TLSv1": ("1.0", "tls"),
    "tlsv12": ("1.2", "tls"),
    "tlsv13": ("1.3", "tls"),
    "SSLv3": ("3.0", "ssl"),
    "TLSv\u0661.\u0662": None,
    "tlsv\u0661\u0662": None,
    "TLSv\uff11.\uff12": None,
    "TLSv\u00b2": None,
    "TLSv1..2": None,
    "TLSv1.": None,
    "TLSv.2": None,
    "TLSv1.2.3": None,
    "TLSv1_2": None,
}
TLS_LINES = {
    "alb": ALB.replace(" TLSv1.2 ", " {protocol} "),
    "classic": CLASSIC.replace(" - -", " ECDHE-RSA-AES128-GCM-SHA256 {protocol}"),
    "nlb": NLB.replace(" tlsv12 ", " {protocol} "),
    "connection": CONNECTION.replace(" TLSv1.2 ", " {protocol} "),
}


@pytest.mark.parametrize("protocol", TLS_PROTOCOLS)
@pytest.mark.parametrize("name", TLS_LINES)
def test_tls_version_is_read_from_ascii_digits_only(name: str, protocol: str) -> None:
    line = TLS_LINES[name].format(**{**DEFAULTS, "protocol": protocol})
    event = built(EventBuilder(bucket="b", key="k", version="v"), line.encode(), 0)
    assert PARSE_FAILURE_TAG not in event.get("tags", []), event.get("error")
    assert violations(orjson.loads(orjson.dumps(event))) == []
    assert field(event, "aws.elb.ssl_protocol") == protocol
    expected = TLS_PROTOCOLS[protocol]
    got = (field(event, "tls.version"), field(event, "tls.version_protocol"))
    assert got == (expected or (None, None))


# Times written as decimals: -1 in any notation is "none", as `-1` is; no other time is negative
# (an Elasticsearch float would take -0.5 as a duration); -0 is 0.
TIMES = [case for case in FIELDS if case[3] == "float" or case[2].endswith(".ms")]


# NLB's milliseconds are integers: `-0` is out of their range there, as for any count.
NONE_OR_ZERO = [
    pytest.param(case, text, expected, id=f"{case[0].split()[0][:5]}-{case[1]}{text}")
    for case in TIMES
    for text, expected in [("-1.0", None), ("-1.000", None), ("-0", 0)]
    if text != "-0" or case[3] == "float"
]


@pytest.mark.parametrize(("case", "text", "expected"), NONE_OR_ZERO)
def test_a_time_of_minus_one_in_any_notation_is_none(
    case: tuple[str, str, str, Any, str], text: str, expected: float | None
) -> None:
    template, name, path, _, _ = case
    event = built(EventBuilder(), template.format(**{**DEFAULTS, name: text}).encode(), 0)
    assert PARSE_FAILURE_TAG not in event.get("tags", []), event.get("error")
    got = field(event, path)
    assert got == expected
    assert repr(got) != "-0.0"


@pytest.mark.parametrize("text", ["-0.5", "-2", "-1.5", "-0.001"])
@pytest.mark.parametrize("case", TIMES, ids=[f"{t.split()[0][:5]}-{n}" for t, n, *_ in TIMES])
def test_any_other_negative_time_fails_the_line_naming_the_field(
    case: tuple[str, str, str, Any, str], text: str
) -> None:
    template, name, _, _, reason = case
    line = template.format(**{**DEFAULTS, name: text})
    event = built(EventBuilder(), line.encode(), 0)
    assert event.get("tags") == [PARSE_FAILURE_TAG]
    assert event["error"]["message"].startswith(reason)
    assert event["event"]["original"] == line
