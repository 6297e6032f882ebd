"""End to end: S3 over real HTTP (moto) -> ``elb-log-shipper ship`` -> a json_lines receiver.

The command runs in-process (``cli.main``) and finds S3 through the standard
``AWS_ENDPOINT_URL_S3`` variable only, as it would find a real endpoint; Logstash is the test
receiver over TCP, or TLS with a trustme CA and hostname verification. "Exactly once" is checked
against the byte offsets of the lines we uploaded, not against a count.
"""

from __future__ import annotations

import gzip
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from bench.corpus import alb_lines

from elb_log_shipper import cli
from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.logstash import LogstashSender, SocketPool
from elb_log_shipper.pipeline import deliver_object
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.samples import CLASSIC_LINES
from tests.support.certs import CertBundle
from tests.support.cli_runner import printed_resume_commands
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("user_environment")]

_DAY = "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/"
_ACCOUNT = "123456789012_elasticloadbalancing_us-east-1"
ALB_KEY = f"{_DAY}{_ACCOUNT}_app.my-loadbalancer.50dc6c495c0c9188_20261128T2340Z_10.0.1.7_a1.log.gz"
CLASSIC_KEY = f"{_DAY}{_ACCOUNT}_my-classic-lb_20261128T2340Z_10.0.2.8_c1.log"

ALB_LINE_COUNT = 20_000
# CLASSIC_LINES holds three log lines and one that is not a log: a quarter are parse failures.
CLASSIC_REPEAT = 250
# The dead-Logstash test gives up after 3 failures over 3 stall timeouts: keep it under a second.
FAST_FAIL_ENV = {ENV.LOGSTASH_CONNECT_TIMEOUT: "0.5", ENV.LOGSTASH_STALL_TIMEOUT: "0.2"}


@dataclass(frozen=True)
class LogObject:
    """An uploaded object and what its lines are, by offset in the decompressed stream."""

    bucket: str
    key: str
    lines: dict[int, str]
    stored_bytes: int

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def make_object(
    moto: MotoServer, bucket: str, key: str, lines: list[str], *, compress: bool
) -> LogObject:
    data = "".join(line + "\n" for line in lines).encode()
    body = gzip.compress(data, compresslevel=6) if compress else data
    moto.client().put_object(Bucket=bucket, Key=key, Body=body)
    offsets: dict[int, str] = {}
    offset = 0
    for line in lines:
        offsets[offset] = line
        offset += len(line.encode()) + 1
    return LogObject(bucket, key, offsets, len(body))


# Fixtures.


@pytest.fixture(scope="module")
def bucket(moto: MotoServer) -> str:
    return moto.new_bucket("elb-logs")


@pytest.fixture(scope="module")
def alb_object(moto: MotoServer, bucket: str) -> LogObject:
    return make_object(moto, bucket, ALB_KEY, list(alb_lines(ALB_LINE_COUNT)), compress=True)


@pytest.fixture(scope="module")
def classic_object(moto: MotoServer, bucket: str) -> LogObject:
    return make_object(
        moto, bucket, CLASSIC_KEY, list(CLASSIC_LINES) * CLASSIC_REPEAT, compress=False
    )


@pytest.fixture
def receiver() -> Iterator[JsonLinesReceiver]:
    with JsonLinesReceiver() as server:
        yield server


# Helpers.


@dataclass
class Run:
    status: int
    stderr: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    capsys.readouterr()
    status = cli.main(["ship", *argv])
    captured = capsys.readouterr()
    assert captured.out == "", "shipping to Logstash writes nothing on stdout"
    return Run(status, captured.err)


def destination(server: JsonLinesReceiver, *, tls: bool = False) -> str:
    return f"{'tls' if tls else 'tcp'}://127.0.0.1:{server.port}"


