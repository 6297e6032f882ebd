"""Sample ELB log objects of every kind, for ``elb-log-shipper demo`` and for tests.

The lines are AWS's documented examples and real odd lines from other parsers' test suites
(IPv6 clients, URLs with spaces, escaped quotes, TCP listeners, old 12-field Classic lines,
appended ALB fields), plus one line that is not a log at all, to show a parse failure.
"""

from __future__ import annotations

__all__ = ["SAMPLE_OBJECTS", "SampleObject"]

_DAY = "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/"
_ACCOUNT = "123456789012_elasticloadbalancing_us-east-1"

_TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-targets/73e2d6bc24d8a067"
_CERT = "arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"

ALB_LINES = (
    # AWS's HTTPS example with the 2024 trace id appended.
    f"https 2026-11-28T23:35:00.186641Z app/my-alb/50dc6c495c0c9188 192.168.131.39:2817 "
    f'10.0.0.1:80 0.086 0.048 0.037 200 200 0 57 "GET https://www.example.com:443/ HTTP/1.1" '
    f'"curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 {_TG} '
    f'"Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" "{_CERT}" 1 '
    f'2026-11-28T23:34:48.364000Z "authenticate,forward" "-" "-" "10.0.0.1:80" "200" "-" "-" '
    f"TID_1234abcd5678ef90",
    # The same as ALB writes it since 2026: 2025's transform fields (none applied) and, last,
    # the address of the load balancer node (undocumented; the one in the object's key).
    f"https 2026-11-28T23:35:00.286641Z app/my-alb/50dc6c495c0c9188 192.168.131.40:2818 "
    f'10.0.0.1:80 0.086 0.048 0.037 200 200 0 57 "GET https://www.example.com:443/?q=a HTTP/1.1" '
    f'"curl/8.5.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 {_TG} '
    f'"Root=1-58337281-1d84f3d73c47ec4e58577260" "www.example.com" "{_CERT}" 1 '
    f'2026-11-28T23:34:48.464000Z "forward" "-" "-" "10.0.0.1:80" "200" "-" "-" '
    f'TID_1234abcd5678ef92 "-" "-" "-" 10.0.1.15',
    # Lambda target that failed: no target, status `-`, error reason.
    f"http 2026-11-28T23:35:01.186641Z app/my-alb/50dc6c495c0c9188 192.168.131.39:2817 - "
    f'0.000 0.001 0.000 502 - 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" '
    f'- - {_TG} "Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 0 '
    f'2026-11-28T23:34:48.364000Z "forward" "-" "LambdaInvalidResponse" "-" "-" "-" "-" '
    f"TID_1234abcd5678ef91",
    # IPv6 client and target (not bracketed), a URL with a space and \x22, h2.
    f"h2 2026-11-28T23:35:02.135052Z app/my-alb/50dc6c495c0c9188 "
    f"2601:6bbc:c529:9dad:6bbc:c529:9dad:6bbc:50599 fd6d:6bbc:c529:6::face:ed83:f46:80 "
    f'0.001 0.052 0.000 200 200 589 2084 "POST https://api.example.com:443/search q/\\x22x\\x22 '
    f'HTTP/2.0" "Mozilla/5.0 (X11; Linux x86_64)" TLS_AES_128_GCM_SHA256 TLSv1.3 {_TG} '
    f'"Root=1-665d7a41-032e7e1d59b8e8043f88b4dc" "api.example.com" "session-reused" 0 '
    f'2026-11-28T23:35:02.080000Z "forward" "-" "-" "[fd6d:6bbc:c529:6::face:ed83:f46]:80" '
    f'"200" "Ambiguous" "UndefinedContentLengthSemantics" TID_dc57cebed65b444ebc8177bb698fe166 '
    f'"api.internal" "/v2/search" "TransformSuccess"',
    # A malformed request and a WAF block, with the quoted priority run into the next field.
    "http 2026-11-28T23:35:03.216357Z app/my-alb/50dc6c495c0c9188 113.241.19.90:15070 - "
    '-1 -1 -1 400 - 0 272 "- http://my-alb-640112591.us-east-1.elb.amazonaws.com:80- -" "-" '
    '- - - "-" "-" "-"-1 2026-11-28T23:35:03.967000Z "waf" "-" "-" "-" "-" "-" "-" '
    "TID_dc57cebed65b444ebc8177bb698fe167",
)

