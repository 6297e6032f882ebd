"""Table-driven tests of the parser: every case of section 1 of the formats reference, per format.

Each case is a line and the event fields it must (or must not) produce, addressed by dotted path.
``ABSENT`` means the field must not be in the event at all.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from elb_log_shipper.formats import (
    PARSE_FAILURE_TAG,
    EventBuilder,
    _values,
    alb,
    classic,
    nlb,
    parse_line,
)
from elb_log_shipper.formats._tokenizer import _split_fast, _split_slow, tokenize
from elb_log_shipper.formats._values import MEMO_LIMIT
from elb_log_shipper.formats.event import _SHORT_PATH_OTHER_FORMATS
from elb_log_shipper.framing import MAX_LINE_BYTES, OversizedLine
from elb_log_shipper.privacy import ClientAddress, PrivacyRules, QueryRedaction
from elb_log_shipper.samples import ALB_LINES
from tests.support.events import built, field

ABSENT = object()

TG = "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067"
CERT = "arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012"


def get(event: dict[str, Any], path: str) -> Any:
    return field(event, path, ABSENT)


def check(line: str, expected: dict[str, Any]) -> dict[str, Any]:
    event = parse_line(line)
    assert PARSE_FAILURE_TAG not in event.get("tags", []), event.get("error")
    got = {path: get(event, path) for path in expected}
    assert got == expected
    return event


# --- ALB: one full line of 36 fields, cut to every field count met in real files. -------------

ALB_FIELDS = [
    "https",
    "2018-07-02T22:23:00.186641Z",
    "app/my-loadbalancer/50dc6c495c0c9188",
    "192.168.131.39:2817",
    "10.0.0.1:80",
    "0.086",
    "0.048",
    "0.037",
    "200",
    "200",
    "0",
    "57",
    '"GET https://www.example.com:443/ HTTP/1.1"',
    '"curl/7.46.0"',
    "ECDHE-RSA-AES128-GCM-SHA256",
    "TLSv1.2",
    TG,
    '"Root=1-58337281-1d84f3d73c47ec4e58577259"',
    '"www.example.com"',
    f'"{CERT}"',
    "1",
    "2018-07-02T22:22:48.364000Z",
    '"authenticate,forward"',
    '"-"',
    '"-"',
    '"10.0.0.1:80"',
    '"200"',
    '"Acceptable"',
    '"-"',
    "TID_1234abcd5678ef90",
    '"internal.example.com"',
    '"/v2/"',
    '"TransformSuccess"',
    "10.0.5.5",
    '"-"',
    '"-"',
]

# The field each count adds (its path and value), checked present at that count, absent before.
ALB_ADDED = {
    20: ("aws.elb.chosen_cert.arn", CERT),
    21: ("aws.elb.matched_rule_priority", "1"),
    23: ("aws.elb.action_executed", ["authenticate", "forward"]),
    26: ("aws.elb.target_port", ["10.0.0.1:80"]),
    27: ("aws.elb.target_status_code", ["200"]),
    28: ("aws.elb.classification", "Acceptable"),
    30: ("aws.elb.connection_trace_id", "TID_1234abcd5678ef90"),
    31: ("aws.elb.transformed_host", "internal.example.com"),
    33: ("aws.elb.request_transform_status", "TransformSuccess"),
}


@pytest.mark.parametrize("count", [20, 23, 25, 27, 29, 30, 33, 36])
def test_alb_lines_of_every_field_count(count: int) -> None:
    line = " ".join(ALB_FIELDS[:count])
    event = check(
        line,
        {
            "@timestamp": "2018-07-02T22:23:00.186641Z",
            "event.end": "2018-07-02T22:23:00.186641Z",
            "aws.elb.type": "https",
            "aws.elb.name": "app/my-loadbalancer/50dc6c495c0c9188",
            "source.ip": "192.168.131.39",
            "source.port": 2817,
            "aws.elb.backend.ip": "10.0.0.1",
            "aws.elb.backend.port": "80",
            "aws.elb.request_processing_time.sec": 0.086,
            "http.response.status_code": 200,
            "aws.elb.backend.http.response.status_code": 200,
            "http.request.body.bytes": 0,
            "http.response.body.bytes": 57,
            "http.request.method": "GET",
            "http.version": "1.1",
            "url.domain": "www.example.com",
            "url.port": 443,
            "url.path": "/",
            "user_agent.original": "curl/7.46.0",
            "tls.version": "1.2",
            "tls.version_protocol": "tls",
            "aws.elb.target_group.arn": TG,
            "trace.id": "Root=1-58337281-1d84f3d73c47ec4e58577259",
            "destination.domain": "www.example.com",
            "event.outcome": "success",
            "event.category": ["web"],
        },
    )
    for added_at, (path, value) in ALB_ADDED.items():
        assert get(event, path) == (value if count >= added_at else ABSENT), path
    # Placeholders ("-") of the shorter lines never become fields.
    assert get(event, "aws.elb.redirect_url") is ABSENT
    assert get(event, "aws.elb.extra_fields") == (["10.0.5.5", "-", "-"] if count == 36 else ABSENT)


ALB_CASES = {
    # No request line and no received byte count: no empty http.request object.
    "no request and no received bytes": (
        "http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - -1 -1 -1 400 - - 272"
        ' "- http://a.com:80- -" "-" - -',
        {"http.request": ABSENT, "http.response.body.bytes": 272},
    ),
    "ipv6 client and target, not bracketed": (
        "https 2021-03-16T20:20:00.135052Z app/x/1 2601:6bbc:c529:9dad:6bbc:c529:9dad:6bbc:50599"
        " fd6d:6bbc:c529:6::face:ed83:f46:80 0.001 0.052 0.000 200 200 589 2084"
        ' "GET https://a.example.com:443/ HTTP/1.1" "-" - -',
        {
            "source.ip": "2601:6bbc:c529:9dad:6bbc:c529:9dad:6bbc",
            "source.port": 50599,
            "aws.elb.backend.ip": "fd6d:6bbc:c529:6::face:ed83:f46",
            "aws.elb.backend.port": "80",
            "user_agent.original": ABSENT,
            "tls.cipher": ABSENT,
        },
    ),
    "url with spaces": (
        "http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0.000 0.001 0.000 200 - 1 2"
        ' "GET http://www.example.com:80/a b c?q=x y HTTP/1.1" "curl"',
        {
            "url.original": "http://www.example.com:80/a b c?q=x y",
            "url.path": "/a b c",
            "url.query": "q=x y",
            "http.version": "1.1",
            "aws.elb.backend": ABSENT,
        },
    ),
    "\\x22 in a url is kept as written": (
        "http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0.000 0.001 0.000 200 - 1 2"
        ' "GET http://a.com:80/?q=\\x22hi\\x22 HTTP/1.1" "curl"',
        {"url.original": "http://a.com:80/?q=\\x22hi\\x22", "url.query": "q=\\x22hi\\x22"},
    ),
    "malformed request line": (
        "http 2021-03-17T18:54:14.216357Z app/x/1 113.241.19.90:15070 - -1 -1 -1 400 - 0 272"
        ' "- http://awseb.us-east-1.elb.amazonaws.com:80- -" "-" - - - "-" "-" "-" -'
        ' 2021-03-17T18:54:13.967000Z "-" "-" "-" "-" "-" "-" "-" TID_dc57',
        {
            "http.request.method": ABSENT,
            "http.version": ABSENT,
            "url.original": "http://awseb.us-east-1.elb.amazonaws.com:80-",
            "url.port": ABSENT,
            "aws.elb.request_processing_time": ABSENT,
            "aws.elb.backend_processing_time": ABSENT,
            "http.response.status_code": 400,
            "event.outcome": "failure",
            "aws.elb.connection_trace_id": "TID_dc57",
        },
    ),
    "session-reused certificate and -1 rule priority": (
        "h2 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - -1 -1 -1 401 - 4956 616"
        ' "GET https://example.com:443/o?code=X HTTP/2.0" "curl" TLS_AES_128_GCM_SHA256 TLSv1.3'
        ' - "Root=1-6" "example.com" "session-reused" -1 2018-07-02T22:22:48.364000Z'
        ' "authenticate" "-" "AuthInvalidIdToken"',
        {
            "aws.elb.chosen_cert.arn": "session-reused",
            "aws.elb.matched_rule_priority": "-1",
            "aws.elb.error.reason": "AuthInvalidIdToken",
            "tls.version": "1.3",
            "http.version": "2.0",
            "aws.elb.target_group": ABSENT,
        },
    ),
    "no space after a closing quote": (
        "https 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 10.0.0.1:80 0.086 0.048 0.037 200"
        f' 200 0 57 "GET https://a.com:443/ HTTP/1.1" "curl" - - {TG} "Root=1-5" "-" "-"1'
        ' 2018-07-02T22:22:48.364000Z "forward" "-" "-"',
        {
            "aws.elb.matched_rule_priority": "1",
            "event.start": "2018-07-02T22:22:48.364000Z",
            "aws.elb.chosen_cert": ABSENT,
        },
    ),
    "unquoted 2016-era domain name and target list": (
        "https 2016-08-10T23:39:43.065466Z app/x/1 1.2.3.4:5 10.0.0.1:80 0.086 0.048 0.037 200"
        f' 200 0 57 "GET https://a.com:443/ HTTP/1.1" "curl" - - {TG} "Root=1-5" a.example.com'
        ' "-" 0 2016-08-10T23:39:43.000000Z "forward" "-" "-" 10.0.0.1:80 200',
        {
            "destination.domain": "a.example.com",
            "aws.elb.target_port": ["10.0.0.1:80"],
            "aws.elb.target_status_code": ["200"],
        },
    ),
    "url parts as uri_parts names them: extension, fragment, user name": (
        "http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0.000 0.001 0.000 200 - 1 2"
        ' "GET http://bob:secret@a.com:8080/static/app.min.js?v=2#top HTTP/1.1" "curl"',
        {
            "url.domain": "a.com",
            "url.port": 8080,
            "url.username": "bob",
            "url.password": ABSENT,
            "url.path": "/static/app.min.js",
            "url.extension": "js",
            "url.query": "v=2",
            "url.fragment": "top",
            "aws.elb.protocol": "http",
            "source.address": "1.2.3.4",
        },
    ),
    "no extension: a dot in a directory, or nothing after the dot": (
        "http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0.000 0.001 0.000 200 - 1 2"
        ' "GET http://a.com:80/v1.2/items/ HTTP/1.1" "curl"',
        {"url.path": "/v1.2/items/", "url.extension": ABSENT},
    ),
    "a url port no tcp port can be is left out, the url kept": (
        "http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0.000 0.001 0.000 200 - 1 2"
        ' "GET http://a.com:99999999999999999999/x HTTP/1.1" "curl"',
        {
            "url.original": "http://a.com:99999999999999999999/x",
            "url.domain": "a.com",
            "url.port": ABSENT,
            "url.path": "/x",
        },
    ),
    "several targets": (
        "http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 10.0.0.1:80 0.0 0.0 0.0 502 502 0 0"
        ' "GET http://a.com:80/ HTTP/1.1" "c" - - - "-" "-" "-" 0 2018-07-02T22:22:48.364000Z'
        ' "forward" "-" "-" "10.0.0.1:80 10.0.0.2:80" "502 -"',
        {
            "aws.elb.target_port": ["10.0.0.1:80", "10.0.0.2:80"],
            "aws.elb.target_status_code": ["502", "-"],
        },
    ),
}


@pytest.mark.parametrize(("line", "expected"), ALB_CASES.values(), ids=ALB_CASES.keys())
def test_alb_cases(line: str, expected: dict[str, Any]) -> None:
    check(line, expected)


CLASSIC_CASES = {
    "http, 15 fields": (
        "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.000073"
        ' 0.001048 0.000057 200 200 0 29 "GET http://www.example.com:80/ HTTP/1.1"'
        ' "curl/7.38.0" - -',
        {
            "@timestamp": "2015-05-13T23:39:43.945958Z",
            "aws.elb.name": "my-loadbalancer",
            "aws.elb.protocol": "http",
            "aws.elb.type": ABSENT,
            "aws.elb.backend_processing_time.sec": 0.001048,
            "http.response.status_code": 200,
            "http.request.body.bytes": 0,
            "http.response.body.bytes": 29,
            "url.original": "http://www.example.com:80/",
            "user_agent.original": "curl/7.38.0",
            "tls": ABSENT,
            "event.category": ["web"],
        },
    ),
    # Fields AWS may append one day come after the cipher and the protocol: kept (§1), where a
    # request split by raw quotes is a failure (FAILURES).
    "fields appended after 15": (
        "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.000073"
        ' 0.001048 0.000057 200 200 0 29 "GET http://www.example.com:80/ HTTP/1.1"'
        ' "curl/7.38.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 new-field "-"',
        {
            "user_agent.original": "curl/7.38.0",
            "tls.cipher": "ECDHE-RSA-AES128-GCM-SHA256",
            "tls.version": "1.2",
            "aws.elb.extra_fields": ["new-field", "-"],
            "tags": ABSENT,
        },
    ),
    "http listener, fields appended after 15": (
        "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.000073"
        ' 0.001048 0.000057 200 200 0 29 "GET http://www.example.com:80/ HTTP/1.1"'
        ' "curl/7.38.0" - - 42',
        {
            "url.original": "http://www.example.com:80/",
            "tls": ABSENT,
            "aws.elb.extra_fields": ["42"],
            "tags": ABSENT,
        },
    ),
    'tcp listener, "- - - "': (
        "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.001065"
        ' 0.000015 0.000023 - - 57 502 "- - - " "-" ECDHE-ECDSA-AES128-GCM-SHA256 TLSv1.2',
        {
            "aws.elb.protocol": "tcp",
            "http": ABSENT,
            "url": ABSENT,
            "user_agent": ABSENT,
            "source.bytes": 57,
            "destination.bytes": 502,
            "tls.cipher": "ECDHE-ECDSA-AES128-GCM-SHA256",
            "tls.version": "1.2",
            "aws.elb.ssl_protocol": "TLSv1.2",
            "event.category": ["network"],
            "event.outcome": "success",
        },
    ),
    "escaped quotes in the user agent": (
        "2015-05-13T23:39:43.945958Z lb 1.2.3.4:5 10.0.0.1:80 0.1 0.1 0.1 200 200 0 29"
        ' "GET http://a.com:80/ HTTP/1.1" "Mozilla/5.0 \\"quoted\\" (x)" - -',
        {"user_agent.original": 'Mozilla/5.0 "quoted" (x)'},
    ),
    "12 fields, no backend reached": (
        "2015-04-10T08:11:09.865823Z us-west-1-production-media 49.150.87.133:55128 - -1 -1 -1"
        ' 408 - 1294336 0 "PUT https://media.example.com:443/v/F4 HTTP/1.1"',
        {
            "aws.elb.backend": ABSENT,
            "aws.elb.request_processing_time": ABSENT,
            "http.response.status_code": 408,
            "http.request.method": "PUT",
            "user_agent": ABSENT,
            "event.outcome": "failure",
        },
    ),
    "ipv6 client": (
        "2015-05-13T23:39:43.945958Z lb 2001:db8:85a3:0:0:8a2e:370:7334:2817 10.0.0.1:80 0.1 0.1"
        ' 0.1 200 200 0 29 "GET http://a.com:80/ HTTP/1.1" "-" - -',
        {"source.ip": "2001:db8:85a3:0:0:8a2e:370:7334", "source.port": 2817},
    ),
    "tcp listener, no instance reached: a failed connection": (
        "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 - -1 -1 -1 - - 57 0"
        ' "- - - " "-" - -',
        {
            "aws.elb.protocol": "tcp",
            "aws.elb.backend": ABSENT,
            "aws.elb.request_processing_time": ABSENT,
            "source.bytes": 57,
            "event.outcome": "failure",
        },
    ),
    "tcp listener, the instance reached but the request not dispatched": (
        "2015-05-13T23:39:43.945958Z lb 192.168.131.39:2817 10.0.0.1:80 -1 -1 -1 - - 0 0"
        ' "- - - " "-" - -',
        {"aws.elb.backend.ip": "10.0.0.1", "event.outcome": "failure"},
    ),
    "http listener, no status and no instance: success, as before (the doc's rule is TCP's)": (
        "2015-05-13T23:39:43.945958Z lb 1.2.3.4:2817 - -1 -1 -1 - - 0 0"
        ' "GET http://a.com:80/ HTTP/1.1" "curl" - -',
        {"aws.elb.protocol": "http", "event.outcome": "success"},
    ),
    "tcp listener with -1 byte counts: no count, no field": (
        "2015-05-13T23:39:43.945958Z lb 192.168.131.39:2817 10.0.0.1:80 0.001065 0.000015"
        ' 0.000023 - - -1 -1 "- - - " "-" - -',
        {
            "aws.elb.protocol": "tcp",
            "source.bytes": ABSENT,
            "destination.bytes": ABSENT,
            "source.ip": "192.168.131.39",
            "aws.elb.backend.port": "80",
        },
    ),
    "bracketed ipv6 client and backend": (
        "2015-05-13T23:39:43.945958Z lb [2001:db8::1]:2817 [2001:db8::2]:80 0.1 0.1"
        ' 0.1 200 200 0 29 "GET http://a.com:80/ HTTP/1.1" "-" - -',
        {
            "source.ip": "2001:db8::1",
            "source.address": "2001:db8::1",
            "source.port": 2817,
            "aws.elb.backend.ip": "2001:db8::2",
            "aws.elb.backend.port": "80",
        },
    ),
}


@pytest.mark.parametrize(("line", "expected"), CLASSIC_CASES.values(), ids=CLASSIC_CASES.keys())
def test_classic_cases(line: str, expected: dict[str, Any]) -> None:
    check(line, expected)


NLB_BASE = (
    "tls 2.0 2018-12-20T02:59:40 net/my-network-loadbalancer/c6e77e28c25b2234 g3d4b5e8bb8464cd"
    " 72.21.218.154:51341 172.100.100.185:443 5 2 98 246 - arn:aws:acm:us-east-2:6712:cert/2a -"
    " ECDHE-RSA-AES128-SHA tlsv12 - my-nlb.elb.us-east-2.amazonaws.com"
)

NLB_CASES = {
    "21 fields, no alpn": (
        NLB_BASE + " - - -",
        {
            "@timestamp": "2018-12-20T02:59:40.000000Z",
            "aws.elb.type": "tls",
            "aws.elb.listener": "g3d4b5e8bb8464cd",
            "source.ip": "72.21.218.154",
            "destination.ip": "172.100.100.185",
            "destination.port": 443,
            "aws.elb.backend.ip": "172.100.100.185",
            "aws.elb.backend.port": "443",
            "aws.elb.protocol": "tcp",
            "aws.elb.connection_time.ms": 5,
            "aws.elb.tls_handshake_time.ms": 2,
            "source.bytes": 98,
            "destination.bytes": 246,
            "tls.version": "1.2",
            "destination.domain": "my-nlb.elb.us-east-2.amazonaws.com",
            "aws.elb.alpn_client_preference_list": ABSENT,
            "event.category": ["network"],
            "event.outcome": "success",
        },
    ),
    # Not written by NLB: a fraction is cut as Elasticsearch cuts it for a long; -0 is 0, as
    # for the other times (a float path and an integer path).
    "a fractional connection time and a handshake time of -0": (
        NLB_BASE.replace(" 5 2 98 246 ", " 5.7 -0 98 246 ") + " - - -",
        {"aws.elb.connection_time.ms": 5, "aws.elb.tls_handshake_time.ms": 0},
    ),
    'alpn list "h2","http/1.1", 22 fields': (
        NLB_BASE + ' h2 h2 "h2","http/1.1" 2018-12-20T02:59:30',
        {
            "aws.elb.alpn_fe_protocol": "h2",
            "aws.elb.alpn_client_preference_list": ["h2", "http/1.1"],
            "aws.elb.tls_connection_creation_time": "2018-12-20T02:59:30.000000Z",
        },
    ),
    "alpn list with escaped quotes": (
        NLB_BASE + ' h2 h2 \\"h2\\",\\"http/1.1\\" 2018-12-20T02:59:30',
        {"aws.elb.alpn_client_preference_list": ["h2", "http/1.1"]},
    ),
    "alpn list quoted whole with escaped quotes": (
        NLB_BASE + ' h2 h2 "\\"h2\\",\\"http/1.1\\"" 2018-12-20T02:59:30',
        {"aws.elb.alpn_client_preference_list": ["h2", "http/1.1"]},
    ),
    "handshake never completed": (
        "tls 2.0 2018-12-20T02:59:40 net/n/c g3 72.21.218.154:51341 172.100.100.185:443 3 - 0 0"
        " handshake_failure - - - - - - - - - -",
        {
            "aws.elb.tls_handshake_time": ABSENT,
            "aws.elb.incoming_tls_alert": "handshake_failure",
            "tls": ABSENT,
            "event.outcome": "failure",
        },
    ),
}


@pytest.mark.parametrize(("line", "expected"), NLB_CASES.values(), ids=NLB_CASES.keys())
def test_nlb_cases(line: str, expected: dict[str, Any]) -> None:
    check(line, expected)


CONNECTION_CASES = {
    "with tls and a client certificate": (
        "2023-10-04T17:05:15.514108Z 203.0.113.1 36280 443 TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"
        ' 4.036 "CN=amazondomains.com,O=endEntity,L=Seattle,ST=Washington,C=US"'
        " NotBefore=2023-09-21T22:43:21Z;NotAfter=2026-06-17T22:43:21Z FEF257372D5C14D4 Success"
        " TID_3180a73013c8ca4bac2f731159d4b0fe",
        {
            "@timestamp": "2023-10-04T17:05:15.514108Z",
            # client.*, as Elastic's pipeline sets it; source.* would count in its dashboards'
            # views of requests.
            "source.ip": ABSENT,
            "source": ABSENT,
            "client.ip": "203.0.113.1",
            "client.port": 36280,
            "aws.elb.listener": "443",
            "tls.version": "1.2",
            "tls.cipher": "ECDHE-RSA-AES128-GCM-SHA256",
            "aws.elb.tls_handshake_latency": 4.036,
            "aws.elb.leaf_client_cert_subject": (
                "CN=amazondomains.com,O=endEntity,L=Seattle,ST=Washington,C=US"
            ),
            "aws.elb.leaf_client_cert_not_before": "2023-09-21T22:43:21.000000Z",
            "aws.elb.leaf_client_cert_not_after": "2026-06-17T22:43:21.000000Z",
            "aws.elb.leaf_client_cert_serial_number": "FEF257372D5C14D4",
            "aws.elb.tls_verify_status": "Success",
            "aws.elb.connection_trace_id": "TID_3180a73013c8ca4bac2f731159d4b0fe",
            "event.category": ["network"],
            "event.outcome": "success",
        },
    ),
    "without tls": (
        '2023-10-04T17:05:16.514108Z 203.0.113.2 36281 80 - - - "-" - - - TID_3180',
        {
            "tls": ABSENT,
            "aws.elb.tls_handshake_latency": ABSENT,
            "aws.elb.leaf_client_cert_subject": ABSENT,
            "aws.elb.tls_verify_status": ABSENT,
            "aws.elb.listener": "80",
        },
    ),
    "11 fields, from before conn_trace_id": (
        "2023-10-04T17:05:15.514108Z 203.0.113.1 36280 443 TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"
        ' 4.036 "-" - - Success',
        {
            "client.ip": "203.0.113.1",
            "aws.elb.listener": "443",
            "aws.elb.tls_verify_status": "Success",
            "aws.elb.connection_trace_id": ABSENT,
            "aws.elb.protocol": "tcp",
            "event.end": "2023-10-04T17:05:15.514108Z",
            "event.outcome": "success",
        },
    ),
    "failed verification, later fields": (
        "2023-10-04T17:05:17.514108Z 2001:db8::1 36282 443 TLSv1.3 TLS_AES_128_GCM_SHA256 1.5"
        ' "-" - - Failed:UnableToGetIssuerCert TID_1 x25519 app/my-alb/1 10.0.0.5 extra',
        {
            "client.ip": "2001:db8::1",
            "aws.elb.tls_verify_status": "Failed",
            "aws.elb.tls_error_code": "UnableToGetIssuerCert",
            "event.outcome": "failure",
            "aws.elb.tls_keyexchange": "x25519",
            "aws.elb.name": "app/my-alb/1",
            "aws.elb.ip_address": "10.0.0.5",
            "aws.elb.extra_fields": ["extra"],
        },
    ),
}


@pytest.mark.parametrize(
    ("line", "expected"), CONNECTION_CASES.values(), ids=CONNECTION_CASES.keys()
)
def test_connection_log_cases(line: str, expected: dict[str, Any]) -> None:
    check(line, expected)


@pytest.mark.parametrize(
    "line",
    [
        # A Classic line whose client is `-`: its third field has no colon, so it reads as a
        # connection log, which took the load balancer's name for the client's address (and a
        # status code for a certificate subject) without a word.
        '2015-05-13T23:39:43.945958Z my-lb - - -1 -1 -1 504 - 0 0 "GET http://a:80/ HTTP/1.1"'
        ' "curl" - -',
        "2023-10-04T17:05:15.514108Z my-lb 36280 443 TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"
        ' 4.036 "-" - - Success TID_3',
    ],
    ids=["classic with client -", "connection log with a name for its client"],
)
def test_a_connection_log_whose_client_is_no_address_fails(line: str) -> None:
    event = parse_line(line)
    assert event.get("tags") == [PARSE_FAILURE_TAG], event
    assert event["error"]["message"] == "client_ip: 'my-lb' is no IP address"
    assert event["event"]["original"] == line


def test_access_log_test_line() -> None:
    line = "Enable AccessLog for ELB: my-loadbalancer at 2015-05-13T23:39:43.945958Z"
    check(
        line,
        {
            "@timestamp": "2015-05-13T23:39:43.945958Z",
            "aws.elb.name": "my-loadbalancer",
            "event.action": "access-log-test",
            "message": line,
        },
    )


FAILURES = {
    "unclosed quote": (
        'http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0 0 0 200 - 1 2 "GET http://a',
        "unclosed quote",
    ),
    # A line cut just after a backslash inside quotes: the escape has nothing to escape.
    "unclosed quote ending in a backslash": (
        'http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0 0 0 200 - 1 2 "GET http://a\\',
        "unclosed quote in field starting at column 69",
    ),
    "truncated line": ("http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5", "fields"),
    "garbage": ("hello world", "not an ELB log line"),
    "empty": ("", "empty line"),
    "bad timestamp": (
        'http 2018-13-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0 0 0 200 - 1 2 "GET / HTTP/1.1"',
        "timestamp",
    ),
    "bad status": (
        'http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0 0 0 2xx - 1 2 "GET / HTTP/1.1"',
        "elb_status_code",
    ),
    "status of 20 digits": (
        'http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0 0 0 99999999999999999999 - 1 2 "GET'
        ' / HTTP/1.1"',
        "elb_status_code: '99999999999999999999' is out of range 0-999",
    ),
    "byte count of 20 digits": (
        "http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 - 0 0 0 200 - 1 99999999999999999999"
        ' "GET / HTTP/1.1"',
        "sent_bytes: '99999999999999999999' is out of range",
    ),
    # A fraction is read as a float, then as an integer of milliseconds: past LONG_MAX it is
    # out of the field's range as a number of digits is.
    "nlb connection time of 20 digits and a fraction": (
        "tls 2.0 2020-04-01T08:51:42 net/my-nlb/c6e77e28c25b2234 g3d4b5e8bb8464cd 1.2.3.4:57 "
        "10.0.0.1:443 99999999999999999999.5 2 98 246 - - - ECDHE-RSA-AES128-SHA tlsv12 - - - - "
        "- 2020-04-01T08:51:42",
        "connection_time: '99999999999999999999.5' is out of range 0-9223372036854775807",
    ),
    "connection log with 10 fields": (
        '2023-10-04T17:05:15.514108Z 203.0.113.1 36280 443 TLSv1.2 ECDHE 4.036 "-" - -',
        "connection log line has 10 fields, at least 11 expected",
    ),
    "bad client address": (
        'http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4 - 0 0 0 200 - 1 2 "GET / HTTP/1.1"',
        "client:port",
    ),
    "alb client no address": (
        'http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.400:5 - 0 0 0 200 - 1 2 "GET / HTTP/1.1"',
        "client:port: '1.2.3.400:5' holds no IP address",
    ),
    "alb client with a leading zero": (
        'http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.04:5 - 0 0 0 200 - 1 2 "GET / HTTP/1.1"',
        "client:port: '1.2.3.04:5' holds no IP address",
    ),
    "classic client no address": (
        "2015-05-13T23:39:43.945958Z lb 192.0.2.999:2817 10.0.0.1:80 0.1 0.1 0.1 200 200 0 29"
        ' "GET http://a.com:80/ HTTP/1.1" "curl" - -',
        "client:port: '192.0.2.999:2817' holds no IP address",
    ),
    "nlb client no address": (
        "tls 2.0 2020-04-01T08:51:42 net/my-nlb/c6e77e28c25b2234 g3d4b5e8bb8464cd 1.2.3:57 "
        "10.0.0.1:443 5 2 98 246 - arn:aws:acm:us-east-2:67:certificate/ab - ECDHE-RSA-AES128-SHA"
        " tlsv12 - e.com - - - 2020-04-01T08:51:42",
        "client:port: '1.2.3:57' holds no IP address",
    ),
    "nlb destination no address": (
        "tls 2.0 2020-04-01T08:51:42 net/my-nlb/c6e77e28c25b2234 g3d4b5e8bb8464cd 1.2.3.4:57 "
        "10.0.0.300:443 5 2 98 246 - arn:aws:acm:us-east-2:67:certificate/ab - ECDHE-RSA-AES128-SHA"
        " tlsv12 - e.com - - - 2020-04-01T08:51:42",
        "destination:port: '10.0.0.300:443' holds no IP address",
    ),
    "nlb destination redacted": (
        "tls 2.0 2020-04-01T08:51:42 net/my-nlb/c6e77e28c25b2234 g3d4b5e8bb8464cd 1.2.3.4:57 "
        "REDACTED:443 5 2 98 246 - arn:aws:acm:us-east-2:67:certificate/ab - ECDHE-RSA-AES128-SHA"
        " tlsv12 - e.com - - - 2020-04-01T08:51:42",
        "destination:port: 'REDACTED:443' holds no IP address",
    ),
    "connection client no address": (
        '2023-10-04T17:05:15.514108Z 1.2.3.4.5 36280 443 TLSv1.2 ECDHE 4.036 "-" - - Success',
        "client_ip: '1.2.3.4.5' is no IP address",
    ),
    "classic client with a closing bracket alone": (
        "2015-05-13T23:39:43.945958Z lb 192.168.131.39]:2817 10.0.0.1:80 0.1 0.1 0.1 200 200 0 29"
        ' "GET http://a.com:80/ HTTP/1.1" "curl" - -',
        "client:port: '192.168.131.39]:2817' holds no IP address",
    ),
    # The backend's and the target's addresses are keywords, which would take a damaged one.
    "classic backend with an opening bracket alone": (
        "2015-05-13T23:39:43.945958Z lb 192.0.2.7:2817 [10.0.0.1:80 0.1 0.1 0.1 200 200 0 29"
        ' "GET http://a.com:80/ HTTP/1.1" "curl" - -',
        "backend:port: '[10.0.0.1:80' is not an address:port",
    ),
    "classic backend with a closing bracket alone": (
        "2015-05-13T23:39:43.945958Z lb 192.0.2.7:2817 10.0.0.1]:80 0.1 0.1 0.1 200 200 0 29"
        ' "GET http://a.com:80/ HTTP/1.1" "curl" - -',
        "backend:port: '10.0.0.1]:80' is not an address:port",
    ),
    "alb target with an opening bracket alone": (
        "http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 [2001:db8::1:443 0 0 0 200 200 1 2"
        ' "GET / HTTP/1.1"',
        "target:port: '[2001:db8::1:443' is not an address:port",
    ),
    "alb target of brackets alone": (
        "http 2018-07-02T22:23:00.186641Z app/x/1 1.2.3.4:5 []:443 0 0 0 200 200 1 2"
        ' "GET / HTTP/1.1"',
        "target:port: '[]:443' is not an address:port",
    ),
    "classic with a user agent holding a raw newline, first half": (
        '2015-05-13T23:39:43.945958Z lb 1.2.3.4:5 10.0.0.1:80 0.1 0.1 0.1 200 200 0 29 "GET'
        ' http://a.com:80/ HTTP/1.1" "Mozilla/5.0 (broken',
        "unclosed quote",
    ),
    # A Classic request holding raw quotes (a probe's `"x"`): an odd number leaves a quote
    # unclosed, an even number splits the request into more fields, which moved the others on:
    # the event had the request's rest for its user agent, the user agent for its TLS cipher.
    "classic request with raw quotes, 16 fields": (
        "2015-05-13T23:39:43.945958Z lb 1.2.3.4:5 10.0.0.1:80 0.1 0.1 0.1 200 200 0 29"
        ' "GET http://a.com:80/x""y HTTP/1.1" "curl/7.38.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2',
        "Classic line has 16 fields, not 12 or 15",
    ),
    "classic request with a quoted word, 17 fields": (
        "2015-05-13T23:39:43.945958Z lb 1.2.3.4:5 10.0.0.1:80 0.1 0.1 0.1 200 200 0 29"
        ' "GET http://a.com:80/?q="a b" HTTP/1.1" "curl/7.38.0" - -',
        "Classic line has 17 fields, not 12 or 15",
    ),
    "classic of 12 fields, request with raw quotes, 13 fields": (
        "2015-04-10T08:11:09.865823Z lb 49.150.87.133:55128 - -1 -1 -1 408 - 1294336 0"
        ' "PUT https://media.example.com:443/v?q="x" HTTP/1.1"',
        "Classic line has 13 fields, not 12 or 15",
    ),
}


@pytest.mark.parametrize(("line", "reason"), FAILURES.values(), ids=FAILURES.keys())
def test_bad_lines_become_failure_events(line: str, reason: str) -> None:
    event = parse_line(line)
    assert event["tags"] == [PARSE_FAILURE_TAG]
    assert event["event"]["kind"] == "pipeline_error"
    assert event["event"]["original"] == line
    assert reason in event["error"]["message"]
    assert event["@timestamp"].endswith("Z")


def test_invalid_utf8_is_a_failure_that_keeps_the_text() -> None:
    builder = EventBuilder(bucket="b", key="k.log")
    event = built(builder, b"http \xff\xfe broken", 10)
    assert event["tags"] == [PARSE_FAILURE_TAG]
    assert "invalid UTF-8" in event["error"]["message"]
    assert event["event"]["original"].startswith("http ")
    assert event["log"]["offset"] == 10


# A Classic line whose user agent is Latin-1 (`café`), and Windows-1252 (`“x”`): not UTF-8.
CLASSIC_LATIN1 = CLASSIC_CASES["http, 15 fields"][0].encode().replace(b"curl", b"caf\xe9")
CLASSIC_CP1252 = CLASSIC_LATIN1.replace(b"caf\xe9", b"\x93x\x94")


@pytest.mark.parametrize("raw", [CLASSIC_LATIN1, CLASSIC_CP1252])
def test_a_line_that_is_not_utf8_keeps_its_bytes_in_the_failure(raw: bytes) -> None:
    """``event.original`` is the raw line: a byte that is not UTF-8 is written as ``\\xNN``, as
    ALB writes the bytes it escapes and as events show a file name's, not as U+FFFD, which made
    every such byte the same character and the line's text unrecoverable."""
    event = built(EventBuilder(bucket="b", key="k.log"), raw, 0)
    assert event["tags"] == [PARSE_FAILURE_TAG]
    assert "\ufffd" not in event["event"]["original"]
    assert event["event"]["original"] == raw.decode("utf-8", "backslashreplace")


