"""How long worker processes take to start, by multiprocessing start method: the figures behind
``workers.START_METHOD``.

Run from the repository root::

    .venv/bin/python -m bench.start_method_bench            # best of 3
    .venv/bin/python -m bench.start_method_bench --runs 5

Each start method runs in a fresh interpreter (a start method's machinery, such as the fork
server, lives as long as its process), which first imports what the ``ship`` command has
imported when it starts workers (the CLI, boto3) and makes an S3 client, as the command's
listing does. It then starts two workers, waits until each has run the command's initializer
(imports, an S3 client of its own), and does it again: the first pair pays for starting the fork
server, the second shows what each further worker costs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
METHODS = ("fork", "forkserver", "spawn")
DEFAULT_RUNS = 3
WORKERS = 2
PRELOAD = ["elb_log_shipper.cli"]


def _initialize() -> None:
    """What a ``ship`` worker does before its first object."""
    import boto3

    import elb_log_shipper.cli  # noqa: F401

    boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")


def _start_pair(context: Any) -> float:
    started = time.perf_counter()
    processes = [context.Process(target=_initialize) for _ in range(WORKERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return time.perf_counter() - started


def measure(method: str) -> dict[str, float]:
    """In this interpreter: import like the command, then start two pairs of workers."""
    import boto3

    import elb_log_shipper.cli  # noqa: F401

    boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    return {"first": _start_pair(context), "next": _start_pair(context)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per start method")
    parser.add_argument("--measure", choices=METHODS, help=argparse.SUPPRESS)  # the child's job
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.runs):
        for method in METHODS:  # interleaved, so that other load hits each alike
            out = subprocess.run(
                [sys.executable, "-m", "bench.start_method_bench", "--measure", method],
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            times = json.loads(out)
            seen = best.setdefault(method, times)
            best[method] = {key: min(seen[key], times[key]) for key in times}
    print(f"Two workers ready (imports and an S3 client each), best of {args.runs}, in seconds:\n")
    print("| start method | first two workers | two more |")
    print("|---|---:|---:|")
    for method, times in best.items():
        print(f"| {method} | {times['first']:.3f} | {times['next']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