def assert_exactly_once(server: JsonLinesReceiver, *objects: LogObject) -> set[str]:
    """Every line of every object arrived once, in order per connection, with its context.

    Returns the set of event ids.
    """
    server.wait_idle()
    by_object: dict[str, dict[int, dict[str, Any]]] = {obj.key: {} for obj in objects}
    ids: set[str] = set()
    for record in server.records:
        assert record.partial == b"", f"connection {record.index} ended inside a line"
        assert record.error is None, record.error
        last: dict[str, int] = {}
        for event in record.events:
            s3 = event["aws"]["s3"]
            key, offset, event_id = (
                s3["object"]["key"],
                event["log"]["offset"],
                event["event"]["id"],
            )
            assert key in by_object, f"unexpected object {key}"
            assert offset > last.get(key, -1), f"connection {record.index} reordered {key}"
            last[key] = offset
            assert offset not in by_object[key], f"{key} line at {offset} arrived twice"
            assert event_id not in ids, f"event.id {event_id} is not unique"
            assert event_id.endswith(f"-{offset}")
            by_object[key][offset] = event
            ids.add(event_id)
    for obj in objects:
        received = by_object[obj.key]
        assert received.keys() == obj.lines.keys(), f"{obj.key}: lines lost"
        for offset, event in received.items():
            assert event["aws"]["s3"]["bucket"]["name"] == obj.bucket
            assert event["event"]["original"] == obj.lines[offset]
    return ids


REPORT = re.compile(
    r"^(?P<uri>s3://\S+): (?P<lines>\d+) lines, "
    r"(?P<failures>\d+) parse failures, (?P<sent>\d+) sent, (?P<bytes>\d+) bytes read, "
    r"(?P<seconds>[0-9.]+) s$",
    re.MULTILINE,
)


