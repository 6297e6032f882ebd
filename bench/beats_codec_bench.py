"""Which zlib-compatible codec compresses beats windows: zlib or ISA-L (``isal.isal_zlib``).

Run from the repository root::

    .venv/bin/python -m bench.beats_codec_bench                  # 20,000 ALB events, best of 5

The events are the shipper's own (``bench.corpus`` lines through ``EventBuilder`` and orjson),
cut into windows of ``--window`` events like the beats sink's (a 256 KiB pipeline batch holds
about 100 ALB events). For each codec and level: throughput over the uncompressed JSON, the
compression ratio, and the cost per event; then the cost per event of each step of a window:
the framing the pipeline does on its parsing thread (``BEATS_FRAMES.join`` of the serialised
events, which carry ``@metadata``; against the newline join json_lines needs there) and
``encode_window`` on a sender thread (the window frame, and the compression at the default 3,
which releases the GIL). Every compressed window is checked to inflate with the standard
library's zlib, as Logstash's ``Inflater`` does.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from isal import isal_zlib  # noqa: E402

from bench.corpus import alb_lines  # noqa: E402
from elb_log_shipper.formats import EventBuilder  # noqa: E402
from elb_log_shipper.logstash.beats import BEATS_FRAMES, encode_window  # noqa: E402
from elb_log_shipper.logstash.connection import JSON_LINES, Batch  # noqa: E402

SEED = 42


def events_of(count: int, size: int) -> list[list[bytes]]:
    """The corpus's events serialised as the pipeline serialises them for the beats sink (with
    ``@metadata``), in windows of ``size``."""
    builder = EventBuilder(
        bucket="bench", key="bench.log", version="etag", region="us-east-1", account="1"
    )
    lines = []
    for offset, line in enumerate(alb_lines(count, SEED)):
        event = builder.build(line.encode(), offset)
        assert event is not None
        lines.append(orjson.dumps({**event, "@metadata": BEATS_FRAMES.metadata}))
    return [lines[i : i + size] for i in range(0, len(lines), size)]


def best_seconds(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    events = events_of(args.events, args.window)
    windows = [BEATS_FRAMES.join(lines) for lines in events]
    total = sum(map(len, windows))
    codecs: list[tuple[str, Callable[[bytes], bytes]]] = [
        *((f"zlib {level}", lambda w, lv=level: zlib.compress(w, lv)) for level in (1, 3, 6)),
        *((f"isal {level}", lambda w, lv=level: isal_zlib.compress(w, lv)) for level in range(4)),
    ]
    print(f"{args.events:,} ALB events, {total / args.events:,.0f} bytes each as JSON, windows of")
    print(f"{args.window}; best of {args.repeat}\n")
    print("| codec | MB/s | ratio | µs per event |")
    print("|---|---:|---:|---:|")
    for name, compress in codecs:
        compressed = [compress(window) for window in windows]
        if any(zlib.decompress(c) != w for c, w in zip(compressed, windows, strict=True)):
            print(f"{name}: does not inflate with zlib", file=sys.stderr)
            return 1
        seconds = best_seconds(args.repeat, lambda: [compress(w) for w in windows])  # noqa: B023
        ratio = total / sum(map(len, compressed))
        print(
            f"| {name} | {total / seconds / 1e6:,.0f} | {ratio:.1f} "
            f"| {seconds / args.events * 1e6:.2f} |"
        )
    print("\n| step of a window | thread | µs per event |")
    print("|---|---|---:|")
    batches = [Batch(window, len(lines)) for window, lines in zip(windows, events, strict=True)]
    steps: list[tuple[str, str, Callable[[], object]]] = [
        (
            "json_lines: newline join (for comparison)",
            "parsing",
            lambda: [JSON_LINES.join(lines) for lines in events],
        ),
        (
            "beats: `BEATS_FRAMES.join` (J frames)",
            "parsing",
            lambda: [BEATS_FRAMES.join(lines) for lines in events],
        ),
        (
            "beats: `encode_window`, compression 0",
            "sender",
            lambda: [encode_window(b, 0) for b in batches],
        ),
        (
            "beats: `encode_window`, compression 3",
            "sender",
            lambda: [encode_window(b, 3) for b in batches],
        ),
    ]
    for name, thread, step in steps:
        seconds = best_seconds(args.repeat, step)
        print(f"| {name} | {thread} | {seconds / args.events * 1e6:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
