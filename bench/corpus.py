"""Deterministic synthetic ALB access-log corpus for benchmarks.

Lines look like production traffic: many clients, a handful of targets, target groups and
certificates per load balancer, varied paths, queries and user agents, 30 fields (2024 format with
``conn_trace_id``). The same seed gives the same bytes on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "curl/8.4.0",
    "okhttp/4.12.0",
    "ELB-HealthChecker/2.0",
    "python-requests/2.31.0",
)
_PATHS = ("/", "/api/v1/orders", "/api/v1/users/{n}", "/static/app.{n}.js", "/login", "/search")
_METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE")
_STATUS = (200, 200, 200, 200, 201, 204, 301, 304, 400, 403, 404, 500, 502)


def alb_lines(count: int, seed: int = 42) -> Iterator[str]:
    """``count`` ALB access-log lines (without newline)."""
    rnd = random.Random(seed)
    targets = [f"10.0.{rnd.randrange(256)}.{rnd.randrange(256)}:8080" for _ in range(8)]
    tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-tg/73e2d6bc24d8a067"
    cert = "arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"
    second = 1_700_000_000
    for i in range(count):
        if i % 50 == 0:
            second += 1
        hh, mm, ss = (second // 3600) % 24, (second // 60) % 60, second % 60
        micros = rnd.randrange(1_000_000)
        ts = f"2026-11-28T{hh:02d}:{mm:02d}:{ss:02d}.{micros:06d}Z"
        created = f"2026-11-28T{hh:02d}:{mm:02d}:{ss:02d}.{max(micros - 5000, 0):06d}Z"
        client = (
            f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}."
            f"{rnd.randrange(1, 255)}:{rnd.randrange(1024, 65535)}"
        )
        status = rnd.choice(_STATUS)
        target = rnd.choice(targets)
        path = rnd.choice(_PATHS).format(n=rnd.randrange(100000))
        query = (
            f"?page={rnd.randrange(50)}&q=item{rnd.randrange(1000)}" if rnd.random() < 0.3 else ""
        )
        method = rnd.choice(_METHODS)
        https = rnd.random() < 0.8
        scheme, port = ("https", 443) if https else ("http", 80)
        tls = "ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2" if https else "- -"
        trace = f"Root=1-{rnd.getrandbits(32):08x}-{rnd.getrandbits(96):024x}"
        yield (
            f"{'https' if https else 'http'} {ts} app/my-loadbalancer/50dc6c495c0c9188 {client} "
            f"{target} 0.{rnd.randrange(1000):03d} 0.{rnd.randrange(1000):03d} 0.000 {status} "
            f"{status} {rnd.randrange(100, 5000)} {rnd.randrange(100, 200000)} "
            f'"{method} {scheme}://www.example.com:{port}{path}{query} HTTP/1.1" '
            f'"{rnd.choice(_AGENTS)}" {tls} {tg} "{trace}" "www.example.com" '
            f'"{cert if https else "-"}" 0 {created} "forward" "-" "-" "{target}" "{status}" '
            f'"-" "-" TID_{rnd.getrandbits(128):032x}'
        )
