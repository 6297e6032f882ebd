"""Backfill benchmark: ``elb-log-shipper ship s3://bucket/prefix/``, ``--jobs 1`` vs ``--jobs 2``.

Run from the repository root::

    .venv/bin/python bench/backfill_bench.py                 # 8 objects x 200k lines, best of 3
    .venv/bin/python bench/backfill_bench.py --quick         # smoke run: 4 x 5k lines, one run
    .venv/bin/python bench/backfill_bench.py --objects 16 --lines 100000 --jobs 1 --jobs 2

What runs where:

- This process starts a moto S3 server and a json_lines receiver (``tests/support/receiver.py``)
  on 127.0.0.1. The receiver does not parse the JSON: it spools the bytes to tmpfs, then picks
  each ``event.id`` out of them with one regular expression once the run is over, so that it
  costs little of the CPUs it shares with the shipper (``SpoolingReceiver`` says how little).
- The corpus is ``ship_bench``'s (``bench.corpus.alb_lines``, deterministic, gzipped once into a
  cache file), uploaded under ``--objects`` keys of one day folder: the event ids differ by key.
- The shipper is the real command, ``elb-log-shipper ship s3://bench-elb-logs/AWSLogs/ --to
  tcp://127.0.0.1:PORT --jobs N``, in a subprocess that finds moto through
  ``AWS_ENDPOINT_URL_S3`` like any user's. Configurations alternate run by run (1, 2, 1, 2...) so
  that other load on the machine hits both alike, after one untimed warm-up run; throughput is
  the best run of each.
- Peak RSS per process is each process's ``VmHWM`` (its own high-water mark, which an ``execve``
  resets) read from ``/proc`` every 0.1 s for the command and every process under it (worker
  processes, their fork server).

Every run must deliver every line exactly once: the receiver's count of each ``event.id`` must be
1 for every line of every object, or the run fails.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(REPO))

from tests.support.receiver import ConnectionRecord, JsonLinesReceiver  # noqa: E402
from tests.support.s3server import DUMMY_ENVIRON, MotoServer, moto_server  # noqa: E402

from bench.ship_bench import (  # noqa: E402
    BUCKET,
    Corpus,
    add_cache_argument,
    build_corpus,
    machine_line,
)

DEFAULT_OBJECTS = 8
DEFAULT_LINES = 200_000
DEFAULT_JOBS = (1, 2)
DEFAULT_RUNS = 3
QUICK_OBJECTS = 4
QUICK_LINES = 5_000
PREFIX = "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/"
KEY_TEMPLATE = (
    PREFIX + "123456789012_elasticloadbalancing_us-east-1_app.my-loadbalancer.50dc6c495c0c9188_"
    "20261128T{hhmm}Z_10.0.1.7_backfill.log.gz"
)
# The targets: --jobs 2 at least 1.7x --jobs 1 on 2 cores, each process under 150 MB.
TARGET_SPEEDUP = 1.7
TARGET_RSS_MB = 150
RECV_BYTES = 1024 * 1024
SCAN_BYTES = 64 * 1024 * 1024
# Where the receiver spools: memory (tmpfs) when the machine has it, about 2.4 KB per line.
SPOOL_PARENT = "/dev/shm" if os.path.isdir("/dev/shm") else None
# How often the process tree's peak RSS is read.
RSS_POLL_SECONDS = 0.1
# An event id: 24 hex digits naming the object, then the line's byte offset. Nothing else in an
# event looks like it (JSON strings escape their quotes, so no log text can fake the key).
EVENT_ID = re.compile(rb'"id":"([0-9a-f]{24})-(\d+)"')


class SpoolingReceiver(JsonLinesReceiver):
    """A json_lines receiver that writes what each connection delivers to a file in ``spool``,
    for ``event_ids`` to count once the run is over.

    The receiver shares the two CPUs with the shipper, so it is built to cost little of them:

    - Picking the ids out while the shipper runs would cost about 3 CPU-seconds per 1.6M events
      (a regular expression over 4 GB of JSON), so they are counted after the run.
    - The bytes go from the socket through a pipe into the file with ``splice``, never entering
      this process.
    - Spool files are overwritten from one run to the next, never deleted: on this virtual
      machine, memory that was freed goes back to the host, and touching 4 GB of it again costs
      1 to 4 CPU-seconds of page faults, against about 1 to overwrite pages already there.
      ``ConnectionRecord.bytes_read`` says how much of each file the current run wrote.
    """

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        super().__init__()

    def reset(self) -> None:
        with self._lock:
            self.records = []
            self.max_active = 0

    def _path(self, record: ConnectionRecord) -> Path:
        return self.spool / f"connection-{record.index}"

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        pipe_out, pipe_in = os.pipe()
        with contextlib.suppress(OSError):  # a larger pipe means fewer calls; optional
            fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, RECV_BYTES)
        # No O_TRUNC: an earlier run's pages are overwritten, not freed and faulted in again.
        spool_fd = os.open(self._path(record), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while moved := os.splice(sock.fileno(), pipe_in, RECV_BYTES):
                record.bytes_read += moved
                while moved:
                    moved -= os.splice(pipe_out, spool_fd, moved)
        finally:
            for fd in (spool_fd, pipe_out, pipe_in):
                os.close(fd)

    def event_ids(self) -> Counter[bytes]:  # type: ignore[override]
        """How often each event id arrived, over every connection of the current run."""
        ids: Counter[bytes] = Counter()
        with self._lock:
            records = list(self.records)
        for record in records:
            partial = b""
            left = record.bytes_read
            with open(self._path(record), "rb") as file:
                while left and (chunk := file.read(min(SCAN_BYTES, left))):
                    left -= len(chunk)
                    complete, _, partial = (partial + chunk).rpartition(b"\n")
                    ids.update(b"%s-%s" % pair for pair in EVENT_ID.findall(complete))
        return ids


@dataclass
class RunResult:
    jobs: int
    wall: float
    rss_mb: dict[str, float]  # peak RSS by process role
    workers: int
    shipper_cpu: float  # CPU seconds of the command and every process under it
    harness_cpu: float  # CPU seconds of this process (moto, the receiver) during the run
    connections: int
    max_active: int


@dataclass
class Summary:
    jobs: int
    runs: list[RunResult] = field(default_factory=list)

    @property
    def best(self) -> RunResult:
        return min(self.runs, key=lambda run: run.wall)

    def peak_rss(self, role: str) -> float:
        return max((run.rss_mb.get(role, 0.0) for run in self.runs), default=0.0)


# Peak RSS of a process tree, from /proc.


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _status(pid: int) -> tuple[str, int, float] | None:
    """The command line, VmHWM (KiB) and CPU seconds so far of ``pid``; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
    cpu = (int(utime) + int(stime)) / CLOCK_TICKS
    return (cmdline, int(match.group(1)), cpu) if match else None