def test_a_line_cut_inside_a_character_keeps_the_bytes_of_its_beginning() -> None:
    head = b"x" * (MAX_LINE_BYTES - 1) + "é".encode()  # the limit falls inside the `é`
    event = EventBuilder().too_long(OversizedLine(head[:MAX_LINE_BYTES], len(head)), 0)
    assert event["event"]["original"] == "x" * (MAX_LINE_BYTES - 1) + "\\xc3"


BOM_LINES = {
    "alb": " ".join(ALB_FIELDS),
    "classic": CLASSIC_CASES["http, 15 fields"][0],
    "nlb": next(iter(NLB_CASES.values()))[0],
    "connection": next(iter(CONNECTION_CASES.values()))[0],
}


@pytest.mark.parametrize("line", BOM_LINES.values(), ids=BOM_LINES.keys())
@pytest.mark.parametrize(
    "privacy",
    [None, PrivacyRules(QueryRedaction.VALUES, ClientAddress.TRUNCATE)],
    ids=["defaults", "rules"],
)
def test_a_byte_order_mark_before_the_first_line_is_not_part_of_it(
    line: str, privacy: PrivacyRules | None
) -> None:
    # An editor may save a local file with one; ELB writes none.
    builder = EventBuilder(key="f.log", privacy=privacy)
    bom = "\ufeff".encode()
    plain = built(builder, line.encode(), 0)
    assert "tags" not in plain, plain
    with_bom = built(builder, bom + line.encode(), 0)
    assert with_bom == plain
    # Rewritten ahead by `prepared`, as the pipeline builds the lines with privacy rules.
    ahead = [builder.build(raw, at) for at, raw in builder.prepared([(0, bom + line.encode())])]
    assert ahead == [plain]
    # Anywhere else it is no byte-order mark: the line fails, kept whole.
    later = built(builder, bom + line.encode(), 7)
    assert later["tags"] == [PARSE_FAILURE_TAG]
    twice = built(builder, bom + bom + line.encode(), 0)
    assert twice["tags"] == [PARSE_FAILURE_TAG]
    assert builder.failures == 2


