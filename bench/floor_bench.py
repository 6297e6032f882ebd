"""The floor under the per-line cost: everything the shipper does to a line except parsing it.

Run from the repository root::

    .venv/bin/python -m bench.floor_bench                  # 100,000 lines, best of 5
    .venv/bin/python -m bench.floor_bench --lines 20000 --repeat 2

Two runs of the shipper's loop over the same gzipped corpus (``bench.corpus.alb_lines``), on
CPU 0, in one thread, timed in that thread's CPU time (system time included):

- **full**: gunzip and frame 1 MiB chunks (``LineDecoder``), build each line's event
  (``EventBuilder.build``), ``orjson.dumps`` it, join batches of ``DEFAULT_BATCH_BYTES`` and
  ``sendall`` them to a loopback reader thread on the other CPU;
- **floor**: the same loop with the parser taken out: each line's event is one of 1,000 events
  built beforehand (same shape and size), so everything else costs what it costs in the shipper.

full minus floor is what parsing costs in place. Both run in the same process state, which
matters on x86_64 CPUs with AVX-512: Python code there measures up to 20 % slower once ISA-L's
inflate or orjson has run in the process (bench/README.md), so stages timed one by one do not add
up. At 120,000 lines/s per core a line may take 8.33 µs; the report says how much of that the
floor leaves for the parser.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import itertools
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from isal import isal_zlib

from bench.corpus import alb_lines
from elb_log_shipper.config import DEFAULT_BATCH_BYTES
from elb_log_shipper.formats import EventBuilder
from elb_log_shipper.framing import LineDecoder

TARGET_LINES_PER_SECOND = 120_000
CHUNK_BYTES = 1024 * 1024
KEY = "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/bench.log.gz"


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """Least thread CPU time of ``repeat`` runs of ``run``."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.thread_time()
        run()
        best = min(best, time.thread_time() - start)
    return best


def inflate(module: Any, data: bytes) -> None:
    member = module.decompressobj(wbits=31)
    for start in range(0, len(data), CHUNK_BYTES):
        member.decompress(data[start : start + CHUNK_BYTES])


def ship_loop(data: bytes, event_of: Callable[[bytes, int], object], sock: socket.socket) -> int:
    """``ship_object``'s loop from gzip bytes to a socket, with ``event_of`` as the parser."""
    decoder = LineDecoder()
    dumps = orjson.dumps
    pending: list[bytes] = []
    append = pending.append
    per_batch = 64
    count = 0
    for start in range(0, len(data), CHUNK_BYTES):
        for lines in decoder.feed(data[start : start + CHUNK_BYTES]):
            count += len(lines)
            for offset, raw in lines:
                append(dumps(event_of(raw, offset)))
                if len(pending) >= per_batch:
                    append(b"")
                    payload = b"\n".join(pending)
                    per_batch = max(16, DEFAULT_BATCH_BYTES * (len(pending) - 1) // len(payload))
                    pending.clear()
                    sock.sendall(payload)
    append(b"")
    sock.sendall(b"\n".join(pending))
    decoder.finish()
    return count


class Drain:
    """A loopback reader on the last CPU that reads every connection to its end."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._cpu = sorted(os.sched_getaffinity(0))[-1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        os.sched_setaffinity(0, {self._cpu})
        while True:
            conn, _ = self._server.accept()
            with conn:
                while conn.recv(CHUNK_BYTES):
                    pass

    def connect(self) -> socket.socket:
        return socket.create_connection(self._server.getsockname())


def timed_loop(
    repeat: int, data: bytes, event_of: Callable[[bytes, int], object], drain: Drain
) -> float:
    def run() -> None:
        with drain.connect() as sock:
            ship_loop(data, event_of, sock)

    return best_of(repeat, run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    lines, repeat = args.lines, args.repeat
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    text = "".join(line + "\n" for line in alb_lines(lines)).encode()
    data = gzip.compress(text, compresslevel=6)
    builder = EventBuilder(
        bucket="bench", key=KEY, version="etag", region="us-east-1", account="123456789012"
    )
    built = [
        builder.build(raw, offset) for offset, raw in enumerate(text.split(b"\n", 1000)[:1000])
    ]
    json_bytes = sum(len(orjson.dumps(event)) for event in built) / len(built)
    cycle = itertools.cycle(built)

    def prebuilt(raw: bytes, offset: int) -> object:
        return next(cycle)

    drain = Drain()
    gunzip = {
        "gunzip, ISA-L (as shipped)": best_of(repeat, lambda: inflate(isal_zlib, data)),
        "gunzip, zlib (for comparison)": best_of(repeat, lambda: inflate(zlib, data)),
    }
    floor = timed_loop(repeat, data, prebuilt, drain)
    full = timed_loop(repeat, data, builder.build, drain)

    def micros(seconds: float) -> str:
        return f"{seconds / lines * 1e6:.2f}"

    budget = 1e6 / TARGET_LINES_PER_SECOND
    print(
        f"{lines:,} ALB lines, {len(text) / lines:.0f} bytes each, {json_bytes:,.0f} bytes of "
        f"JSON per event; best of {repeat}, thread CPU time, one core\n"
    )
    print("| loop | µs per line | lines per CPU-second |\n|---|---:|---:|")
    for name, value in gunzip.items():
        print(f"| {name} | {micros(value)} | |")
    print(
        f"| **floor**: gunzip, framing, JSON, batches, socket (parser taken out) | "
        f"**{micros(floor)}** | {lines / floor:,.0f} |"
    )
    print(
        f"| **full**: the same with `EventBuilder.build` | **{micros(full)}** | "
        f"{lines / full:,.0f} |"
    )
    print(f"| full - floor: parsing in place | {micros(full - floor)} | |")
    left = budget - floor * 1e6 / lines
    print(
        f"\nAt {TARGET_LINES_PER_SECOND:,} lines/s per core a line may take {budget:.2f} µs; the "
        f"floor takes {micros(floor)} µs, leaving {left:.2f} µs to decode, tokenize, parse and "
        f"build the event, which takes {micros(full - floor)} µs."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