def _role(depth: int, cmdline: str) -> str:
    """The command; its fork server (and multiprocessing's resource tracker); the workers,
    which the fork server forks (so they share its command line)."""
    if depth == 0:
        return "command"
    if depth == 1:
        return "fork server" if "forkserver" in cmdline else "other"
    return "worker"


class TreeRss:
    """Polls the peak RSS of a command and every process under it, by role."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self.peak_kib: dict[int, tuple[str, int]] = {}
        self.cpu: dict[int, float] = {}
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(RSS_POLL_SECONDS):
            pending = [(self._pid, 0)]
            while pending:
                pid, depth = pending.pop()
                status = _status(pid)
                if status is not None:
                    cmdline, hwm, cpu = status
                    seen = self.peak_kib.get(pid, ("", 0))[1]
                    self.peak_kib[pid] = (_role(depth, cmdline), max(hwm, seen))
                    self.cpu[pid] = cpu
                pending += [(child, depth + 1) for child in _children(pid)]

    def stop(self) -> tuple[dict[str, float], int]:
        """Peak RSS in MB by role, and how many workers were seen. ``cpu_seconds`` then holds
        the CPU time of the whole tree (as last read: a tick or so short)."""
        self._stop.set()
        self._thread.join()
        by_role: dict[str, float] = {}
        for role, kib in self.peak_kib.values():
            by_role[role] = max(by_role.get(role, 0.0), kib / 1024)
        workers = sum(1 for role, _ in self.peak_kib.values() if role == "worker")
        self.cpu_seconds = sum(self.cpu.values())
        return by_role, workers


# One run.


def shipper_command(port: int, jobs: int) -> list[str]:
    script = Path(sys.executable).with_name("elb-log-shipper")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "elb_log_shipper.cli"]
    return [
        *command,
        "ship",
        f"s3://{BUCKET}/AWSLogs/",
        "--to",
        f"tcp://127.0.0.1:{port}",
        "--jobs",
        str(jobs),
        "--quiet",
    ]


def run_shipper(
    jobs: int, moto: MotoServer, receiver: SpoolingReceiver, objects: int, offsets: list[int]
) -> RunResult:
    env = {**os.environ, **DUMMY_ENVIRON, "AWS_ENDPOINT_URL_S3": moto.endpoint_url}
    env.pop("AWS_ENDPOINT_URL", None)
    receiver.reset()
    harness = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    process = subprocess.Popen(
        shipper_command(receiver.port, jobs),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    rss = TreeRss(process.pid)
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    rss_mb, workers = rss.stop()
    after = resource.getrusage(resource.RUSAGE_SELF)
    harness_cpu = after.ru_utime + after.ru_stime - harness.ru_utime - harness.ru_stime
    if process.returncode != 0:
        raise SystemExit(f"backfill_bench: the shipper failed:\n{stderr.decode(errors='replace')}")
    receiver.wait_idle()
    ids = receiver.event_ids()
    connections, max_active = receiver.connection_count, receiver.max_active
    problem = exactly_once_problem(ids, objects, offsets)
    if problem:
        raise SystemExit(f"backfill_bench: --jobs {jobs}: {problem}")
    return RunResult(
        jobs, wall, rss_mb, workers, rss.cpu_seconds, harness_cpu, connections, max_active
    )


def line_offsets(corpus: Corpus) -> list[int]:
    """The byte offset of each line of the corpus: the second half of its event ids."""
    offsets: list[int] = []
    offset = 0
    with gzip.open(corpus.path, "rb") as lines:
        for line in lines:
            offsets.append(offset)
            offset += len(line)
    return offsets


def exactly_once_problem(ids: Counter[bytes], objects: int, offsets: list[int]) -> str | None:
    """What is wrong with the ids received, or None when each line of each object came once:
    ``objects`` id prefixes (one per object), each with every line's offset exactly once."""
    by_object: dict[bytes, Counter[int]] = {}
    for event_id, count in ids.items():
        prefix, offset = event_id.split(b"-")
        by_object.setdefault(prefix, Counter())[int(offset)] += count
    if len(by_object) != objects:
        return f"events of {len(by_object)} objects arrived, not {objects}"
    expected = Counter(offsets)
    for counts in by_object.values():
        if counts != expected:
            missing = sum((expected - counts).values())
            extra = sum((counts - expected).values())
            return f"an object's lines arrived wrong: {missing:,} missing, {extra:,} extra"
    return None