def test_builder_adds_where_the_line_came_from() -> None:
    key = "AWSLogs/123456789012/elasticloadbalancing/eu-west-1/2026/11/28/x_app.a.b_1.log.gz"
    builder = EventBuilder(bucket="logs", key=key, version="v1")
    line = " ".join(ALB_FIELDS[:29]).encode()
    event = built(builder, line, 1234)
    assert event["aws"]["s3"] == {"bucket": {"name": "logs"}, "object": {"key": key}}
    assert event["log"] == {"offset": 1234}
    assert event["event"]["original"] == line.decode()
    assert event["event"]["dataset"] == "aws.elb_logs"
    assert event["event"]["kind"] == "event"
    assert event["cloud"]["provider"] == "aws"
    # Same object, version and offset: same id; any of them different: another id.
    same = built(EventBuilder(bucket="logs", key=key, version="v1"), line, 1234)
    assert same["event"]["id"] == event["event"]["id"]
    others = {
        built(EventBuilder(bucket="logs", key=key, version="v2"), line, 1234)["event"]["id"],
        built(EventBuilder(bucket="logs2", key=key, version="v1"), line, 1234)["event"]["id"],
        built(builder, line, 1235)["event"]["id"],
    }
    assert event["event"]["id"] not in others
    assert len(others) == 3


