"""A receiver that caps connections (issue 12 item 3): time and connections against no cap.

Run from the repository root::

    .venv/bin/python -m bench.cap_bench                      # 200k lines, pool 16, cap 3, best of 5
    .venv/bin/python -m bench.cap_bench --lines 50000 --runs 1

The sink alone (``LogstashSender`` over a 16-connection ``SocketPool``), in this process, ships
the same pre-serialised JSON lines to two receivers on 127.0.0.1, one after the other in each
round so that load on the machine hits both alike:

- *uncapped*: the test suite's healthy json_lines receiver;
- *capped*: ``tests.support.faults.CappedServer``, which resets every connection beyond ``--cap``
  at accept, before reading a byte (syslog-ng's ``max-connections`` behaves so).

Each run must deliver every line exactly once. Reported: best wall time, connections opened
(highest), refusals, and the ratios the issue sets (time <= 1.5x, connections <= 2x).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(REPO))

from tests.support.faults import CappedServer  # noqa: E402
from tests.support.receiver import JsonLinesReceiver, json_lines  # noqa: E402

from elb_log_shipper.config import Settings  # noqa: E402
from elb_log_shipper.logstash import LogstashSender, SocketPool  # noqa: E402

# Lines per batch: what the pipeline's 256 KiB batches hold of these ~300-byte events.
LINES_PER_BATCH = 800
# The targets.
TARGET_TIME_RATIO = 1.5
TARGET_CONNECTIONS_RATIO = 2.0


def payload(lines: int) -> list[tuple[bytes, int]]:
    events = [{"id": f"e-{i}", "message": "GET /x " + "y" * 250} for i in range(lines)]
    return [
        (json_lines(events[i : i + LINES_PER_BATCH]), len(events[i : i + LINES_PER_BATCH]))
        for i in range(0, lines, LINES_PER_BATCH)
    ]


def ship_once(
    server: JsonLinesReceiver, batches: list[tuple[bytes, int]], pool_size: int
) -> tuple[float, int, int]:
    """Ship ``batches``; (seconds, connections opened, refusals seen by the pool)."""
    settings = Settings(host="127.0.0.1", port=server.port, pool_size=pool_size)
    pool = SocketPool(settings)
    started = time.perf_counter()
    sender = LogstashSender(pool, deadline=time.monotonic() + 300)
    for data, events in batches:
        sender.send(data, events)
    sender.finish(time.monotonic() + 300)
    seconds = time.perf_counter() - started
    pool.close()
    return seconds, pool.connections_opened, pool.counters.refusals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--cap", type=int, default=3)
    args = parser.parse_args(argv)
    batches = payload(args.lines)
    results: dict[str, list[tuple[float, int, int]]] = {"uncapped": [], "capped": []}
    for _ in range(args.runs):
        for name, runs in results.items():
            server = JsonLinesReceiver() if name == "uncapped" else CappedServer(cap=args.cap)
            with server:
                runs.append(ship_once(server, batches, args.pool))
                server.wait_idle()
                ids = server.event_ids()
            if len(ids) != args.lines or len(set(ids)) != args.lines:
                print(
                    f"{name}: {len(ids)} lines received, {len(set(ids))} distinct", file=sys.stderr
                )
                return 1
    best = {name: min(run[0] for run in runs) for name, runs in results.items()}
    opened = {name: max(run[1] for run in runs) for name, runs in results.items()}
    refusals = max(run[2] for run in results["capped"])
    print(f"{args.lines:,} lines, pool {args.pool}, cap {args.cap}, best of {args.runs}\n")
    print("| receiver | best seconds | lines/s | connections opened (max) | refusals |")
    print("|---|---:|---:|---:|---:|")
    for name in results:
        print(
            f"| {name} | {best[name]:.2f} | {args.lines / best[name]:,.0f} | {opened[name]} | "
            f"{refusals if name == 'capped' else 0} |"
        )
    time_ratio = best["capped"] / best["uncapped"]
    connections_ratio = opened["capped"] / max(1, opened["uncapped"])
    print(
        f"\ntime ratio {time_ratio:.2f} (target <= {TARGET_TIME_RATIO}): "
        f"{'met' if time_ratio <= TARGET_TIME_RATIO else 'NOT met'}; connections ratio "
        f"{connections_ratio:.2f} (target <= {TARGET_CONNECTIONS_RATIO}): "
        f"{'met' if connections_ratio <= TARGET_CONNECTIONS_RATIO else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