# Report.


def table(summaries: Sequence[Summary], lines: int, runs: int) -> str:
    base = summaries[0].best.wall
    rows = [
        f"| --jobs | lines/s end to end (best of {runs}) | speed-up vs --jobs "
        f"{summaries[0].jobs} | wall s | shipper CPU s | lines per shipper CPU-s | harness CPU s "
        "| peak RSS MB: command | worker (max) | fork server | connections (max at once) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for summary in summaries:
        best = summary.best
        rows.append(
            f"| {summary.jobs} | {lines / best.wall:,.0f} | {base / best.wall:.2f}x "
            f"| {best.wall:.2f} | {best.shipper_cpu:.1f} | {lines / best.shipper_cpu:,.0f} "
            f"| {best.harness_cpu:.1f} | {summary.peak_rss('command'):.0f} "
            f"| {summary.peak_rss('worker'):.0f} | {summary.peak_rss('fork server'):.0f} "
            f"| {best.connections} ({best.max_active}) |"
        )
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--objects", type=int, help=f"objects ({DEFAULT_OBJECTS})")
    parser.add_argument("--lines", type=int, help=f"lines per object ({DEFAULT_LINES:,})")
    parser.add_argument("--jobs", type=int, action="append", help="--jobs to compare (1 and 2)")
    parser.add_argument("--runs", type=int, help=f"runs per configuration ({DEFAULT_RUNS})")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 x 5k lines, one run")
    add_cache_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    objects = args.objects or (QUICK_OBJECTS if args.quick else DEFAULT_OBJECTS)
    lines = args.lines or (QUICK_LINES if args.quick else DEFAULT_LINES)
    runs = args.runs or (1 if args.quick else DEFAULT_RUNS)
    jobs_list = args.jobs or list(DEFAULT_JOBS)
    corpus = build_corpus(lines, args.cache)
    summaries = [Summary(jobs) for jobs in jobs_list]
    with (
        tempfile.TemporaryDirectory(dir=SPOOL_PARENT) as spool,
        moto_server() as moto,
        SpoolingReceiver(Path(spool)) as receiver,
    ):
        s3 = moto.client()
        s3.create_bucket(Bucket=BUCKET)
        keys = [KEY_TEMPLATE.format(hhmm=f"{n // 12:02d}{n % 12 * 5:02d}") for n in range(objects)]
        for key in keys:
            with open(corpus.path, "rb") as file:
                s3.upload_fileobj(file, BUCKET, key)
        offsets = line_offsets(corpus)
        if not args.quick:
            # Untimed (still checked): fills the receiver's spool files and the page cache, so
            # that the first timed configuration pays no more for them than the others.
            run_shipper(summaries[0].jobs, moto, receiver, objects, offsets)
        for _ in range(runs):
            for summary in summaries:  # interleaved: 1, 2, 1, 2...
                result = run_shipper(summary.jobs, moto, receiver, objects, offsets)
                summary.runs.append(result)
                print(
                    f"--jobs {summary.jobs}: {objects * lines / result.wall:,.0f} lines/s, "
                    f"{result.wall:.2f} s, CPU s: shipper {result.shipper_cpu:.1f}, harness "
                    f"{result.harness_cpu:.1f}; {result.workers} workers, peak RSS MB "
                    + ", ".join(f"{role} {mb:.0f}" for role, mb in sorted(result.rss_mb.items())),
                    file=sys.stderr,
                )
    total = objects * lines
    print("## elb-log-shipper ship: a backfill, S3 (moto) -> json_lines receiver\n")
    print(machine_line())
    print(
        f"\n{objects} gzip ALB objects of {lines:,} lines ({corpus.uncompressed_bytes / 1e6:,.0f} "
        f"MB, {corpus.compressed_bytes / 1e6:,.1f} MB gzip, each): {total:,} lines; every line "
        f"arrived exactly once (event.id counted) in every run.\n"
    )
    print(table(summaries, total, runs))
    by_jobs = {s.jobs: s for s in summaries}
    if 1 in by_jobs and 2 in by_jobs:
        speedup = by_jobs[1].best.wall / by_jobs[2].best.wall
        print(
            f"\nTarget --jobs 2 >= {TARGET_SPEEDUP}x --jobs 1: "
            f"{'met' if speedup >= TARGET_SPEEDUP else 'MISSED'} ({speedup:.2f}x)"
        )
    worst = max(s.peak_rss(role) for s in summaries for role in ("command", "worker"))
    print(
        f"Target peak RSS per process < {TARGET_RSS_MB} MB: "
        f"{'met' if worst < TARGET_RSS_MB else 'MISSED'} (highest {worst:.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