def test_keep_original_off_drops_it_for_parsed_lines_only() -> None:
    builder = EventBuilder(bucket="logs", key="k", keep_original=False)
    parsed = built(builder, " ".join(ALB_FIELDS[:29]).encode(), 0)
    failed = built(builder, b"garbage", 0)
    assert "original" not in parsed["event"]
    assert failed["event"]["original"] == "garbage"


def test_events_serialise_to_one_json_line() -> None:
    event = parse_line(" ".join(ALB_FIELDS))
    data = orjson.dumps(event)
    assert b"\n" not in data
    assert orjson.loads(data) == event


TOKENIZER_CASES = {
    "plain": ("a b  c", ["a", "b", "c"]),
    "quoted with spaces": ('a "b c" d', ["a", "b c", "d"]),
    "empty quoted": ('a "" b', ["a", "", "b"]),
    "closing quote then text": ('"-"1 x', ["-", "1", "x"]),
    "escaped quote": ('a "x \\"y\\" z" b', ["a", 'x "y" z', "b"]),
    "escaped backslash": ('a "x\\\\" b', ["a", "x\\", "b"]),
    "other escapes kept": ('a "\\x22" b', ["a", "\\x22", "b"]),
    "alpn list": ('a "h2","http/1.1" b', ["a", '"h2","http/1.1"', "b"]),
    "quotes inside a token": ('a b"c d"e f', ["a", 'b"c d"e', "f"]),
    "tabs": ("a\tb", ["a", "b"]),
    # A list of quoted items right after a quoted field, and lists whose first item holds an
    # escape: the list is one field, kept as written.
    "a list after a quoted field": ('a "b" "h2","http/1.1" c', ["a", "b", '"h2","http/1.1"', "c"]),
    "a list with an escaped backslash": ('x "a\\\\b","c" y', ["x", '"a\\\\b","c"', "y"]),
    "a list with an escaped quote": ('x "a\\"b","c" y', ["x", '"a\\"b","c"', "y"]),
}


