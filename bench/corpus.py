"""Deterministic synthetic ALB access-log corpus for benchmarks.

Lines look like production traffic: many clients, a handful of targets, target groups and
certificates per load balancer, varied paths, queries and user agents, 30 fields (2024 format with
``conn_trace_id``). The same seed gives the same bytes on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

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


def alb_2025_lines(count: int, seed: int = 42) -> Iterator[str]:
    """``alb_lines`` in 2025's layout, which every ALB writes since: 33 fields, the transform
    fields (transformed host and URI, the transform's status) after the trace id, ``-`` as on
    every line of a load balancer without rewrite transforms."""
    for line in alb_lines(count, seed):
        yield f'{line} "-" "-" "-"'


def alb_2026_lines(count: int, seed: int = 42) -> Iterator[str]:
    """``alb_2025_lines`` as ALB writes them in 2026: 34 fields, the last (undocumented) the
    address of the load balancer node that handled the request, one of a node per zone."""
    rnd = random.Random(seed)
    nodes = [f"10.0.{zone}.{rnd.randrange(1, 255)}" for zone in (16, 32, 48)]
    for line in alb_2025_lines(count, seed):
        yield f"{line} {rnd.choice(nodes)}"


def _client(rnd: random.Random) -> str:
    """A client address as ELB writes it: mostly IPv4, some IPv6 (not bracketed)."""
    if rnd.random() < 0.1:
        return f"2001:db8:{rnd.getrandbits(16):x}::{rnd.getrandbits(16):x}"
    return (
        f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
    )


def _time(second: int, micros: int) -> str:
    hh, mm, ss = (second // 3600) % 24, (second // 60) % 60, second % 60
    return f"2026-11-28T{hh:02d}:{mm:02d}:{ss:02d}.{micros:06d}Z"


def classic_lines(count: int, seed: int = 43) -> Iterator[str]:
    """``count`` Classic access-log lines: HTTP and TCP/SSL listeners, 15- and 12-field lines,
    requests that reached no instance, ``-1`` byte counts of TCP lines."""
    rnd = random.Random(seed)
    backends = [f"10.0.{rnd.randrange(256)}.{rnd.randrange(256)}:80" for _ in range(6)]
    second = 1_700_000_000
    for i in range(count):
        if i % 40 == 0:
            second += 1
        ts = _time(second, rnd.randrange(1_000_000))
        client = f"{_client(rnd)}:{rnd.randrange(1024, 65536)}"
        kind = rnd.random()
        reached = rnd.random() < 0.95
        backend = rnd.choice(backends) if reached else "-"
        times = (
            f"0.{rnd.randrange(1000000):06d} 0.{rnd.randrange(1000000):06d} "
            f"0.{rnd.randrange(1000000):06d}"
            if reached
            else "-1 -1 -1"
        )
        if kind < 0.15:
            # TCP/SSL listener; some files write -1 for a byte count they do not have.
            received = rnd.choice([str(rnd.randrange(100, 9000)), "-1"])
            sent = rnd.choice([str(rnd.randrange(100, 9000)), "-1"])
            ssl = "ECDHE-ECDSA-AES128-GCM-SHA256 TLSv1.2" if rnd.random() < 0.5 else "- -"
            yield (
                f'{ts} my-classic-lb {client} {backend} {times} - - {received} {sent} "- - - " '
                f'"-" {ssl}'
            )
            continue
        status = rnd.choice(_STATUS) if reached else rnd.choice((503, 504, 408))
        code = str(status) if reached else "-"
        path = rnd.choice(_PATHS).format(n=rnd.randrange(100000))
        https = rnd.random() < 0.5
        scheme, port = ("https", 443) if https else ("http", 80)
        head = (
            f"{ts} my-classic-lb {client} {backend} {times} {status} {code} "
            f"{rnd.randrange(0, 5000)} {rnd.randrange(0, 200000)} "
            f'"{rnd.choice(_METHODS)} {scheme}://www.example.com:{port}{path} HTTP/1.1"'
        )
        if kind < 0.25:
            yield head  # before 2015: 12 fields
        else:
            ssl = "ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2" if https else "- -"
            yield f'{head} "{rnd.choice(_AGENTS)}" {ssl}'


def nlb_lines(count: int, seed: int = 44) -> Iterator[str]:
    """``count`` NLB TLS access-log lines (22 fields; some with failed handshakes, some 21)."""
    rnd = random.Random(seed)
    targets = [f"172.31.{rnd.randrange(256)}.{rnd.randrange(256)}:443" for _ in range(4)]
    cert = "arn:aws:acm:us-east-1:123456789012:certificate/2a108f19-aded-46b0-8493-c63eb1ef4a99"
    second = 1_700_000_000
    for i in range(count):
        if i % 30 == 0:
            second += 1
        hh, mm, ss = (second // 3600) % 24, (second // 60) % 60, second % 60
        ts = f"2026-11-28T{hh:02d}:{mm:02d}:{ss:02d}"
        client = f"{_client(rnd)}:{rnd.randrange(1024, 65536)}"
        head = f"tls 2.0 {ts} net/my-nlb/c6e77e28c25b2234 g3d4b5e8bb8464cd {client} "
        target = rnd.choice(targets)
        if rnd.random() < 0.05:
            alert = rnd.choice(("handshake_failure", "46", "internal_error"))
            yield (f"{head}{target} {rnd.randrange(1, 50)} - 0 0 {alert} - - - - - - - - - -")
            continue
        alpn = rnd.choice(('"h2","http/1.1"', '"http/1.1"', "-"))
        tail = f" {ts}" if rnd.random() < 0.8 else ""
        yield (
            f"{head}{target} {rnd.randrange(1, 600000)} {rnd.randrange(1, 300)} "
            f"{rnd.randrange(100, 50000)} {rnd.randrange(100, 500000)} - {cert} - "
            f"{rnd.choice(('ECDHE-RSA-AES128-GCM-SHA256', 'TLS_AES_128_GCM_SHA256'))} "
            f"{rnd.choice(('tlsv12', 'tlsv13'))} {rnd.choice(('-', 'x25519', 'secp256r1'))} "
            f"my-nlb.example.com {rnd.choice(('h2', '-'))} {rnd.choice(('h2', '-'))} {alpn}{tail}"
        )


def connection_lines(count: int, seed: int = 45) -> Iterator[str]:
    """``count`` ALB connection-log lines: 11 fields (the first files), 12, and 15, with and
    without TLS and client certificates, failed verifications."""
    rnd = random.Random(seed)
    second = 1_700_000_000
    for i in range(count):
        if i % 40 == 0:
            second += 1
        ts = _time(second, rnd.randrange(1_000_000))
        head = f"{ts} {_client(rnd)} {rnd.randrange(1024, 65536)}"
        if rnd.random() < 0.2:
            fields = f'{head} 80 - - - "-" - - -'
        else:
            mutual = rnd.random() < 0.3
            subject = '"CN=client.example.com,O=Example,C=US"' if mutual else '"-"'
            validity = (
                "NotBefore=2025-09-21T22:43:21Z;NotAfter=2027-06-17T22:43:21Z" if mutual else "-"
            )
            serial = f"{rnd.getrandbits(64):016X}" if mutual else "-"
            status = (
                rnd.choice(("Success", "Failed:UnableToGetIssuerCert", "Failed:CertExpired"))
                if mutual
                else "Success"
            )
            fields = (
                f"{head} 443 {rnd.choice(('TLSv1.2', 'TLSv1.3'))} "
                f"{rnd.choice(('ECDHE-RSA-AES128-GCM-SHA256', 'TLS_AES_128_GCM_SHA256'))} "
                f"{rnd.randrange(1, 9000) / 1000:.3f} {subject} {validity} {serial} {status}"
            )
        shape = rnd.random()
        if shape < 0.2:
            yield fields  # the first connection logs: no conn_trace_id
        elif shape < 0.7:
            yield f"{fields} TID_{rnd.getrandbits(128):032x}"
        else:
            yield (
                f"{fields} TID_{rnd.getrandbits(128):032x} x25519 app/my-alb/50dc6c495c0c9188 "
                f"10.0.1.{rnd.randrange(256)}"
            )


HEALTH_CHECK_AGENT = "ELB-HealthChecker/2.0"


def with_health_checks(lines: Iterable[str], tenths: int = 3) -> Iterator[str]:
    """``lines`` with ``tenths`` in ten of them health checks (lines ``i`` with ``i % 10 <
    tenths``: the health checker's user agent and ``GET /health``), and no other line with the
    health checker's user agent: a drop filter on it removes exactly those lines."""
    for i, line in enumerate(lines):
        parts = line.split('"')
        if i % 10 < tenths:
            _, url, version = parts[1].split(" ")
            parts[1] = f"GET {url[: url.index('/', url.index('//') + 2)]}/health {version}"
            parts[3] = HEALTH_CHECK_AGENT
        elif parts[3] == HEALTH_CHECK_AGENT:
            parts[3] = "curl/8.4.0"
        yield '"'.join(parts)