CLASSIC_LINES = (
    "2026-11-28T23:39:43.945958Z my-classic-lb 192.168.131.39:2817 10.0.0.1:80 0.000073 "
    '0.001048 0.000057 200 200 0 29 "GET http://www.example.com:80/ HTTP/1.1" '
    '"Mozilla/5.0 (compatible; \\"quoted\\" bot)" - -',
    # TCP/SSL listener: no HTTP at all.
    "2026-11-28T23:39:44.945958Z my-classic-lb 192.168.131.39:2817 10.0.0.1:80 0.001065 "
    '0.000015 0.000023 - - 57 502 "- - - " "-" ECDHE-ECDSA-AES128-GCM-SHA256 TLSv1.2',
    # A pre-2015 line with 12 fields, no instance reached.
    "2026-11-28T23:39:45.865823Z my-classic-lb 49.150.87.133:55128 - -1 -1 -1 408 - 1294336 0 "
    '"PUT https://media.example.com:443/videos/F4_M-T4X0MM6Hvy1PFHesw HTTP/1.1"',
    # Not a log line: becomes a parse-failure event that keeps the text.
    "this line is not an ELB log",
)

NLB_LINES = (
    "tls 2.0 2026-11-28T23:40:42 net/my-nlb/c6e77e28c25b2234 g3d4b5e8bb8464cd "
    "72.21.218.154:51341 172.100.100.185:443 5 2 98 246 - "
    "arn:aws:acm:us-east-1:123456789012:certificate/2a108f19-aded-46b0-8493-c63eb1ef4a99 - "
    "ECDHE-RSA-AES128-SHA tlsv12 - my-nlb-c6e77e28c25b2234.elb.us-east-1.amazonaws.com "
    'h2 h2 "h2","http/1.1" 2026-11-28T23:40:20',
    # Handshake never completed.
    "tls 2.0 2026-11-28T23:40:43 net/my-nlb/c6e77e28c25b2234 g3d4b5e8bb8464cd "
    "72.21.218.154:51342 172.100.100.185:443 3 - 0 0 handshake_failure - - - - - - - - - -",
)

CONNECTION_LINES = (
    "2026-11-28T23:41:15.514108Z 203.0.113.1 36280 443 TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 "
    '4.036 "CN=amazondomains.com,O=endEntity,L=Seattle,ST=Washington,C=US" '
    "NotBefore=2023-09-21T22:43:21Z;NotAfter=2026-06-17T22:43:21Z FEF257372D5C14D4 Success "
    "TID_3180a73013c8ca4bac2f731159d4b0fe",
    '2026-11-28T23:41:16.514108Z 203.0.113.2 36281 80 - - - "-" - - - '
    "TID_3180a73013c8ca4bac2f731159d4b0ff",
)


class SampleObject:
    """One sample object: its S3 key, whether ELB would gzip it, and its lines."""

    __slots__ = ("gzip", "key", "lines")

    def __init__(self, key: str, lines: tuple[str, ...], *, gzip: bool) -> None:
        self.key = key
        self.lines = lines
        self.gzip = gzip

    @property
    def data(self) -> bytes:
        return "".join(line + "\n" for line in self.lines).encode()


SAMPLE_OBJECTS = (
    SampleObject(
        f"{_DAY}{_ACCOUNT}_app.my-alb.50dc6c495c0c9188_20261128T2340Z_10.0.1.15_2a3b4c5d.log.gz",
        ALB_LINES,
        gzip=True,
    ),
    SampleObject(
        f"{_DAY}{_ACCOUNT}_my-classic-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.log",
        CLASSIC_LINES,
        gzip=False,
    ),
    SampleObject(
        f"{_DAY}{_ACCOUNT}_net.my-nlb.c6e77e28c25b2234_20261128T2340Z_8f2a9c1d.log.gz",
        NLB_LINES,
        gzip=True,
    ),
    SampleObject(
        f"{_DAY}conn_log_{_ACCOUNT}_app.my-alb.50dc6c495c0c9188_20261128T2340Z_10.0.1.15_"
        "7e8f9a0b.log.gz",
        CONNECTION_LINES,
        gzip=True,
    ),
)