@pytest.mark.parametrize(("line", "fields"), TOKENIZER_CASES.values(), ids=TOKENIZER_CASES.keys())
def test_tokenizer(line: str, fields: list[str]) -> None:
    assert tokenize(line) == fields
    assert _split_slow(line) == fields


@pytest.mark.parametrize(
    "line",
    [
        'a "h2","http/1.1" b',
        'a "h2","http/1.1"',
        '"h2","http/1.1" b',
        'a "x","y","z" "w" v',
        'a "b" "h2","http/1.1" c',
        'x "a\\\\b","c" y',
        NLB_BASE + ' h2 h2 "h2","http/1.1" 2020-04-01T08:51:20',
    ],
)
def test_lists_of_quoted_items_take_the_fast_path(line: str) -> None:
    """NLB's ALPN list (`"h2","http/1.1"`, on most TLS lines) is read by `str.split`, not by the
    character loop, which cost an NLB line twice the instructions of any other format's
    (182k against 85k for ALB, callgrind, bench.corpus lines)."""
    assert _split_fast(line.split('"')) == _split_slow(line)


# --- Dates: every date field of every format, one template each ({} is the field's text). --------

NLB_LINE = NLB_BASE + ' h2 h2 "h2","http/1.1" {}'
CONNECTION_LINE = (
    "2023-10-04T17:05:15.514108Z 203.0.113.1 36280 443 TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"
    ' 4.036 "CN=a" {} FEF257372D5C14D4 Success TID_3'
)
# (template, the name a failure gives, where the value lands)
DATE_FIELDS = {
    "alb time": (" ".join(["https", "{}", *ALB_FIELDS[2:30]]), "time", "@timestamp"),
    "alb request_creation_time": (
        " ".join([*ALB_FIELDS[:21], "{}", *ALB_FIELDS[22:30]]),
        "request_creation_time",
        "event.start",
    ),
    "classic timestamp": (
        "{} lb 1.2.3.4:5 10.0.0.1:80 0.1 0.1 0.1 200 200 0 29"
        ' "GET http://a.com:80/ HTTP/1.1" "curl" - -',
        "timestamp",
        "@timestamp",
    ),
    "nlb time": (
        NLB_LINE.format("2018-12-20T02:59:30").replace("2018-12-20T02:59:40", "{}"),
        "time",
        "@timestamp",
    ),
    "nlb tls_connection_creation_time": (
        NLB_LINE,
        "tls_connection_creation_time",
        "aws.elb.tls_connection_creation_time",
    ),
    "connection log timestamp": (
        CONNECTION_LINE.format("-").replace("2023-10-04T17:05:15.514108Z", "{}"),
        "timestamp",
        "@timestamp",
    ),
    "connection log NotBefore": (
        CONNECTION_LINE.format("NotBefore={};NotAfter=2026-06-17T22:43:21Z"),
        "leaf_client_cert_validity",
        "aws.elb.leaf_client_cert_not_before",
    ),
    "connection log NotAfter": (
        CONNECTION_LINE.format("NotBefore=2023-09-21T22:43:21Z;NotAfter={}"),
        "leaf_client_cert_validity",
        "aws.elb.leaf_client_cert_not_after",
    ),
    "access-log test line": (
        "Enable AccessLog for ELB: my-loadbalancer at {}",
        "test line time",
        "@timestamp",
    ),
}

