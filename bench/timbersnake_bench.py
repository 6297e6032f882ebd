"""Issue 10's exactly-once figure against a lumberjack v2 server someone else wrote: timbersnake.

Run from the repository root::

    .venv/bin/python -m bench.timbersnake_bench                 # 1.5M lines, beats and beats+tls
    .venv/bin/python -m bench.timbersnake_bench --lines 3000 --transport beats

``ship_bench``'s corpus (the same cached gzip object), moto S3 server and shipper run: the real
``elb-log-shipper ship s3://... --to beats://`` (or ``beats+tls://``, verified against a trustme
CA) with ``LOGSTASH_POOL_SIZE`` 4, under GNU time for its peak RSS. The receiver is timbersnake's
server (PyPI; ``tests/support/timbersnake_server.py`` runs it in a thread) in a process of its
own, which keeps only each event's ``event.id`` (a set, and a count of the events) and counts
the TCP connections its listener accepts. A run fails unless the command exited 0, every id
arrived exactly once, and no more connections were opened than the pool holds.

timbersnake decodes each event with ``json.loads`` and logs it at DEBUG, in one asyncio thread,
and ACKs a window only after that: its CPU is part of the run's wall time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

import trustme
from tests.support.s3server import moto_server
from tests.support.timbersnake_server import TimbersnakeServer

from bench.ship_bench import (
    BUCKET,
    CPUS,
    Config,
    Harness,
    add_cache_argument,
    build_corpus,
    check_exactly_once,
    machine_line,
    ship,
    upload,
)

TRANSPORTS = ("beats", "beats+tls")
DEFAULT_LINES = 1_500_000
DEFAULT_POOL = 4
# timbersnake serves compressed windows only (its plain J frame path is broken).
COMPRESSION = "3"


class IdCountingServer(TimbersnakeServer):
    """timbersnake keeping only each event's ``event.id``: 1.5M whole events would take some
    19 GB as dicts (12.8 KB each), their ids about 215 MB."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(ssl_context)
        self.received = 0
        self.ids: set[object] = set()

    def collect(self, event: Mapping[str, Any]) -> None:
        # Only the server's thread calls this. An event without an id adds None, once.
        self.received += 1
        fields = event.get("event")
        self.ids.add(fields.get("id") if isinstance(fields, Mapping) else None)


@dataclass(frozen=True)
class Received:
    events: int
    distinct: int
    connections: int
    cpu_seconds: float
    peak_rss_mb: float


def serve(conn: Connection, cert_file: str | None) -> None:
    """The server process: send the port, serve until told to stop, then send ``Received``."""
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (timbersnake prints its frame table)
    context = None
    if cert_file is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file)
    with IdCountingServer(context) as server:
        conn.send(server.port)
        conn.recv()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send(
        Received(
            server.received,
            len(server.ids),
            server.connections,
            usage.ru_utime + usage.ru_stime,
            _peak_rss_mb(),
        )
    )


def _peak_rss_mb() -> float:
    """This process's own peak (``VmHWM``); ``ru_maxrss`` may carry its parent's over ``exec``."""
    status = Path("/proc/self/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


class ServerProcess:
    """``with ServerProcess(cert_file) as server:`` timbersnake listens on ``server.port`` in a
    process of its own; ``server.stop()`` ends it and returns what it received."""

    def __init__(self, cert_file: Path | None) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, self._child = context.Pipe()
        cert = None if cert_file is None else str(cert_file)
        self._process = context.Process(target=serve, args=(self._child, cert), daemon=True)
        self.port = 0

    def __enter__(self) -> Self:
        self._process.start()
        # Only the child's now: if it dies, recv() raises EOFError instead of waiting forever.
        self._child.close()
        self.port = self._conn.recv()
        return self

    def stop(self) -> Received:
        self._conn.send("stop")
        received: Received = self._conn.recv()
        return received

    def __exit__(self, *exc: object) -> None:
        self._process.kill()
        self._process.join()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES, help="object size in lines")
    parser.add_argument("--pool", type=int, default=DEFAULT_POOL, help="LOGSTASH_POOL_SIZE (4)")
    parser.add_argument("--cores", type=int, default=2, help="cores for the shipper (2)")
    parser.add_argument(
        "--transport", action="append", choices=TRANSPORTS, help="repeatable; default: both"
    )
    add_cache_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # As ship_bench: this process, moto and (inheriting it) timbersnake's process on the last CPU.
    if len(CPUS) > 1:
        os.sched_setaffinity(0, {CPUS[-1]})
    os.environ["LOGSTASH_BEATS_COMPRESSION"] = COMPRESSION
    args.cache.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca_file = args.cache / "timbersnake-ca.pem"
    cert_file = args.cache / "timbersnake-server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(cert_file)
    )
    rows = []
    with moto_server("127.0.0.1") as moto:
        s3 = moto.client()
        s3.create_bucket(Bucket=BUCKET)
        corpus = build_corpus(args.lines, args.cache)
        upload(s3, corpus)
        for transport in args.transport or TRANSPORTS:
            config = Config(corpus.lines, args.cores, args.pool, transport)
            tls = transport.endswith("tls")
            with ServerProcess(cert_file if tls else None) as server:
                shipped = ship(config, corpus, Harness(moto, ca_file), server.port)
                got = server.stop()
            duplicates = got.events - got.distinct
            check_exactly_once(config, corpus, duplicates, got.distinct, got.connections)
            print(
                f"{corpus.lines:,} lines over {transport} to timbersnake: every event.id once, "
                f"{got.connections} connections, {shipped.wall:.1f} s",
                file=sys.stderr,
            )
            rows.append(
                f"| {transport} | {got.events:,} | {got.distinct:,} | {duplicates:,} "
                f"| {got.connections} ({config.pool}) | {shipped.wall:.1f} "
                f"| {corpus.lines / shipped.wall:,.0f} | {shipped.maxrss_kib / 1024:.0f} "
                f"| {shipped.cpu_seconds:.1f} | {got.cpu_seconds:.1f} | {got.peak_rss_mb:.0f} |"
            )
    print(f"## elb-log-shipper ship: S3 (moto) -> timbersnake\n\n{machine_line()}\n")
    print(
        f"- {corpus.lines:,} lines: {corpus.uncompressed_bytes / 1e6:,.0f} MB uncompressed, "
        f"{corpus.compressed_bytes / 1e6:,.1f} MB gzip; {args.cores} core(s) for the shipper\n"
    )
    print(
        "| transport | events | distinct event.id | duplicates | connections (pool) | wall s "
        "| lines/s end to end | shipper peak RSS MB | shipper CPU s | timbersnake CPU s "
        "| timbersnake peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\nEvery event.id exactly once, connections within the pool: met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
