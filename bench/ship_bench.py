"""End-to-end benchmark: a gzipped ALB object in S3 -> ``elb-log-shipper ship`` -> a TCP receiver.

Run from the repository root::

    .venv/bin/python bench/ship_bench.py                     # 100k and 1.5M lines, best of 3
    .venv/bin/python bench/ship_bench.py --quick             # smoke run: 20k lines, one run each
    .venv/bin/python bench/ship_bench.py --lines 500000 --runs 5 --profile
    .venv/bin/python bench/ship_bench.py --tls --cores 1     # over TLS, with a trustme test CA
    .venv/bin/python bench/ship_bench.py --transport tcp --transport beats --lines 1500000
    sudo .venv/bin/python bench/ship_bench.py --transport tcp --transport beats --link 0 --link 500

Transports (``--transport``, repeatable; default all four, side by side in the same run): ``tcp``
and ``tls`` ship json_lines to a tcp-input stand-in; ``beats`` and ``beats+tls`` ship the Beats
protocol (compression 3) to a beats-input stand-in that inflates every window, ACKs it, and
checks that every event arrived exactly once by ``event.id``.

What runs where:

- This process starts a moto S3 server and a line-counting receiver on 127.0.0.1 and pins itself
  (and so their threads) to the last CPU, so that "1 core" below means a core of the shipper's own.
- The corpus (``bench.corpus.alb_lines``, deterministic) is gzipped in chunks into a cache file
  and uploaded with ``upload_fileobj`` (multipart): it is never whole in memory here.
- The shipper is the real command, ``elb-log-shipper ship s3://... --to tcp://127.0.0.1:PORT``,
  in a subprocess found through ``AWS_ENDPOINT_URL_S3`` like any user's, run under
  ``taskset -c 0`` (1 core) or ``taskset -c 0,1`` (2 cores), with ``LOGSTASH_POOL_SIZE`` 1 or 4.
  Its peak RSS and CPU time come from GNU ``/usr/bin/time`` (see ``measured`` for why).
- The json_lines receiver reads each connection to EOF and counts ``\\n`` (no JSON parsing),
  then closes, as Logstash does; the run fails unless it counted exactly the lines uploaded. The
  beats receiver parses the frames, inflates each window, collects every ``event.id`` and ACKs
  the window; the run fails unless every id arrived exactly once, over no more connections
  than the pool holds.

Figures: "end to end" is lines / wall time of the subprocess (Python start-up and imports
included); "pipeline" is lines / the seconds the command reports for the object; "per CPU-s" is
lines / (user + system CPU of the shipper), the per-core figure that other load on the machine
disturbs least; "wire bytes/event" is what the receiver read (application bytes: TLS record
overhead, about 0.2 %, not included) per line. Each configuration runs ``--runs`` times:
throughput is the best run, RSS the highest.

``--baseline DIR`` adds every transport run with the shipper of another source tree
(``git worktree add DIR main``), interleaved with the others: before and after in one run.

``--privacy`` adds every configuration again with ``REDACT_QUERY=values`` and
``CLIENT_IP=truncate`` set, interleaved, and reports the rules' change in CPU time a line and in
lines/s: issue 14's cost where a user pays it. Over beats the receiver checks that the rules ran:
the run fails if one of the corpus's query values arrives with the rules on, or none without.

``--link MBIT`` (repeatable, root only) runs every configuration from a network namespace of
the shipper's own, over a veth link that carries at most MBIT Mbit/s from the shipper (0: no
limit), the rates interleaved like the transports: loopback makes the network free, and with it
the nine tenths of the bytes that beats saves; a link shows what they cost (``bench/link.py``).

``--profile`` adds an in-process breakdown of the time per line by stage (S3 read, gunzip and
framing, parse and event build, JSON, socket send) and a cProfile of the single-threaded path.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import gzip
import io
import os
import platform
import pstats
import re
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(REPO))

import trustme  # noqa: E402
from tests.support.s3server import DUMMY_ENVIRON, MotoServer, moto_server  # noqa: E402

from bench.corpus import alb_lines  # noqa: E402
from bench.link import Link, network_link  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_SIZES = (100_000, 1_500_000)
QUICK_SIZES = (20_000,)
DEFAULT_RUNS = 3
DEFAULT_POOLS = (1, 4)
DEFAULT_CORES = (1, 2)
TRANSPORTS = ("tcp", "beats", "tls", "beats+tls")
# The issue 10 targets: beats bytes on the wire at most this fraction of json_lines.
TARGET_BEATS_WIRE_FRACTION = 1 / 5
# ``--privacy``: the rules whose per-line cost issue 14 bounds, as a user sets them (the
# environment that the function and the command both read).
PRIVACY_ENV = {"REDACT_QUERY": "values", "CLIENT_IP": "truncate"}
# A query value of the corpus (``?page=N&q=itemN``) as it reads unredacted: a beats run with the
# rules fails if one arrives, one without them fails if none does.
_QUERY_VALUE = re.compile(rb"[?&]page=[0-9]")
SEED = 42
BUCKET = "bench-elb-logs"
KEY_TEMPLATE = (
    "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/"
    "123456789012_elasticloadbalancing_us-east-1_app.my-loadbalancer.50dc6c495c0c9188_"
    "20261128T2340Z_10.0.1.7_{lines}l.log.gz"
)
# Lines joined per write into the gzip stream: a few MB of text, so generating 1.5M lines never
# holds more than that.
CORPUS_CHUNK_LINES = 10_000
RECV_BYTES = 1024 * 1024
# The targets of issue 3.
TARGET_RSS_MB = 150
TARGET_LINES_PER_CORE = 120_000
# The CPUs we may use, read before main() pins this process to the last of them.
CPUS = sorted(os.sched_getaffinity(0))

_REPORT = re.compile(r": (?P<lines>\d+) lines, .* (?P<seconds>[0-9.]+) s(?:;|$)", re.MULTILINE)


# Corpus.


@dataclass(frozen=True)
class Corpus:
    lines: int
    path: Path
    uncompressed_bytes: int
    key: str

    @property
    def compressed_bytes(self) -> int:
        return self.path.stat().st_size


def build_corpus(lines: int, cache: Path) -> Corpus:
    """Gzip ``lines`` ALB lines into ``cache`` (reused when already there), streaming."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"alb-{lines}-seed{SEED}.log.gz"
    size_file = path.with_suffix(".size")
    key = KEY_TEMPLATE.format(lines=lines)
    if path.exists() and size_file.exists():
        return Corpus(lines, path, int(size_file.read_text()), key)
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    written = 0
    lines_iter = alb_lines(lines, SEED)
    with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as gz:
        while True:
            chunk = [line for _, line in zip(range(CORPUS_CHUNK_LINES), lines_iter, strict=False)]
            if not chunk:
                break
            data = ("\n".join(chunk) + "\n").encode()
            written += len(data)
            gz.write(data)
    partial.rename(path)
    size_file.write_text(str(written))
    print(
        f"generated {lines:,} lines: {written / 1e6:,.0f} MB, gzip {path.stat().st_size / 1e6:,.0f}"
        f" MB, in {time.perf_counter() - started:.1f} s ({path})",
        file=sys.stderr,
    )
    return Corpus(lines, path, written, key)