# The forms ELB writes (µs and `Z`; NLB: no fraction, no zone; certificates: `Z`, no fraction)
# and the other fractions of RFC 3339, as what we emit for each.
VALID_DATES = {
    "2018-07-02T22:23:00.186641Z": "2018-07-02T22:23:00.186641Z",
    "2018-07-02T22:23:00": "2018-07-02T22:23:00.000000Z",
    "2018-07-02T22:23:00Z": "2018-07-02T22:23:00.000000Z",
    "2018-07-02T22:23:00.186Z": "2018-07-02T22:23:00.186000Z",
    "2018-07-02T22:23:00.186641123Z": "2018-07-02T22:23:00.186641Z",
    # The length of ELB's form (27 characters) without its `Z`, which is not ELB's form.
    "2018-07-02T22:23:00.1234567": "2018-07-02T22:23:00.123456Z",
    # The edges of Elasticsearch's `date` (strict_date_optional_time: a four-digit year) and a
    # leap day: odd but real dates, kept as the line gives them (LagSeconds leaves a future one
    # out: tests/functional/test_handler.py).
    "0001-01-01T00:00:00.000000Z": "0001-01-01T00:00:00.000000Z",
    "9999-12-31T23:59:59.999999Z": "9999-12-31T23:59:59.999999Z",
    "2024-02-29T12:00:00.000001Z": "2024-02-29T12:00:00.000001Z",
}
# ISO 8601 forms that datetime.fromisoformat reads but Elasticsearch's date format does not, and
# digits other than ASCII's: each a parse failure naming the field, never an unreadable date.
INVALID_DATES = {
    "offset instead of seconds": "2018-07-02T22:23+01",
    "negative offset instead of seconds": "2018-07-02T22:23-01",
    "hour and offset": "2018-07-02T22+01:00",
    "week date": "2018-W27-1T22:23:00",
    "week date with fraction": "2018-W27-1T22:23:00.186641Z",
    "basic format": "2018-07-02T20364000",
    "arabic-indic digits in the fraction": (
        "2018-07-02T22:23:00.\u0661\u0668\u0666\u0666\u0664\u0661Z"
    ),
    "an arabic-indic digit in the date": "2018-07-0\u0662T22:23:00.186641Z",
    "fullwidth digits in the year": "\uff12\uff10\uff11\uff18-07-02T22:23:00Z",
    "devanagari digits in the seconds": "2018-07-02T22:23:\u0966\u0966",
    "offset after the seconds": "2018-07-02T22:23:00+01:00",
    "month 13": "2018-13-02T22:23:00.186641Z",
    # ELB's length (27 characters), each with one character out of place.
    "a letter in the fraction": "2018-07-02T22:23:00.x86641Z",
    "a lowercase zone": "2018-07-02T22:23:00.186641z",
    "ten digits of fraction": "2018-07-02T22:23:00.1866411234Z",
    # No such date or time: Elasticsearch's date format reads none of them.
    "February 29 of a common year": "2023-02-29T12:00:00.000000Z",
    "a leap second": "2016-12-31T23:59:60.000000Z",
    # ISO 8601's end of day until 2019, and Python 3.14's fromisoformat reads it (as the next
    # day's midnight); Elasticsearch's strict format does not.
    "hour 24": "2018-07-02T24:00:00.000000Z",
    "year 0": "0000-01-01T00:00:00.000000Z",
    "a point and no fraction": "2018-07-02T22:23:00.Z",
    "a comma for the point": "2018-07-02T22:23:00,186641Z",
    # A time run into the next field (a space lost).
    "the next field run in": "2018-07-02T22:23:00.186641Zapp/my-loadbalancer/50dc6c495c0c9188",
}