def reports(stderr: str) -> dict[str, dict[str, str]]:
    return {match["uri"]: match.groupdict() for match in REPORT.finditer(stderr)}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def refused_port() -> int:
    """A port nothing listens on: connecting to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# Every line exactly once, over TCP and TLS.


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_ship_alb_gzip_and_classic_plain_exactly_once(
    capsys: pytest.CaptureFixture[str],
    certs: CertBundle,
    alb_object: LogObject,
    classic_object: LogObject,
    tls: bool,
) -> None:
    context = certs.server_context() if tls else None
    tls_args = ["--ca-file", certs.ca_file] if tls else []
    with JsonLinesReceiver(context) as server:
        run = run_cli(
            capsys,
            alb_object.uri,
            classic_object.uri,
            "--to",
            destination(server, tls=tls),
            *tls_args,
        )
        assert run.status == cli.EXIT_OK, run.stderr
        assert_exactly_once(server, alb_object, classic_object)
        assert server.handshake_errors == []


def test_event_ids_are_deterministic(
    capsys: pytest.CaptureFixture[str], alb_object: LogObject, classic_object: LogObject
) -> None:
    id_sets = []
    for _ in range(2):
        with JsonLinesReceiver() as server:
            run = run_cli(capsys, alb_object.uri, classic_object.uri, "--to", destination(server))
            assert run.status == cli.EXIT_OK, run.stderr
            id_sets.append(assert_exactly_once(server, alb_object, classic_object))
    assert id_sets[0] == id_sets[1]
    assert len(id_sets[0]) == ALB_LINE_COUNT + len(CLASSIC_LINES) * CLASSIC_REPEAT


def test_tls_hostname_is_verified(
    capsys: pytest.CaptureFixture[str], certs: CertBundle, classic_object: LogObject
) -> None:
    # Signed by the CA we pass, but for logstash.example, not 127.0.0.1.
    with JsonLinesReceiver(certs.server_context(misnamed=True)) as server:
        run = run_cli(
            capsys,
            classic_object.uri,
            "--to",
            destination(server, tls=True),
            "--ca-file",
            certs.ca_file,
        )
        assert server.events == []
    assert run.status == cli.EXIT_FAILED
    assert "failed verification" in run.stderr


# The pool bounds connections and file descriptors.


@pytest.mark.parametrize(("pool_size", "jobs"), [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_pool_size_bounds_open_connections_per_process(
    *,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    bucket: str,
    receiver: JsonLinesReceiver,
    pool_size: int,
    jobs: int,
) -> None:
    objects = [
        make_object(
            moto,
            bucket,
            f"{_DAY}{_ACCOUNT}_app.pool-lb.50dc6c495c0c9188_20261128T2340Z_10.0.1.7_"
            f"p{pool_size}j{jobs}{n}"
            ".log.gz",
            list(alb_lines(4_000, seed=n)),
            compress=True,
        )
        for n in range(3)
    ]
    monkeypatch.setenv(ENV.LOGSTASH_POOL_SIZE, str(pool_size))
    run = run_cli(
        capsys, *(obj.uri for obj in objects), "--to", destination(receiver), "--jobs", str(jobs)
    )

    assert run.status == cli.EXIT_OK, run.stderr
    assert_exactly_once(receiver, *objects)
    # Each worker process has a pool of its own.
    assert 1 <= receiver.max_active <= pool_size * jobs


def test_file_descriptors_stay_flat_over_1000_objects(
    moto: MotoServer, receiver: JsonLinesReceiver
) -> None:
    bucket = moto.new_bucket("many")
    s3: S3Client = moto.client()
    lines = "".join(line + "\n" for line in CLASSIC_LINES[:3]).encode()
    keys = [f"{_DAY}{_ACCOUNT}_small-lb_20261128T2340Z_10.0.2.8_{n:04d}.log" for n in range(1_000)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=lines)
    settings = Settings(host="127.0.0.1", port=receiver.port, pool_size=2)
    pool = SocketPool(settings)

    def ship(batch: list[str]) -> None:
        for key in batch:
            result = deliver_object(
                ObjectRef(bucket, key), LogstashSender(pool), settings, s3_client=s3
            )
            assert result.error is None
            assert result.events_confirmed == 3

    def settled_fds(most: int | None) -> int:
        """Open descriptors once the receiver's threads have closed their side: for up to 5 s,
        until there are at most ``most``. (The first count may catch a descriptor of the run
        still closing, a socket or a thread's: the test asks that 990 objects more leave no
        more open than that, not fewer.)"""
        receiver.wait_idle()
        end = time.monotonic() + 5
        count = open_fds()
        while most is not None and count > most and time.monotonic() < end:
            time.sleep(0.05)
            count = open_fds()
        return count

    try:
        ship(keys[:10])
        after_10 = settled_fds(None)
        ship(keys[10:])
        after_1000 = settled_fds(after_10)
    finally:
        pool.close()

    assert after_1000 <= after_10
    assert pool.open_connections == 0
    assert len(receiver.events) == 3_000
    assert receiver.max_active <= 2


# What the command says.


def test_report_per_object_and_summary(
    capsys: pytest.CaptureFixture[str],
    receiver: JsonLinesReceiver,
    alb_object: LogObject,
    classic_object: LogObject,
) -> None:
    run = run_cli(capsys, alb_object.uri, classic_object.uri, "--to", destination(receiver))
    assert run.status == cli.EXIT_OK, run.stderr

    got = reports(run.stderr)
    classic_lines = len(CLASSIC_LINES) * CLASSIC_REPEAT
    expected = {
        alb_object.uri: (ALB_LINE_COUNT, 0, alb_object.stored_bytes),
        classic_object.uri: (classic_lines, CLASSIC_REPEAT, classic_object.stored_bytes),
    }
    assert got.keys() == expected.keys()
    for uri, (lines, failures, stored) in expected.items():
        report = got[uri]
        assert int(report["lines"]) == int(report["sent"]) == lines
        assert int(report["failures"]) == failures
        assert int(report["bytes"]) == stored
        assert float(report["seconds"]) >= 0
    total = ALB_LINE_COUNT + classic_lines
    assert f"2 objects read (0 failed), 0 skipped: {total} lines, " in run.stderr
    assert f"{total} sent" in run.stderr
    assert re.search(r" s wall clock \([\d,]+ lines/s\)$", run.stderr, re.MULTILINE)


def test_unreachable_logstash_fails_fast_with_one_sentence(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    alb_object: LogObject,
    classic_object: LogObject,
) -> None:
    for name, value in FAST_FAIL_ENV.items():
        monkeypatch.setenv(name, value)
    port = refused_port()
    started = time.monotonic()
    to = f"tcp://127.0.0.1:{port}"
    run = run_cli(capsys, classic_object.uri, alb_object.uri, "--to", to, "--jobs", "1")

    assert run.status == cli.EXIT_FAILED
    assert time.monotonic() - started < 10
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, run.stderr
    # "<object>: 0 lines, ...; error: delivery to Logstash failed: <what happened>; <what to do>"
    message = errors[0].split("error: ", 1)[1]
    assert message.startswith("delivery to Logstash failed: ")
    assert f"127.0.0.1:{port}" in message
    assert "refused" in message.lower()
    assert "check that it is up" in message
    # Later objects would fail the same way: the command stops instead of trying each, and
    # says how to ship the failed one and those never tried, without the others again.
    assert alb_object.uri not in reported(run)
    assert "1 object read (1 failed), 0 skipped" in run.stderr
    assert printed_resume_commands(run.stderr) == [
        ["ship", classic_object.uri, "--to", to, "--jobs", "1", "--start-offset", "0"],
        ["ship", alb_object.uri, "--to", to, "--jobs", "1"],
    ]


def reported(run: Run) -> str:
    """What a run wrote to stderr but the commands it printed to go on."""
    return "\n".join(line for line in run.stderr.splitlines() if not line.startswith("  "))


def test_unreachable_logstash_stops_a_parallel_run_after_the_objects_in_flight(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    bucket: str,
) -> None:
    for name, value in FAST_FAIL_ENV.items():
        monkeypatch.setenv(name, value)
    objects = [
        make_object(
            moto,
            bucket,
            f"{_DAY}{_ACCOUNT}_app.down-lb.50dc6c495c0c9188_20261128T2340Z_10.0.1.7_{n}.log",
            list(alb_lines(10, seed=n)),
            compress=False,
        )
        for n in range(6)
    ]
    to = f"tcp://127.0.0.1:{refused_port()}"
    run = run_cli(capsys, *(obj.uri for obj in objects), "--to", to, "--jobs", "2")

    assert run.status == cli.EXIT_FAILED
    assert "Traceback" not in run.stderr
    # Each worker learns it on its own object; no object starts after the first failure.
    errors = [line for line in run.stderr.splitlines() if "error:" in line and "refused" in line]
    assert 1 <= len(errors) <= 2, run.stderr
    assert objects[-1].uri not in reported(run)
    # Not one was shipped: those that failed and those never started.
    assert "delivery to Logstash failed (the error above says why); 6 objects were not shipped" in (
        run.stderr
    ), run.stderr
    # The commands printed ship all six: the failed ones from their start, then the rest.
    commands = printed_resume_commands(run.stderr)
    named = [word for command in commands for word in command if word.startswith("s3://")]
    assert named == [obj.uri for obj in objects], run.stderr


def test_a_key_cannot_write_terminal_escapes_or_lines_into_the_report(
    capsys: pytest.CaptureFixture[str], moto: MotoServer, receiver: JsonLinesReceiver
) -> None:
    # Whoever may write to the bucket chooses its keys: one that sets the terminal's title,
    # erases the line above and forges a report line must reach the terminal as text.
    bucket = moto.new_bucket("elb-logs")
    key = f"{_DAY}x\x1b]0;owned\x07\x1b[1A\x1b[2K\rs3://a/b.log: 9 lines\x0b\x85.log"
    obj = make_object(moto, bucket, key, list(CLASSIC_LINES), compress=False)
    # (Not named as ELB names its logs: listed under a prefix, it is read with --any-key.)
    run = run_cli(
        capsys, f"s3://{bucket}/{_DAY}", "--any-key", "--to", destination(receiver), "--jobs", "1"
    )
    assert run.status == cli.EXIT_OK
    assert len(receiver.events) == len(CLASSIC_LINES)
    assert all(char.isprintable() for char in run.stderr.replace("\n", ""))
    shown = f"s3://{bucket}/{_DAY}x\\x1b]0;owned\\x07\\x1b[1A\\x1b[2K\\rs3://a/b.log: 9 lines"
    assert f"{shown}\\x0b\\x85.log: {len(obj.lines)} lines" in run.stderr


def test_missing_object_is_reported_and_fails(
    capsys: pytest.CaptureFixture[str], receiver: JsonLinesReceiver, bucket: str
) -> None:
    missing = f"s3://{bucket}/{_DAY}{_ACCOUNT}_gone-lb_20261128T2340Z_10.0.2.8_x.log"
    run = run_cli(capsys, missing, "--to", destination(receiver))
    assert run.status == cli.EXIT_FAILED
    assert "does not exist" in run.stderr
    assert receiver.events == []