def upload(s3: S3Client, corpus: Corpus) -> None:
    with open(corpus.path, "rb") as file:
        s3.upload_fileobj(file, BUCKET, corpus.key)


# Receiver.


class CountingReceiver:
    """A Logstash stand-in that counts lines: read each connection to EOF, then close it."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self._tls = tls
        self._listener = socket.create_server((host, 0), backlog=128)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.lines = 0
        self.bytes = 0
        self.connections = 0
        self.active = 0
        self.max_active = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.lines = self.bytes = self.connections = self.max_active = 0

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _handshake(self, sock: socket.socket) -> socket.socket | None:
        """The connection, TLS-wrapped when the receiver has a context; None when that fails."""
        if self._tls is None:
            return sock
        try:
            return self._tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            sock.close()
            with self._lock:
                self.active -= 1
            return None

    def _serve(self, raw: socket.socket) -> None:
        lines = size = 0
        sock = self._handshake(raw)
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(RECV_BYTES)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break  # the shipper's close_notify (or a bare FIN after it)
            if not data:
                break
            lines += data.count(b"\n")
            size += len(data)
        # Close under the lock: the shipper reconnects as soon as it sees our close, and the
        # acceptor must not count that connection while this one still does.
        with self._lock:
            sock.close()
            self.lines += lines
            self.bytes += size
            self.active -= 1


class BeatsCountingReceiver(CountingReceiver):
    """A beats-input stand-in: reads each window (``2W`` count, then one ``2C`` zlib frame, or
    with ``LOGSTASH_BEATS_COMPRESSION=0`` count ``2J`` frames), keeps its bytes and ACKs the
    window at once, as Logstash's beats input does once the window is queued. The events are
    inflated and their ``event.id`` checked after the run (``duplicates_and_distinct``), so that
    the receiver costs no more than the json_lines one while the shipper is timed."""

    # event.id is hex + "-" + offset; the only other "id" key (trace.id) starts with "Root=".
    _EVENT_ID = re.compile(rb'"id":"([0-9a-f]+-[0-9]+)"')

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        # (events, the window's bytes, whether they are one zlib stream)
        self.windows: list[tuple[int, bytes, bool]] = []
        super().__init__(tls, host)

    def reset(self) -> None:
        with self._lock:
            self.windows = []
        super().reset()

    def duplicates_and_distinct(self) -> tuple[int, int, int]:
        """Inflate every window received; (duplicate ids, distinct ids, query values seen
        unredacted)."""
        with self._lock:
            windows, self.windows = self.windows, []
        ids: set[bytes] = set()
        total = query_values = 0
        for count, window, compressed in windows:
            events = zlib.decompress(window) if compressed else window
            found = self._EVENT_ID.findall(events)
            if len(found) != count:
                raise SystemExit(f"ship_bench: a window of {count} held {len(found)} event ids")
            ids.update(found)
            total += count
            query_values += len(_QUERY_VALUE.findall(events))
        return total - len(ids), len(ids), query_values

    def _serve(self, raw: socket.socket) -> None:
        # Netty (so Logstash) sets TCP_NODELAY on every connection: an ACK must not wait, under
        # Nagle, for the client's delayed acknowledgement of the previous one.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self._handshake(raw)
        if sock is None:
            return
        buffer = bytearray()
        size = 0
        try:
            while True:
                size += self._fill(sock, buffer, 12)
                kind, count, frame, length = struct.unpack_from(">2sI2sI", buffer)
                if kind != b"2W" or frame not in (b"2C", b"2J"):
                    raise SystemExit(f"ship_bench: unexpected beats frames {bytes(buffer[:12])!r}")
                if frame == b"2C":
                    size += self._fill(sock, buffer, 12 + length)
                    window = bytes(buffer[12 : 12 + length])
                    del buffer[: 12 + length]
                else:  # plain JSON frames (compression 0): 2J, sequence, length, the event
                    del buffer[:6]
                    events = []
                    for _ in range(count):
                        size += self._fill(sock, buffer, 10)
                        (length,) = struct.unpack_from(">I", buffer, 6)
                        size += self._fill(sock, buffer, 10 + length)
                        events.append(bytes(buffer[10 : 10 + length]))
                        del buffer[: 10 + length]
                    window = b"\n".join(events)
                with self._lock:
                    self.windows.append((count, window, frame == b"2C"))
                    self.lines += count
                sock.sendall(struct.pack(">2sI", b"2A", count))
        except (EOFError, ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionError):
            pass
        with self._lock:
            sock.close()
            self.bytes += size
            self.active -= 1

    @staticmethod
    def _fill(sock: socket.socket, buffer: bytearray, size: int) -> int:
        """Read until ``buffer`` holds ``size`` bytes; the bytes read."""
        read = 0
        while len(buffer) < size:
            data = sock.recv(RECV_BYTES)
            if not data:
                raise EOFError
            read += len(data)
            buffer += data
        return read


# One shipper run.


@dataclass(frozen=True)
class Config:
    lines: int
    cores: int
    pool: int
    transport: str = "tcp"
    # Run the shipper of ``--baseline DIR`` (its ``src``) instead of this tree's.
    baseline: bool = False
    # Ship with ``PRIVACY_ENV`` set (``--privacy``).
    privacy: bool = False
    # Ship from a network namespace over a link limited to this many Mbit/s (``--link``; 0: the
    # veth pair without a limit), not over loopback.
    link_mbit: int | None = None

    @property
    def label(self) -> str:
        label = f"{self.transport} (baseline)" if self.baseline else self.transport
        if self.privacy:
            label = f"{label} + rules"
        if self.link_mbit is not None:
            label += f" @ {self.link_mbit} Mbit/s" if self.link_mbit else " @ veth"
        return label


@dataclass
class RunResult:
    wall: float
    pipeline_seconds: float
    cpu_seconds: float
    maxrss_kib: int
    connections: int
    max_active: int
    wire_bytes: int


@dataclass
class Summary:
    config: Config
    runs: list[RunResult] = field(default_factory=list)

    @property
    def best(self) -> RunResult:
        return min(self.runs, key=lambda run: run.wall)

    @property
    def peak_rss_mb(self) -> float:
        return max(run.maxrss_kib for run in self.runs) / 1024


def shipper_command(
    uri: str,
    port: int,
    cores: int,
    transport: str,
    ca_file: Path | None = None,
    *,
    by_module: bool = False,
    link: Link | None = None,
) -> list[str]:
    """The command line of one run: ``transport`` is a ``--to`` scheme; the TLS ones are
    verified with ``ca_file``. ``by_module``: ``python -m``, so that ``PYTHONPATH`` decides
    which tree's shipper runs. ``link``: run in its namespace, sending to its host."""
    script = Path(sys.executable).with_name("elb-log-shipper")
    by_script = script.exists() and not by_module
    command = [str(script)] if by_script else [sys.executable, "-m", "elb_log_shipper.cli"]
    tls = transport.endswith("tls")
    # The TLS test certificate names localhost (and the link's address).
    host = ("localhost" if tls else "127.0.0.1") if link is None else link.host
    command += ["ship", uri, "--to", f"{transport}://{host}:{port}"]
    if tls:
        if ca_file is None:
            raise SystemExit(f"ship_bench: {transport} needs a CA file")
        command += ["--ca-file", str(ca_file)]
    taskset = shutil.which("taskset")
    if taskset is None:
        raise SystemExit("ship_bench: taskset is not installed; install util-linux to pin cores")
    cpus = ",".join(str(cpu) for cpu in CPUS[:cores])
    pinned = [taskset, "-c", cpus, *command]
    return pinned if link is None else link.wrap(pinned)