@pytest.mark.parametrize("date", VALID_DATES)
@pytest.mark.parametrize("name", DATE_FIELDS)
def test_every_date_field_takes_the_forms_elb_writes(name: str, date: str) -> None:
    template, _, path = DATE_FIELDS[name]
    check(template.format(date), {path: VALID_DATES[date]})


@pytest.mark.parametrize("date", INVALID_DATES.values(), ids=INVALID_DATES.keys())
@pytest.mark.parametrize("name", DATE_FIELDS)
def test_every_date_field_fails_the_line_on_any_other_form(name: str, date: str) -> None:
    template, reason, _ = DATE_FIELDS[name]
    line = template.format(date)
    event = parse_line(line)
    assert event.get("tags") == [PARSE_FAILURE_TAG], event
    assert event["error"]["message"] == f"{reason}: {date!r} is not an ISO 8601 timestamp"
    assert event["event"]["original"] == line


# The fraction's point replaced, in a time whose seconds a line before this one held: the seconds
# are then known to be valid (a memo), and the rest of the time must still be checked.
NOT_A_POINT = [
    "2018-07-02T22:23:00x186641Z",
    "2018-07-02T22:23:00/186641Z",
    "2018-07-02T22:23:00:186641Z",
]


@pytest.mark.parametrize("date", NOT_A_POINT)
@pytest.mark.parametrize("name", DATE_FIELDS)
def test_a_date_of_seconds_seen_before_still_fails_the_line_without_its_point(
    name: str, date: str
) -> None:
    template, reason, path = DATE_FIELDS[name]
    seen = "2018-07-02T22:23:00.186641Z"
    check(template.format(seen), {path: seen})
    line = template.format(date)
    event = parse_line(line)
    assert event.get("tags") == [PARSE_FAILURE_TAG], event
    assert event["error"]["message"] == f"{reason}: {date!r} is not an ISO 8601 timestamp"
    assert event["event"]["original"] == line


# --- URLs: every format with a request line. --------------------------------------------------

URL_LINES = {
    "alb": " ".join([*ALB_FIELDS[:12], '"GET {} HTTP/1.1"', *ALB_FIELDS[13:30]]),
    "classic": "2015-05-13T23:39:43.945958Z lb 1.2.3.4:5 10.0.0.1:80 0.1 0.1 0.1 200 200 0 29"
    ' "GET {} HTTP/1.1" "curl" - -',
}
# Each URL and its url.* fields as Elasticsearch's uri_parts processor splits them (java.net.URI;
# its tests: `ldap://[2001:db8::7]/c=GB?objectClass?one` has domain `[2001:db8::7]`).
URL_CASES = {
    "ipv6 literal host keeps its brackets": (
        "http://[2001:db8::1]:80/a",
        {"url.domain": "[2001:db8::1]", "url.port": 80, "url.path": "/a", "url.scheme": "http"},
    ),
    "ipv6 literal host without port": (
        "https://[2001:db8::1]/a",
        {"url.domain": "[2001:db8::1]", "url.port": ABSENT, "url.path": "/a"},
    ),
    "a ? with nothing after it: an empty query": (
        "http://a.com:80/search?",
        {"url.path": "/search", "url.query": "", "url.fragment": ABSENT},
    ),
    "no ?: no query": ("http://a.com:80/search", {"url.path": "/search", "url.query": ABSENT}),
    "a # with nothing after it: an empty fragment": (
        "http://a.com:80/p?q=1#",
        {"url.path": "/p", "url.query": "q=1", "url.fragment": ""},
    ),
    "a path-only target with :// in its query": (
        "/login?next=https://evil.example/x",
        {
            "url.original": "/login?next=https://evil.example/x",
            "url.path": "/login",
            "url.query": "next=https://evil.example/x",
            "url.scheme": ABSENT,
            "url.domain": ABSENT,
        },
    ),
    "a path-only target with :// in its path": (
        "/a/b://c/d.js",
        {"url.path": "/a/b://c/d.js", "url.extension": "js", "url.domain": ABSENT},
    ),
    "no scheme before ://: no url parts": (
        "1http://a.com/x",
        {"url.original": "1http://a.com/x", "url.scheme": ABSENT, "url.path": ABSENT},
    ),
    "a non-ASCII letter is no scheme": (
        "\u0127ttp://a.com/x",
        {"url.scheme": ABSENT, "url.domain": ABSENT, "url.path": ABSENT},
    ),
    "a scheme with digits and +": (
        "coap+tcp://a.com:5683/x",
        {"url.scheme": "coap+tcp", "url.domain": "a.com", "url.port": 5683, "url.path": "/x"},
    ),
    # An absolute URL without a path: java.net.URI gives an empty path (uri_parts' own test:
    # `http://www.google.com` has path ""), and its authority ends at `?` or `#` as at `/`.
    "no path: an empty path": (
        "http://example.com",
        {"url.domain": "example.com", "url.path": "", "url.query": ABSENT, "url.port": ABSENT},
    ),
    "no path, a port and a query": (
        "http://example.com:80?x=1",
        {"url.domain": "example.com", "url.port": 80, "url.path": "", "url.query": "x=1"},
    ),
    "no path, a fragment": (
        "http://example.com#top",
        {"url.domain": "example.com", "url.path": "", "url.fragment": "top", "url.port": ABSENT},
    ),
    "no path, an @ in the fragment is no user": (
        "http://a.com#x@b.com",
        {"url.domain": "a.com", "url.username": ABSENT, "url.fragment": "x@b.com"},
    ),
    "no path, a : in the fragment is no port": (
        "http://a.com:8080#x:1",
        {"url.domain": "a.com", "url.port": 8080, "url.path": "", "url.fragment": "x:1"},
    ),
    # CONNECT's target (authority form): uri_parts reads `example.com` as a scheme; we read
    # nothing from it (docs/elb-log-formats.md, section 8).
    "an authority alone: no url parts": (
        "example.com:443",
        {"url.original": "example.com:443", "url.scheme": ABSENT, "url.domain": ABSENT},
    ),
    # A deliberate difference (docs/elb-log-formats.md, section 8): uri_parts would decode these.
    "percent-encoded parts are kept as sent": (
        "http://a.com:80/s%20x.js?q=a%20b&r=%2F",
        {"url.path": "/s%20x.js", "url.extension": "js", "url.query": "q=a%20b&r=%2F"},
    ),
}


@pytest.mark.parametrize("url", URL_CASES.values(), ids=URL_CASES.keys())
@pytest.mark.parametrize("name", URL_LINES)
def test_url_parts_as_uri_parts_splits_them(name: str, url: tuple[str, dict[str, Any]]) -> None:
    text, expected = url
    event = check(URL_LINES[name].format(text), expected)
    assert get(event, "url.original") == text


def test_the_two_level_memos_stay_bounded_over_values_that_never_repeat() -> None:
    # A container parses for hours: one cipher (or target) with ever new protocols (or status
    # codes) grew the inner dicts of these memos without bound; only the outer one was bounded.
    line = next(line for line in ALB_LINES if " TLSv1.2 " in line and " 200 200 " in line)
    for n in range(MEMO_LIMIT + 100):
        varied = line.replace(" TLSv1.2 ", f" TLSv{n} ").replace(" 200 200 ", f" 200 {n % 600} ")
        assert PARSE_FAILURE_TAG not in (parse_line(varied).get("tags") or [])
    for memo in (alb._tls, alb._backends):
        assert 0 < sum(map(len, memo.values())) <= MEMO_LIMIT


def _varied_lines(n: int) -> tuple[str, str, str]:
    """An ALB, a Classic and an NLB line whose memoised values are all new for each ``n``."""
    second = f"2018-07-02T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}"
    alb_fields = list(ALB_FIELDS)
    alb_fields[1] = f"{second}.186641Z"
    alb_fields[8] = f"{n % 600:0{3 + n // 600}d}"  # elb_status_code: 200, 0200, ...
    alb_fields[12] = f'"GET https://www{n}.example.com:443/ HTTP/1.1"'
    alb_fields[13] = f'"curl/{n}"'
    alb_fields[16] = f"{TG}{n}"
    alb_fields[18] = f'"www{n}.example.com"'
    alb_fields[19] = f'"{CERT}{n}"'
    classic_line = (
        f"{second}.945958Z my-classic-lb 192.168.131.39:2817 10.0.{n // 250}.{n % 250}:80 "
        '0.000073 0.001048 0.000057 200 200 0 29 "GET http://www.example.com:80/ HTTP/1.1" '
        '"-" - -'
    )
    nlb_line = (
        f"tls 2.0 {second} net/my-nlb/c6e77e28c25b2234 g3d4b5e8bb8464cd 72.21.218.154:51341 "
        f"172.100.100.185:{n + 1} 5 2 98 246 - - - ECDHE-RSA-AES128-SHA tlsv12 - - - - - -"
    )
    return " ".join(alb_fields), classic_line, nlb_line


def test_every_memo_stays_bounded_over_values_that_never_repeat() -> None:
    # A container parses for hours: each memo of a value seen in lines (a second, an authority,
    # a user agent, a status text, an ARN, a domain, a backend, a destination) is emptied when
    # it reaches MEMO_LIMIT, or ever new values would grow it until the function runs out of
    # memory. (The two-level memos have their own test above.)
    for n in range(MEMO_LIMIT + 100):
        for line in _varied_lines(n):
            event = parse_line(line)
            assert PARSE_FAILURE_TAG not in (event.get("tags") or []), event.get("error")
    assert get(event, "destination.port") == MEMO_LIMIT + 100
    memos: dict[str, dict[str, Any]] = {
        "valid_seconds": _values.valid_seconds,
        "_authorities": _values._authorities,
        "_agents": alb._agents,
        "_statuses": alb._statuses,
        "_target_groups": alb._target_groups,
        "_certificates": alb._certificates,
        "_domains": alb._domains,
        "classic._backends": classic._backends,
        "nlb._destinations": nlb._destinations,
    }
    assert {name: 0 < len(memo) <= MEMO_LIMIT for name, memo in memos.items()} == dict.fromkeys(
        memos, True
    )


def test_no_alb_type_starts_as_a_line_of_another_format_does() -> None:
    # The privacy rules' short path parses a rewritten line whose first character is in
    # _SHORT_PATH_OTHER_FORMATS without ALB's fast path (event._parse_split): an ALB type
    # starting with one would be parsed by the general path alone, slower.
    assert [kind for kind in alb.TYPES if kind[:1] in _SHORT_PATH_OTHER_FORMATS] == []