def measured(command: list[str], usage_file: Path) -> list[str]:
    """``command`` under GNU time, which writes its peak RSS (KiB) and CPU seconds to a file.

    Not ``os.wait4`` on our own child: Linux carries the RSS high-water mark of the process that
    forks (or vforks) over an ``execve`` into ``ru_maxrss``, so a child of this bench process,
    which holds moto's copy of the object, would report the bench's peak, not the shipper's.
    GNU time forks the shipper from its own tiny process.
    """
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    if gnu_time is None:
        raise SystemExit("ship_bench: /usr/bin/time (GNU time) is needed to measure peak RSS")
    return [gnu_time, "-f", "%M %U %S", "-o", str(usage_file), *command]


@dataclass(frozen=True)
class Shipped:
    """What one run of the command measured of itself: its wall time, the seconds it reported
    for the object, its CPU time and peak RSS."""

    wall: float
    pipeline_seconds: float
    cpu_seconds: float
    maxrss_kib: int


@dataclass(frozen=True)
class Harness:
    """What the runs of a bench share: the S3 server, the CA file that TLS runs verify with,
    the ``--baseline`` tree and the ``--link``."""

    moto: MotoServer
    ca_file: Path | None = None
    baseline: Path | None = None
    link: Link | None = None


def ship(
    config: Config,
    corpus: Corpus,
    harness: Harness,
    port: int,
    check: Callable[[str], None] = lambda stderr: None,
) -> Shipped:
    """Run the command once, shipping ``corpus`` to ``config.transport`` on ``port``; exit
    unless it exited 0 and reported every line. ``check(stderr)``, called once it has exited
    0, checks what the receiver got."""
    moto, baseline, link = harness.moto, harness.baseline, harness.link
    env = {
        **os.environ,
        **DUMMY_ENVIRON,
        "AWS_ENDPOINT_URL_S3": moto.endpoint_url,
        "LOGSTASH_POOL_SIZE": str(config.pool),
    }
    for name in PRIVACY_ENV:
        env.pop(name, None)
    if config.privacy:
        env.update(PRIVACY_ENV)
    if config.baseline:
        if baseline is None:
            raise SystemExit("ship_bench: a baseline run needs --baseline")
        # Ahead of the editable install's path entry: the baseline tree's package is imported.
        env["PYTHONPATH"] = str(baseline / "src")
    env.pop("AWS_ENDPOINT_URL", None)
    if config.link_mbit is not None:
        if link is None:
            raise SystemExit("ship_bench: a run over a link needs --link")
        link.limit(config.link_mbit)
    handle, name = tempfile.mkstemp(prefix="ship-bench-usage-")
    os.close(handle)
    usage_file = Path(name)
    command = measured(
        shipper_command(
            f"s3://{BUCKET}/{corpus.key}",
            port,
            config.cores,
            config.transport,
            harness.ca_file,
            by_module=config.baseline,
            link=link if config.link_mbit is not None else None,
        ),
        usage_file,
    )
    started = time.perf_counter()
    process = subprocess.run(
        command, check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wall = time.perf_counter() - started
    stderr = process.stderr.decode(errors="replace")
    maxrss, user, system = usage_file.read_text().split()[-3:]
    usage_file.unlink()
    if process.returncode != 0:
        raise SystemExit(f"ship_bench: the shipper exited {process.returncode}:\n{stderr}")
    check(stderr)
    match = _REPORT.search(stderr)
    if match is None or int(match["lines"]) != corpus.lines:
        raise SystemExit(f"ship_bench: unexpected report from the shipper:\n{stderr}")
    return Shipped(wall, float(match["seconds"]), float(user) + float(system), int(maxrss))


def run_shipper(
    config: Config, corpus: Corpus, harness: Harness, receiver: CountingReceiver
) -> RunResult:
    def check(stderr: str) -> None:
        if receiver.lines != corpus.lines:
            raise SystemExit(
                f"ship_bench: {config.label}: the receiver counted {receiver.lines:,} lines, "
                f"not {corpus.lines:,}; the shipper said:\n{stderr}"
            )
        if isinstance(receiver, BeatsCountingReceiver):
            duplicates, distinct, query_values = receiver.duplicates_and_distinct()
            check_exactly_once(config, corpus, duplicates, distinct, receiver.connections)
            if config.privacy == bool(query_values):
                raise SystemExit(
                    f"ship_bench: {config.label}: query values arrived unredacted "
                    f"{query_values:,} times"
                    f"{' with the rules on' if config.privacy else '; expected some'}"
                )

    receiver.reset()
    shipped = ship(config, corpus, harness, receiver.port, check)
    return RunResult(
        wall=shipped.wall,
        pipeline_seconds=shipped.pipeline_seconds,
        cpu_seconds=shipped.cpu_seconds,
        maxrss_kib=shipped.maxrss_kib,
        connections=receiver.connections,
        max_active=receiver.max_active,
        wire_bytes=receiver.bytes,
    )


def check_exactly_once(
    config: Config, corpus: Corpus, duplicates: int, distinct: int, connections: int
) -> None:
    """Exit unless every event arrived exactly once by ``event.id``, over no more connections
    than the pool holds (issue 10, on a healthy server)."""
    if duplicates or distinct != corpus.lines:
        raise SystemExit(
            f"ship_bench: {config.label}: {distinct:,} distinct event ids and {duplicates:,} "
            f"duplicates, not {corpus.lines:,} exactly once"
        )
    if connections > config.pool:
        raise SystemExit(
            f"ship_bench: {config.label}: {connections} connections opened for a pool of "
            f"{config.pool}"
        )


# Output.


def markdown_table(summaries: Sequence[Summary], runs: int) -> str:
    rows = [
        f"| lines | cores | pool | end to end lines/s (best of {runs}) | pipeline lines/s "
        "| lines per CPU-s | peak RSS MB (max) | wall s | connections (max at once) "
        "| wire bytes/event | transport |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for summary in summaries:
        c, best = summary.config, summary.best
        rows.append(
            f"| {c.lines:,} | {c.cores} | {c.pool} | {c.lines / best.wall:,.0f} "
            f"| {c.lines / best.pipeline_seconds:,.0f} | {c.lines / best.cpu_seconds:,.0f} "
            f"| {summary.peak_rss_mb:.0f} | {best.wall:.2f} "
            f"| {best.connections} ({best.max_active}) | {best.wire_bytes / c.lines:,.0f} "
            f"| {c.label} |"
        )
    return "\n".join(rows)


def beats_comparison(summaries: Sequence[Summary]) -> str:
    """Beats against json_lines for each configuration run with both: the issue 10 targets."""
    by_config = {
        (s.config.lines, s.config.cores, s.config.pool, s.config.label): s for s in summaries
    }
    lines_out: list[str] = []
    for (lines, cores, pool, label), beats in by_config.items():
        transport = beats.config.transport
        if not transport.startswith("beats"):
            continue
        # json_lines of the same tree: a baseline's beats against the baseline's json_lines.
        plain_config = replace(
            beats.config, transport="tls" if transport.endswith("tls") else "tcp"
        )
        plain = by_config.get((lines, cores, pool, plain_config.label))
        if plain is None:
            continue
        wire = beats.best.wire_bytes / plain.best.wire_bytes
        speed = plain.best.wall / beats.best.wall
        ratios = paired_ratios(beats, plain)
        paired = (
            f"; paired rounds: median {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} rounds)"
            if len(ratios) > 1
            else ""
        )
        lines_out.append(
            f"- {lines:,} lines, {cores} core(s), pool {pool}, {label} vs json_lines: wire "
            f"bytes {wire:.3f}x (target <= {TARGET_BEATS_WIRE_FRACTION:.2f}: "
            f"{'met' if wire <= TARGET_BEATS_WIRE_FRACTION else 'MISSED'}), lines/s "
            f"{speed:.2f}x best against best (target >= 1: {'met' if speed >= 1 else 'MISSED'})"
            f"{paired}, connections {beats.best.connections} (pool {pool}: "
            f"{'met' if beats.best.connections <= pool else 'MISSED'})"
            f"{link_caps(beats, plain)}"
        )
    return "\n".join(["", "Beats against json_lines:", *lines_out]) if lines_out else ""


def link_caps(*summaries: Summary) -> str:
    """What a ``--link`` of limited rate lets through at most, in events a second, by the bytes
    each transport put on the wire per event ("" over loopback or an unlimited link).

    >>> def run(transport: str, wire: int) -> Summary:
    ...     config = Config(1000, 1, 1, transport, link_mbit=100)
    ...     return Summary(config, [RunResult(1.0, 1.0, 1.0, 0, 0, 0, wire)])
    >>> link_caps(run("beats", 250_000), run("tcp", 2_500_000))
    '; the link carries at most 50,000 beats, 5,000 tcp events/s'
    """
    mbit = summaries[0].config.link_mbit
    if not mbit:
        return ""
    caps = ", ".join(
        f"{mbit * 1e6 / 8 / (s.best.wire_bytes / s.config.lines):,.0f} {s.config.transport}"
        for s in summaries
    )
    return f"; the link carries at most {caps} events/s"


def privacy_comparison(summaries: Sequence[Summary]) -> str:
    """Each configuration run with ``--privacy``'s rules against the same without them: the
    CPU time a line (what the function is billed for, and the figure that other load on the
    machine disturbs least) and the end-to-end lines/s, as changes, with the paired rounds'
    median of the CPU change: issue 14's cost, measured where a user pays it.

    >>> def runs(cpu: float, wall: float) -> Summary:
    ...     config = Config(1000, 1, 1, privacy=cpu > 1)
    ...     return Summary(config, [RunResult(wall, wall, cpu, 0, 0, 0, 0)] * 2)
    >>> print(privacy_comparison([runs(1.0, 2.0), runs(1.05, 2.1)]))
    ... # doctest: +NORMALIZE_WHITESPACE
    <BLANKLINE>
    Privacy rules (REDACT_QUERY=values, CLIENT_IP=truncate) against the defaults:
    - 1,000 lines, 1 core(s), pool 1, tcp + rules: CPU time a line +5.0 % (paired rounds:
      median +5.0 %, +5.0 to +5.0 %, 2 rounds), end-to-end lines/s -4.8 %
    """
    by_config = {s.config: s for s in summaries}
    lines_out: list[str] = []
    for config, private in by_config.items():
        plain = by_config.get(replace(config, privacy=False)) if config.privacy else None
        if plain is None:
            continue
        cpu = private.best.cpu_seconds / plain.best.cpu_seconds - 1
        speed = plain.best.wall / private.best.wall - 1
        changes = [
            rules.cpu_seconds / defaults.cpu_seconds - 1
            for rules, defaults in zip(private.runs, plain.runs, strict=True)
        ]
        paired = (
            f" (paired rounds: median {_percent(statistics.median(changes))}, "
            f"{min(changes) * 100:+.1f} to {_percent(max(changes))}, {len(changes)} rounds)"
            if len(changes) > 1
            else ""
        )
        lines_out.append(
            f"- {config.lines:,} lines, {config.cores} core(s), pool {config.pool}, "
            f"{config.label}: CPU time a line {_percent(cpu)}{paired}, end-to-end lines/s "
            f"{_percent(speed)}"
        )
    if not lines_out:
        return ""
    rules = ", ".join(f"{name}={value}" for name, value in PRIVACY_ENV.items())
    return "\n".join(["", f"Privacy rules ({rules}) against the defaults:", *lines_out])


def _percent(change: float) -> str:
    return f"{change * 100:+.1f} %"


def paired_ratios(beats: Summary, plain: Summary) -> list[float]:
    """Beats' lines/s over json_lines' in each round, the two runs of a round side by side.

    On a shared machine the speed drifts by more than the difference measured (10 % within a
    minute here); runs of one round are next to each other in time, so their ratio carries less
    of the drift than the ratio of two bests taken minutes apart.

    >>> def runs(*walls: float) -> Summary:
    ...     return Summary(Config(1, 1, 1), [RunResult(w, w, w, 0, 0, 0, 0) for w in walls])
    >>> paired_ratios(runs(10.0, 20.0), runs(11.0, 18.0))
    [1.1, 0.9]
    """
    return [
        plain_run.wall / beats_run.wall
        for beats_run, plain_run in zip(beats.runs, plain.runs, strict=True)
    ]


def machine_line() -> str:
    return (
        f"{dt.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.platform(terse=True)}"
    )


# Profiling: where the time per line goes, stage by stage, in this process.


def profile(s3: S3Client, corpus: Corpus, receiver: CountingReceiver) -> str:
    """Time each stage of the hot path over the whole object; return Markdown.

    Streams like ``ship_object`` (same chunk, inflate step and batch sizes, nothing kept), timing
    each stage per batch, on CPU 0 while moto and the receiver keep to the last CPU. The socket
    stage sends a sample of the real batches again until as many bytes went as the object makes.
    """
    import gc

    import orjson

    from elb_log_shipper.config import DEFAULT_BATCH_BYTES, Settings
    from elb_log_shipper.formats import EventBuilder
    from elb_log_shipper.framing import LineDecoder
    from elb_log_shipper.logstash import LogstashSender, SocketPool
    from elb_log_shipper.pipeline import ship_object
    from elb_log_shipper.refs import ObjectRef
    from elb_log_shipper.source import DEFAULT_CHUNK_SIZE

    os.sched_setaffinity(0, {CPUS[0]})
    clock = time.perf_counter
    lines = corpus.lines
    ref = ObjectRef(BUCKET, corpus.key)
    builder = EventBuilder(
        bucket=BUCKET, key=corpus.key, version="etag", region="us-east-1", account="123456789012"
    )
    build, dumps = builder.build, orjson.dumps
    seconds = dict.fromkeys(("read", "inflate", "build", "json", "join"), 0.0)
    samples: list[tuple[bytes, int]] = []
    json_bytes = 0

    def process(batch: list[tuple[int, bytes]]) -> None:
        # Event by event, as ship_object does: a list of a batch's events alive at once would
        # make the garbage collector walk them all, a cost the real loop does not have.
        nonlocal json_bytes
        build_seconds = json_seconds = 0.0
        serialised = []
        for offset, raw in batch:
            t0 = clock()
            event = build(raw, offset)
            t1 = clock()
            serialised.append(dumps(event))
            t2 = clock()
            build_seconds += t1 - t0
            json_seconds += t2 - t1
        t2 = clock()
        size = sum(map(len, serialised))
        per_batch = max(16, DEFAULT_BATCH_BYTES * len(serialised) // max(1, size))
        for start in range(0, len(serialised), per_batch):
            part = serialised[start : start + per_batch]
            part.append(b"")
            payload = b"\n".join(part)
            json_bytes += len(payload)
            if len(samples) < 32:
                samples.append((payload, len(part) - 1))
        seconds["build"] += build_seconds
        seconds["json"] += json_seconds
        seconds["join"] += clock() - t2

    body = s3.get_object(Bucket=BUCKET, Key=corpus.key)["Body"]
    decoder = LineDecoder()
    while True:
        t0 = clock()
        chunk = body.read(DEFAULT_CHUNK_SIZE)
        seconds["read"] += clock() - t0
        if not chunk:
            break
        batches = decoder.feed(chunk)
        while True:
            t0 = clock()
            batch = next(batches, None)
            seconds["inflate"] += clock() - t0
            if batch is None:
                break
            process(batch)
    process(decoder.finish())

    pool = SocketPool(Settings(host=receiver.host, port=receiver.port, pool_size=1))
    receiver.reset()
    sent = 0
    t0 = clock()
    sender = LogstashSender(pool)
    while sent < json_bytes:
        for payload, events in samples:
            sender.send(payload, events)
            sent += len(payload)
            if sent >= json_bytes:
                break
    sender.finish()
    seconds["send"] = clock() - t0

    class NullSink:
        def send(
            self, batch: bytes, events: int, end_offset: int, line_offsets: list[int] | None = None
        ) -> None:
            pass

    def timed_ship(pool_size: int | None, *, gc_on: bool = True) -> float:
        if not gc_on:
            gc.disable()
        try:
            t0 = clock()
            if pool_size is None:
                assert ship_object(ref, NullSink(), s3_client=s3).lines == lines
            else:
                sink = LogstashSender(
                    pool.__class__(pool.settings.with_changes(pool_size=pool_size))
                )
                assert ship_object(ref, sink, s3_client=s3).lines == lines
                assert sink.finish().events_confirmed == lines
            return clock() - t0
        finally:
            gc.enable()

    null_sink = timed_ship(None)
    null_sink_no_gc = timed_ship(None, gc_on=False)
    to_logstash = {size: timed_ship(size) for size in (1, 4)}
    profiler = cProfile.Profile()
    profiler.enable()
    ship_object(ref, NullSink(), s3_client=s3)
    profiler.disable()
    pool.close()
    os.sched_setaffinity(0, {CPUS[-1]})

    names = {
        "read": "S3 GET body read (moto, loopback HTTP)",
        "inflate": "gunzip + line framing",
        "build": "UTF-8 decode + tokenize + parse + build event",
        "json": "JSON (orjson.dumps)",
        "join": "batch join (b'\\n'.join)",
        "send": "socket send + confirm (LogstashSender, pool 1)",
    }
    total = sum(seconds.values())

    def row(name: str, value: float, share: str = "") -> str:
        return f"| {name} | {value / lines * 1e6:.2f} | {share} |"

    out = [
        f"Per-line time by stage: {lines:,} lines, {json_bytes / lines:,.0f} bytes of JSON per "
        "event, on one pinned core (moto and the receiver on the other):",
        "",
        "| stage | µs per line | share / lines/s |",
        "|---|---:|---:|",
        *(row(names[key], value, f"{value / total:.0%}") for key, value in seconds.items()),
        row("**sum of stages**", total, f"{lines / total:,.0f}/s"),
        row("ship_object -> null sink", null_sink, f"{lines / null_sink:,.0f}/s"),
        row(
            "ship_object -> null sink, gc disabled",
            null_sink_no_gc,
            f"{lines / null_sink_no_gc:,.0f}/s",
        ),
        *(
            row(f"ship_object -> LogstashSender, pool {size}", value, f"{lines / value:,.0f}/s")
            for size, value in to_logstash.items()
        ),
        "",
        "cProfile of ship_object to a null sink, top functions by own time:",
        "",
        "```",
    ]
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime").print_stats(20)
    out += [line for line in text.getvalue().splitlines() if line.strip()][3:]
    out.append("```")
    return "\n".join(out)


# Command line.


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--lines", type=int, action="append", help="object size in lines (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 20k lines, one run each")
    parser.add_argument(
        "--runs", type=int, default=None, help=f"runs per configuration ({DEFAULT_RUNS})"
    )
    parser.add_argument("--pool", type=int, action="append", help="LOGSTASH_POOL_SIZE (1 and 4)")
    parser.add_argument(
        "--cores", type=int, action="append", help="cores for the shipper (1 and 2)"
    )
    parser.add_argument("--profile", action="store_true", help="add the per-stage breakdown")
    parser.add_argument(
        "--transport",
        action="append",
        choices=TRANSPORTS,
        help="--to scheme (repeatable; default: all of " + ", ".join(TRANSPORTS) + ")",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="same as --transport tls (a trustme test CA; the receiver decrypts)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run every transport with the shipper of this source tree (its src/; "
        "e.g. `git worktree add DIR main`), interleaved: before and after in the same run",
    )
    parser.add_argument(
        "--privacy",
        action="store_true",
        help="also run every transport with REDACT_QUERY=values and CLIENT_IP=truncate, "
        "interleaved: the rules' cost end to end",
    )
    parser.add_argument(
        "--link",
        type=int,
        action="append",
        metavar="MBIT",
        help="ship from a network namespace over a veth link that carries at most MBIT Mbit/s "
        "from the shipper (0: no limit), instead of over loopback (repeatable, interleaved; "
        "needs root: see bench/link.py)",
    )
    parser.add_argument(
        "--profile-lines", type=int, default=100_000, help="object size for --profile (100,000)"
    )
    add_cache_argument(parser)
    return parser.parse_args(argv)


def add_cache_argument(parser: argparse.ArgumentParser) -> None:
    """``--cache DIR``: where generated corpora are kept between runs (every bench's)."""
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "elb-log-shipper-bench",
        help="where generated corpora are kept between runs",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = args.lines or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    runs = args.runs or (1 if args.quick else DEFAULT_RUNS)
    pools = args.pool or DEFAULT_POOLS
    cores = [n for n in (args.cores or DEFAULT_CORES) if n <= len(CPUS)]
    # Before any thread starts, so moto's and the receiver's threads inherit it: keep them off
    # CPU 0, the one a 1-core shipper is pinned to.
    if len(CPUS) > 1:
        os.sched_setaffinity(0, {CPUS[-1]})

    if args.baseline is not None and not (args.baseline / "src" / "elb_log_shipper").is_dir():
        # PYTHONPATH would find nothing there, and the baseline runs would run this tree's code.
        raise SystemExit(f"ship_bench: {args.baseline}/src/elb_log_shipper is no source tree")
    transports = list(args.transport or ([] if args.tls else TRANSPORTS))
    if args.tls and "tls" not in transports:
        transports.append("tls")
    with contextlib.ExitStack() as stack:
        link = stack.enter_context(network_link()) if args.link else None
        host = "127.0.0.1" if link is None else link.host
        links: list[int | None] = list(args.link or [None])
        ca_file: Path | None = None
        server_tls: ssl.SSLContext | None = None
        if any(transport.endswith("tls") for transport in transports):
            ca = trustme.CA()
            server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("localhost", host).configure_cert(server_tls)
            ca_file = args.cache / "bench-ca.pem"
            args.cache.mkdir(parents=True, exist_ok=True)
            ca.cert_pem.write_to_path(str(ca_file))
        receivers: dict[str, CountingReceiver] = {}
        for transport in transports:
            tls = server_tls if transport.endswith("tls") else None
            beats = transport.startswith("beats")
            receivers[transport] = (
                BeatsCountingReceiver(tls, host) if beats else CountingReceiver(tls, host)
            )
            stack.callback(receivers[transport].close)
        summaries: list[Summary] = []
        profile_text = ""
        moto = stack.enter_context(moto_server(host))
        harness = Harness(moto, ca_file, args.baseline, link)
        s3 = moto.client()
        s3.create_bucket(Bucket=BUCKET)
        corpora = {}
        for lines in sorted({*sizes, *([args.profile_lines] if args.profile else [])}):
            corpus = build_corpus(lines, args.cache)
            upload(s3, corpus)
            corpora[lines] = corpus
        for lines in sizes:
            for n_cores in cores:
                for pool in pools:
                    configs = [
                        Config(lines, n_cores, pool, t, link_mbit=mbit)
                        for mbit in links
                        for t in transports
                    ]
                    if args.baseline is not None:
                        configs += [replace(config, baseline=True) for config in configs]
                    if args.privacy:
                        configs += [replace(config, privacy=True) for config in configs]
                    group = {config: Summary(config) for config in configs}
                    # Interleaved, so that other load on the machine hits every transport alike;
                    # every other round in reverse, so that no configuration always runs first
                    # (rounds pair the runs: see ``paired_ratios``).
                    for round_index in range(runs):
                        order = list(group.items())
                        if round_index % 2:
                            order.reverse()
                        for config, summary in order:
                            summary.runs.append(
                                run_shipper(
                                    config, corpora[lines], harness, receivers[config.transport]
                                )
                            )
                    for config, summary in group.items():
                        best = summary.best
                        print(
                            f"{lines:>9,} lines, {n_cores} core(s), pool {pool}, {config.label}: "
                            f"{lines / best.wall:>9,.0f} lines/s end to end, "
                            f"{summary.peak_rss_mb:.0f} MB peak RSS",
                            file=sys.stderr,
                        )
                        summaries.append(summary)
        if args.profile:
            profile_text = profile(s3, corpora[args.profile_lines], next(iter(receivers.values())))

    names = " + ".join(transport.upper() for transport in transports)
    print(f"## elb-log-shipper ship: S3 (moto) -> {names} receiver\n\n{machine_line()}\n")
    for corpus in corpora.values():
        print(
            f"- {corpus.lines:,} lines: {corpus.uncompressed_bytes / 1e6:,.0f} MB uncompressed, "
            f"{corpus.compressed_bytes / 1e6:,.1f} MB gzip"
        )
    print()
    print(markdown_table(summaries, runs))
    worst_rss = max((s.peak_rss_mb for s in summaries), default=0.0)
    best_per_cpu = max((s.config.lines / s.best.cpu_seconds for s in summaries), default=0.0)
    print(
        f"\nTargets: peak RSS < {TARGET_RSS_MB} MB: "
        f"{'met' if worst_rss < TARGET_RSS_MB else 'MISSED'}"
        f" (highest {worst_rss:.0f} MB); {TARGET_LINES_PER_CORE:,} lines/s per core: "
        f"{'met' if best_per_cpu >= TARGET_LINES_PER_CORE else 'MISSED'} "
        f"(best {best_per_cpu:,.0f} lines per CPU-second)"
    )
    print(beats_comparison(summaries))
    print(privacy_comparison(summaries))
    if profile_text:
        print(f"\n{profile_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
