"""Backfill: ``elb-log-shipper ship s3://bucket/prefix/`` against moto over HTTP and a json_lines
receiver, with the command run in-process (``cli.main``) or, for Ctrl-C, as a subprocess.

One prefix holds more than 1,000 objects (more than one ListObjectsV2 page) over eight delivery
days, plus the ELB test file, a health-check log and a key without date folders. Objects are
tiny (one or two lines) so that the listing and the per-object work, not parsing, are tested.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from bench.corpus import alb_lines
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from elb_log_shipper import cli
from elb_log_shipper.backfill import DateRange, list_dated, list_prefix
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.triggers import make_continuation
from tests.support.cli_runner import (
    Run,
    interrupt_command,
    printed_resume_commands,
    run_command,
    run_resume_commands,
    run_resume_processes,
)
from tests.support.faults import SlowReadingServer
from tests.support.lambda_stub import LambdaStub
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import DUMMY_ENVIRON, FaultyS3, MotoServer

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3.literals import StorageClassType

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("user_environment")]

ACCOUNT = "123456789012"
REGION = "us-east-1"
FOLDER = f"AWSLogs/{ACCOUNT}/elasticloadbalancing/{REGION}/2024/03"
# Days 1-5 hold the bulk (over a thousand keys: two listing pages); 6-8 a few each, for filters.
BULK_DAYS = range(1, 6)
BULK_PER_DAY = 205
FEW_DAYS = range(6, 9)
FEW_PER_DAY = 3


def log_key(day: int, n: int, *, end_day: int | None = None, kind: str = "") -> str:
    end = f"202403{end_day or day:02d}T{n % 24:02d}05Z"
    return (
        f"{FOLDER}/{day:02d}/{kind}{ACCOUNT}_elasticloadbalancing_{REGION}_"
        f"app.web.50dc6c495c0c9188_{end}_10.0.1.7_{n:05d}.log"
    )


TEST_FILE = f"AWSLogs/{ACCOUNT}/ELBAccessLogTestFile"
HEALTH_CHECK = log_key(7, 900, kind="health_check_log_")
UNDATED = f"AWSLogs/{ACCOUNT}/elasticloadbalancing/notes/readme.txt"
# Another service's log beside ELB's (a central logging bucket): skipped, with the reason.
OTHER_SERVICE = f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/03/01/{ACCOUNT}_CloudTrail_x.json.gz"
# Delivered on the 6th (its folder) for an interval that ended on the 5th: the folder decides.
LATE = log_key(6, 901, end_day=5)


@dataclass(frozen=True)
class Stored:
    key: str
    lines: dict[int, str]  # offset in the decompressed stream -> line
    size: int
    etag: str


@dataclass
class Prefix:
    bucket: str
    objects: dict[str, Stored]

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/AWSLogs/"

    def logs(self, *days: int) -> set[str]:
        """Keys of the log objects (not test file, health check or undated) on ``days``."""
        wanted = {f"{FOLDER}/{day:02d}/" for day in days}
        return {
            key
            for key in self.objects
            if key[: len(FOLDER) + 4] in wanted and key not in (HEALTH_CHECK,)
        }


def put(bucket: str, key: str, lines: list[str], *, compress: bool) -> Stored:
    """Store an object straight into the moto server's backend (the server runs in this process).

    Setup only, and 500 times faster than a thousand PUTs over HTTP; the command under test
    lists and reads over HTTP.
    """
    data = "".join(line + "\n" for line in lines).encode()
    body = gzip.compress(data) if compress else data
    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].put_object(bucket, key, body)
    offsets: dict[int, str] = {}
    offset = 0
    for line in lines:
        offsets[offset] = line
        offset += len(line.encode()) + 1
    return Stored(key, offsets, len(body), str(stored.etag).strip('"'))


@pytest.fixture(scope="module")
def prefix(moto: MotoServer) -> Prefix:
    bucket = moto.new_bucket("backfill")
    specs: list[tuple[str, list[str], bool]] = []
    for day in BULK_DAYS:
        specs += [
            (log_key(day, n), list(alb_lines(1 + n % 2, seed=day * 1000 + n)), n % 3 == 0)
            for n in range(BULK_PER_DAY)
        ]
    for day in FEW_DAYS:
        specs += [
            (log_key(day, n), list(alb_lines(2, seed=day * 1000 + n)), n % 2 == 0)
            for n in range(FEW_PER_DAY)
        ]
    specs += [
        (LATE, list(alb_lines(2, seed=901)), False),
        (TEST_FILE, ["Enable AccessLog for ELB: my-lb at 2024-03-01T00:00:00.000Z"], False),
        (HEALTH_CHECK, ["health check line"], True),
        (UNDATED, ["not a log line"], False),
        (OTHER_SERVICE, ['{"Records": []}'], True),
    ]
    stored = [put(bucket, key, lines, compress=compress) for key, lines, compress in specs]
    assert len(stored) > 1_000
    return Prefix(bucket, {obj.key: obj for obj in stored})


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    return run_command(capsys, "ship", *argv)


def received(events: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
    return Counter((e["aws"]["s3"]["object"]["key"], e["log"]["offset"]) for e in events)


def expected_lines(prefix: Prefix, keys: set[str]) -> Counter[tuple[str, int]]:
    return Counter((key, offset) for key in keys for offset in prefix.objects[key].lines)


def put_logs(bucket: str, keys: list[str]) -> Prefix:
    """Twenty ALB lines (gzip) at each of ``keys``: enough objects that Ctrl-C comes part-way
    through them, each a few batches."""
    return Prefix(
        bucket,
        {
            key: put(bucket, key, list(alb_lines(20, seed=n)), compress=True)
            for n, key in enumerate(keys)
        },
    )


def stdout_events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


# The whole prefix, more than one listing page, every line once.


def test_prefix_of_over_1000_objects_ships_every_line_once(
    capsys: pytest.CaptureFixture[str], prefix: Prefix
) -> None:
    with JsonLinesReceiver() as receiver:
        run = run_cli(
            capsys,
            prefix.uri,
            "--to",
            f"tcp://127.0.0.1:{receiver.port}",
            "--quiet",
            "--progress-every",
            "0.2",
        )
        receiver.wait_idle()
        events = receiver.events
    assert run.status == cli.EXIT_OK, run.err
    # The test file and the health-check log are skipped; the readme and another service's log
    # are no ELB log files: not even read.
    shipped = set(prefix.objects) - {TEST_FILE, HEALTH_CHECK, UNDATED, OTHER_SERVICE}
    assert len(shipped) > 1_000
    assert received(events) == expected_lines(prefix, shipped)
    ids = [event["event"]["id"] for event in events]
    assert len(set(ids)) == len(ids)
    # Not a terminal: periodic plain progress lines, then the summary table.
    assert re.search(r"^progress: \d+/\d+ objects shipped, [\d,]+ lines, ", run.err, re.M)
    assert "\r" not in run.err
    assert re.search(rf"^shipped\s+{len(shipped):,}\s", run.err, re.M), run.err
    assert "ELB access log test file: 1" in run.err
    assert "health check logs are not shipped" in run.err
    assert f"{len(shipped)} objects read (0 failed), 2 skipped" in run.err
    assert re.search(r"^not logs\s+2\s+listed, not named like ELB log files", run.err, re.M)


# Choosing objects.


def test_since_until_keep_both_boundary_days_by_delivery_folder(
    capsys: pytest.CaptureFixture[str], prefix: Prefix
) -> None:
    run = run_cli(capsys, prefix.uri, "--since", "2024-03-06", "--until", "2024-03-07", "--to", "-")
    assert run.status == cli.EXIT_OK, run.err
    keys = prefix.logs(6, 7)
    assert LATE in keys  # interval ended on the 5th, delivered on the 6th: in
    assert received(stdout_events(run.out)) == expected_lines(prefix, keys)
    # The health-check log is in range and skipped. Nothing else was even listed: the prefix is
    # walked by date, so no object is left out by the filter.
    assert f"skipped {HEALTH_CHECK}" in run.err.replace(f"s3://{prefix.bucket}/", "")
    assert "listed by delivery date: only the yyyy/mm/dd folders" in run.err
    assert not re.search(r"^excluded", run.err, re.M), run.err


@pytest.mark.parametrize("root", ["AWSLogs/", ""], ids=["AWSLogs", "bucket-root"])
def test_a_date_range_lists_only_its_day_folders(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    prefix: Prefix,
    root: str,
) -> None:
    # The moto server logs each ListObjectsV2 request it serves (werkzeug): the query says what
    # was listed. Folders are walked with a delimiter; only days 6 and 7 are listed whole. Above
    # AWSLogs/, a listing with the delimiter `AWSLogs/` finds it first.
    caplog.set_level(logging.INFO, logger="werkzeug")
    source = f"s3://{prefix.bucket}/{root}"
    run = run_cli(capsys, source, "--since", "2024-03-06", "--until", "2024-03-07", "--dry-run")
    assert run.status == cli.EXIT_OK, run.err
    listings = [
        dict(urllib.parse.parse_qsl(found[1]))
        for record in caplog.records
        if (
            found := re.search(
                rf'"GET /{prefix.bucket}/?\?(\S*list-type=2\S*) ', record.getMessage()
            )
        )
    ]
    assert listings, "no listing was logged"
    above = [listing for listing in listings if listing.get("delimiter") == "AWSLogs/"]
    # (moto pages a name rolled up over a thousand keys, as S3 does not: a page or more)
    assert {listing.get("prefix", "") for listing in above} == (
        set() if root == "AWSLogs/" else {root}
    )
    assert all(listing.get("delimiter") == "/" for listing in listings if listing not in above)
    days = sorted(
        listing["prefix"] for listing in listings if listing.get("prefix", "").count("/") == 7
    )
    assert days == [f"{FOLDER}/06/", f"{FOLDER}/07/"]
    assert f"would ship {len(prefix.logs(6, 7))} objects" in run.out
    note = "listed by delivery date: only the yyyy/mm/dd folders within --since/--until under"
    assert f"{note} {source}\n" in run.out


def test_stdout_stays_ordered_by_object_with_two_jobs(
    capsys: pytest.CaptureFixture[str], prefix: Prefix
) -> None:
    run = run_cli(capsys, prefix.uri, "--since", "2024-03-06", "--jobs", "2", "--to", "-")
    assert run.status == cli.EXIT_OK, run.err
    order = [(e["aws"]["s3"]["object"]["key"], e["log"]["offset"]) for e in stdout_events(run.out)]
    keys = prefix.logs(6, 7, 8)
    # Objects in listing (key) order, each object's lines together and in order.
    assert order == [
        (key, offset) for key in sorted(keys) for offset in sorted(prefix.objects[key].lines)
    ]


def test_a_long_listing_says_how_far_it_got(
    capsys: pytest.CaptureFixture[str], prefix: Prefix
) -> None:
    # Nothing ships before the whole plan is listed: a month of a busy ALB (tens of thousands
    # of keys, 1,000 a page) listed for a minute without a word, as if the command hung.
    run = run_cli(capsys, prefix.uri, "--dry-run", "--progress-every", "0.001")
    assert run.status == cli.EXIT_OK, run.err
    counts = [
        int(found[1].replace(",", ""))
        for found in re.finditer(r"listing: ([\d,]+) objects listed \([\d,]+ to ship\)", run.err)
    ]
    assert counts, run.err
    assert counts == sorted(counts)
    assert counts[-1] <= len(prefix.objects)
    assert "nothing ships before the listing ends" in run.err
    # Without a long listing, no such line: the default interval is 10 s.
    assert "listing:" not in run_cli(capsys, prefix.uri, "--dry-run").err


def test_dry_run_lists_sizes_and_skips_without_reading(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, prefix: Prefix
) -> None:
    # The moto server logs every request it serves through werkzeug: GETs of an object's key
    # are reads; listings are GETs of the bucket with a query.
    caplog.set_level(logging.INFO, logger="werkzeug")
    object_get = re.compile(rf'"GET /{prefix.bucket}/AWSLogs/')
    with JsonLinesReceiver() as receiver:
        run = run_cli(capsys, prefix.uri, "--dry-run", "--to", f"tcp://127.0.0.1:{receiver.port}")
        assert receiver.connection_count == 0
    assert run.status == cli.EXIT_OK, run.err
    assert not [r for r in caplog.records if object_get.search(r.getMessage())]

    listed = {uri: int(size) for size, uri in re.findall(r"^ +(\d+)  (s3://\S+)$", run.out, re.M)}
    shipped = set(prefix.objects) - {TEST_FILE, HEALTH_CHECK, UNDATED, OTHER_SERVICE}
    assert listed == {f"s3://{prefix.bucket}/{key}": prefix.objects[key].size for key in shipped}
    assert f"skip  s3://{prefix.bucket}/{TEST_FILE}  (ELB access log test file)" in run.out
    assert f"skip  s3://{prefix.bucket}/{HEALTH_CHECK}  (health check logs" in run.out
    assert UNDATED not in run.out
    assert OTHER_SERVICE not in run.out
    total = sum(prefix.objects[key].size for key in shipped)
    assert f"would ship {len(shipped)} objects, " in run.out
    assert f"({total} bytes); skip 2 " in run.out
    assert "; 2 not ELB log files (--any-key reads them)\n" in run.out

    # With --any-key the readme is planned (a real run reads it: parse failures); another
    # service's log is still skipped, with the reason.
    run = run_cli(capsys, prefix.uri, "--dry-run", "--any-key")
    assert f"{prefix.objects[UNDATED].size:>12}  s3://{prefix.bucket}/{UNDATED}\n" in run.out
    assert f"skip  s3://{prefix.bucket}/{OTHER_SERVICE}  (another service's logs" in run.out
    assert f"would ship {len(shipped) + 1} objects, " in run.out
    assert "not ELB log files" not in run.out

    # With a date filter only the day folders in range are listed.
    run = run_cli(capsys, prefix.uri, "--dry-run", "--since", "2024-03-08")
    assert run.status == cli.EXIT_OK, run.err
    assert f"would ship {FEW_PER_DAY} objects" in run.out
    assert "; 0 outside the dates\nlisted by delivery date: only the yyyy/mm/dd folders" in run.out

    # A key that names nothing is no object to ship: the real run would fail on it.
    missing = f"s3://{prefix.bucket}/AWSLogs/no-such.log"
    run = run_cli(capsys, missing, "--dry-run")
    assert f"   not found  {missing}  (no such object or prefix)\n" in run.out
    assert "would ship 0 objects, 0 B (0 bytes); skip 0; 0 outside the dates; 1 not found" in (
        run.out
    )
    # With dates too, below AWSLogs/ or above it (a typo'd name exited 0 there, "no objects").
    for missing in (f"s3://{prefix.bucket}/AWSLogs/no-such.log", f"s3://{prefix.bucket}/typo.gz"):
        run = run_cli(capsys, missing, "--dry-run", "--since", "2024-03-01")
        assert f"   not found  {missing}  (no such object or prefix)\n" in run.out
    # A folder that holds nothing (a typo'd day or account): not found, as a mistyped key; it
    # exited 0 ("no objects under ...").
    for missing in (f"s3://{prefix.bucket}/AWSLogs/no-such/", f"s3://{prefix.bucket}/typo/"):
        for dates in ([], ["--since", "2024-03-01"]):
            run = run_cli(capsys, missing, "--dry-run", *dates)
            assert f"   not found  {missing}  (no such object or prefix)\n" in run.out, dates
    run = run_cli(capsys, f"s3://{prefix.bucket}/AWSLogs/no-such/", "--to", "-")
    assert run.status == cli.EXIT_FAILED
    assert "AWSLogs/no-such/: 0 lines, 0 parse failures, 0 sent, 0 bytes read" in run.err
    # A folder: nothing was deleted, the path is wrong.
    assert (
        "; error: holds nothing (NoSuchKey): no object has this key or prefix; check the "
        "bucket and the path"
    ) in run.err, run.err
    run = run_cli(capsys, f"s3://{prefix.bucket}/AWSLogs/no-such.log", "--to", "-")
    assert "; error: does not exist (NoSuchKey): it was deleted, or the bucket or key" in run.err
    # Nothing in the dates under a prefix that holds objects: the dates say why, whether the
    # prefix ends with a `/` or not (it is no missing object).
    for under in (prefix.uri, f"s3://{prefix.bucket}/{FOLDER}"):
        run = run_cli(capsys, under, "--dry-run", "--since", "2030-01-01")
        assert f"no objects under {under} delivered from 2030-01-01 on" in run.err
        assert "not found" not in run.out

    # The control: a real run over the same listing does read objects, and the log shows it.
    caplog.clear()
    run = run_cli(capsys, prefix.uri, "--since", "2024-03-08", "--to", "-")
    assert run.status == cli.EXIT_OK, run.err
    reads = [r for r in caplog.records if object_get.search(r.getMessage())]
    assert len(reads) == FEW_PER_DAY


def test_a_bucket_root_ships_the_elb_logs_and_reads_nothing_else(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, moto: MotoServer
) -> None:
    # A central logging bucket: ELB's logs beside S3 server access logs and query results. A
    # copy of an ELB log under a folder of someone's making keeps its name, and is shipped.
    bucket = moto.new_bucket("central")
    elb, copy = log_key(6, 1), f"backup/{log_key(6, 2).rpartition('/')[2]}"
    access_log = "s3-access/2024-03-06-00-05-12-ABCDEF0123456789"
    results = "athena/results/2024/03/06/query.csv"
    logs = {
        key: put(bucket, key, list(alb_lines(3, seed=n)), compress=True)
        for n, key in enumerate([elb, copy])
    }
    others = {
        access_log: put(
            bucket, access_log, ["79a5 central [06/Mar/2024:00:00:00 +0000] x"], compress=False
        ),
        results: put(bucket, results, ['"a","b"', '"1","2"'], compress=False),
    }
    caplog.set_level(logging.INFO, logger="werkzeug")
    run = run_cli(capsys, f"s3://{bucket}/", "--to", "-")
    assert run.status == cli.EXIT_OK, run.err
    events = stdout_events(run.out)
    assert received(events) == Counter(
        (key, offset) for key, stored in logs.items() for offset in stored.lines
    )
    reads = [r.getMessage() for r in caplog.records if f'"GET /{bucket}/' in r.getMessage()]
    assert not [read for read in reads if any(f"/{key} " in read for key in others)], reads
    assert re.search(r"^not logs\s+2\s+listed, not named like ELB log files", run.err, re.M)

    # Named exactly, or with --any-key, they are read: every line a parse failure, kept whole.
    for argv in ([f"s3://{bucket}/{access_log}"], [f"s3://{bucket}/", "--any-key"]):
        run = run_cli(capsys, *argv, "--to", "-")
        assert run.status == cli.EXIT_OK, run.err
        failures = [e for e in stdout_events(run.out) if "_elbparsefailure" in e.get("tags", [])]
        assert {e["aws"]["s3"]["object"]["key"] for e in failures} >= {access_log}
        assert "not logs" not in run.err
    assert {e["aws"]["s3"]["object"]["key"] for e in failures} == set(others)


# Through the Lambda function: one asynchronous invocation per object.


def test_via_lambda_queues_one_event_invocation_per_object(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, prefix: Prefix
) -> None:
    with LambdaStub(functions={"elb-log-shipper"}) as stub:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", stub.endpoint_url)
        run = run_cli(
            capsys, prefix.uri, "--since", "2024-03-06", "--via-lambda", "elb-log-shipper"
        )
        calls = list(stub.calls)
    assert run.status == cli.EXIT_OK, run.err
    keys = prefix.logs(6, 7, 8)
    assert {call.function for call in calls} == {"elb-log-shipper"}
    assert {call.invocation_type for call in calls} == {"Event"}
    payloads = sorted((call.payload for call in calls), key=lambda p: str(p["key"]))
    expected = [
        make_continuation(
            ObjectRef(
                prefix.bucket,
                key,
                etag=prefix.objects[key].etag,
                size=prefix.objects[key].size,
            )
        )
        for key in sorted(keys)
    ]
    assert payloads == expected
    total = sum(prefix.objects[key].size for key in keys)
    assert f"queued {len(keys)} objects (" in run.err
    assert f", {total} bytes) for elb-log-shipper; 0 not queued" in run.err


def test_via_lambda_against_moto_reports_a_missing_function_once(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    prefix: Prefix,
) -> None:
    # Moto's own Lambda API: an Event invocation of a function created from a zip is accepted
    # (202) although Docker is absent; a function that does not exist is a 404.
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", moto.endpoint_url)
    lam: LambdaClient = boto3.client("lambda", **moto.client_kwargs())
    role = boto3.client("iam", **moto.client_kwargs()).create_role(
        RoleName="backfill-test", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    lam.create_function(
        FunctionName="shipper",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    run = run_cli(capsys, prefix.uri, "--since", "2024-03-08", "--via-lambda", "shipper")
    assert run.status == cli.EXIT_OK, run.err
    assert f"queued {FEW_PER_DAY} objects" in run.err

    # A name that holds nothing is not queued (the function would fail to read it), and does
    # not stop the others as a wrong function name does.
    missing = f"s3://{prefix.bucket}/AWSLogs/no-such/"
    run = run_cli(capsys, missing, prefix.uri, "--since", "2024-03-08", "--via-lambda", "shipper")
    assert run.status == cli.EXIT_FAILED
    assert f"{missing}: not queued: no such object or prefix in {prefix.bucket}" in run.err
    assert f"queued {FEW_PER_DAY} objects" in run.err
    assert "1 not queued" in run.err

    run = run_cli(capsys, prefix.uri, "--since", "2024-03-06", "--via-lambda", "no-such-function")
    assert run.status == cli.EXIT_FAILED
    failures = [line for line in run.err.splitlines() if "not queued: " in line]
    # The first invocation runs alone: a wrong name fails once, not once per object.
    assert len(failures) == 1, run.err
    assert "ResourceNotFoundException" in failures[0]
    # Ten logs and the health-check log planned; the first failed, the others were not tried.
    assert f"{len(prefix.logs(6, 7, 8))} not tried" in run.err


# Ctrl-C.


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_cleanly_and_the_printed_command_resumes(
    moto: MotoServer, prefix: Prefix, stop_signal: signal.Signals
) -> None:
    # CI systems and containers stop a command with SIGTERM: it must resume like Ctrl-C.
    keys = [
        f"interrupt{stop_signal.value}/AWSLogs/{ACCOUNT}/elasticloadbalancing/{REGION}/2024/03/01/"
        f"{ACCOUNT}_elasticloadbalancing_{REGION}_app.web.50dc6c495c0c9188_20240301T0005Z_"
        f"10.0.1.7_{n:03d}.log"
        for n in range(40)
    ]
    logs = put_logs(prefix.bucket, keys)
    env = {**os.environ, **DUMMY_ENVIRON, "AWS_ENDPOINT_URL_S3": moto.endpoint_url}
    env.pop("AWS_ENDPOINT_URL", None)
    command = [sys.executable, "-m", "elb_log_shipper.cli"]
    # Two connections read at 256 KiB/s each: the run takes a few seconds.
    with SlowReadingServer(bytes_per_second=256 * 1024) as slow:
        argv = [
            "ship",
            f"s3://{prefix.bucket}/interrupt{stop_signal.value}/",
            "--to",
            f"tcp://127.0.0.1:{slow.port}",
            "--jobs",
            "2",
            "--pool-size",
            "2",
            "--progress-every",
            "0.2",
        ]
        process = subprocess.Popen(
            [*command, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        end = time.monotonic() + 30
        while len(slow.events) < 60 and time.monotonic() < end and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == cli.EXIT_INTERRUPTED, stderr
        assert "Traceback" not in stderr
        first = received(slow.events)
        resumes = printed_resume_commands(stderr)
        # The prefix from after the last object handed back, last; before it, an object that the
        # signal stopped in progress (before its first batch, on a loaded machine) on its own.
        assert any(word.startswith("--start-after=") for word in resumes[-1])
        for resume in resumes[:-1]:
            assert resume[-2] == "--start-offset", stderr
        done = {key for key, _ in first}
        assert 0 < len(done) < len(keys)

        run_resume_processes(resumes, env)
        slow.wait_idle()
        both = received(slow.events)
    # Together, every line exactly once: the resume point is after the last object done.
    assert both == expected_lines(logs, set(keys))


def new_day_of_logs(moto: MotoServer, name: str, count: int = 40) -> Prefix:
    """A bucket of its own holding one day of ``count`` log objects (``put_logs``)."""
    bucket = moto.new_bucket(name)
    return put_logs(bucket, [dated_key(ACCOUNT, REGION, "2024/03/01", n) for n in range(count)])


def resumes_retrying(first: Run, uri: str) -> list[list[str]]:
    """The commands printed by a run interrupted after the object ``uri`` failed, checking that
    it exited 130, said so, and that the first command ships that object again whole."""
    assert first.status == cli.EXIT_INTERRUPTED, first.err
    assert "Traceback" not in first.err
    assert ", 1 failed (retried by the commands below). To resume, run:" in first.err
    resumes = printed_resume_commands(first.err)
    assert resumes[0][:2] == ["ship", uri], first.err
    assert resumes[0][-2:] == ["--start-offset", "0"], first.err
    return resumes


def test_ctrl_c_after_a_failed_object_prints_a_command_that_retries_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    # A key these credentials may not read (403 is transient: a grant people fix) fails before
    # Ctrl-C: the resume commands must retry it, or its lines are never shipped.
    logs = new_day_of_logs(moto, "failed")
    denied = sorted(logs.objects)[1]
    with (
        FaultyS3(moto, error=(403, "AccessDenied"), error_keys=frozenset({denied})) as faulty,
        SlowReadingServer(bytes_per_second=256 * 1024) as slow,
    ):
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        argv = ["ship", logs.uri, "--to", f"tcp://127.0.0.1:{slow.port}"]
        argv += ["--jobs", "2", "--pool-size", "2", "--progress-every", "0.2"]
        first = interrupt_command(
            argv,
            os.environ,
            when=lambda: len(slow.events) >= 60 and any(denied in path for path in faulty.gets),
        )
        resumes = resumes_retrying(first, f"s3://{logs.bucket}/{denied}")
        assert any(w.startswith("--start-after=") for r in resumes for w in r), first.err

        faulty.error = None  # the grant is fixed
        slow.chunk, slow.READS_PER_SECOND = 1024 * 1024, 1000
        run_resume_commands(capsys, resumes)
        slow.wait_idle()
        got = received(slow.events)
    # Together, every line exactly once, the failed object's too.
    assert got == expected_lines(logs, set(logs.objects))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_run_with_a_failed_object_prints_the_command_that_ships_it_alone(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer, jobs: str
) -> None:
    # A run that ended with a failed object (archived, denied, read failing for good) said
    # only "1 failed": the whole command again would ship every other object twice.
    logs = new_day_of_logs(moto, f"failed-alone-{jobs}", 6)
    denied = sorted(logs.objects)[2]
    with (
        FaultyS3(moto, error=(403, "AccessDenied"), error_keys=frozenset({denied})) as faulty,
        JsonLinesReceiver() as receiver,
    ):
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        to = f"tcp://127.0.0.1:{receiver.port}"
        first = run_cli(capsys, logs.uri, "--to", to, "--jobs", jobs, "--quiet")
        assert first.status == cli.EXIT_FAILED, first.err
        assert "1 object failed (the errors above say why); to ship it once" in first.err
        commands = printed_resume_commands(first.err)
        uri = f"s3://{logs.bucket}/{denied}"
        options = ["--to", to, "--jobs", jobs, "--quiet", "--start-offset", "0"]
        assert commands == [["ship", uri, *options]], first.err
        faulty.error = None  # the grant is fixed
        run_resume_commands(capsys, commands)
        receiver.wait_idle()
        got = received(receiver.events)
    # Together, every line exactly once.
    assert got == expected_lines(logs, set(logs.objects))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_credentials_that_expire_stop_the_run_at_the_first_object_with_the_commands_to_resume(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer, jobs: str
) -> None:
    # A backfill on a session's credentials (an hour): once they expired it went on, failed
    # every object left in a few minutes ("grant s3:GetObject"), and printed nothing to resume.
    logs = new_day_of_logs(moto, f"expired-{jobs}", 8)
    with FaultyS3(moto, error=(400, "ExpiredToken")) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        first = run_cli(capsys, logs.uri, "--to", "-", "--jobs", jobs, "--quiet")
        assert first.status == cli.EXIT_FAILED, first.err
        assert "S3 refused the credentials reading" in first.err
        assert "(ExpiredToken): they expired or are not valid" in first.err
        assert "grant s3:GetObject" not in first.err
        assert "stopped because S3 refused the credentials" in first.err
        # No object starts after the first refusal: those in flight then are all that was tried.
        tried = {urllib.parse.unquote(path).rsplit("/", 1)[1] for path in faulty.gets}
        assert 1 <= len(tried) <= int(jobs), faulty.gets
        commands = printed_resume_commands(first.err)
        faulty.error = None  # renewed
        out = ""
        for command in commands:
            run = run_command(capsys, *command)
            assert run.status == cli.EXIT_OK, run.err
            out += run.out
    # Together, every line exactly once.
    assert received(stdout_events(first.out + out)) == expected_lines(logs, set(logs.objects))


@pytest.mark.parametrize("code", ["ExpiredToken", "InvalidAccessKeyId"])
def test_credentials_refused_by_a_listing_say_to_renew_them_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer, code: str
) -> None:
    # The listing said "check the bucket name, the credentials and their s3:ListBucket
    # permission", exit 2, where a read says to renew them, exit 1.
    logs = new_day_of_logs(moto, f"list-{code.lower()}", 1)
    with FaultyS3(moto, listing_error=(400, code)) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        run = run_cli(capsys, logs.uri, "--to", "-")
    assert run.status == cli.EXIT_FAILED, run.err
    assert f"S3 refused the credentials ({code}): they expired or are not valid" in run.err
    assert "renew them (aws sso login, a new session) and run the command again" in run.err
    assert "s3:ListBucket" not in run.err


def test_a_key_whose_lookup_answers_400_is_read_for_the_error_it_names(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    # A HEAD's 400 carries no code (no body): "An error occurred (400) when calling the
    # HeadObject operation: Bad Request", exit 2. The read names it, as for any object.
    logs = new_day_of_logs(moto, "head-400", 1)
    (key,) = logs.objects
    with FaultyS3(moto, error=(400, "ExpiredToken")) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        run = run_cli(capsys, f"s3://{logs.bucket}/{key}", "--to", "-")
    assert run.status == cli.EXIT_FAILED, run.err
    assert "S3 refused the credentials reading" in run.err
    assert "(ExpiredToken)" in run.err
    assert "HeadObject" not in run.err


def test_a_prefix_without_its_slash_and_credentials_refused_is_no_object_to_resume(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    # The HEAD's 400 made the one listing that tells a folder decide, which swallowed its own
    # ExpiredToken: the prefix was shipped as an object, and the printed command
    # (--start-offset on a prefix) exited 2 once the credentials were renewed.
    logs = new_day_of_logs(moto, "prefix-expired", 1)
    folder = next(iter(logs.objects)).rsplit("/", 1)[0]
    expired = (400, "ExpiredToken")
    with FaultyS3(moto, error=expired, listing_error=expired) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        run = run_cli(capsys, f"s3://{logs.bucket}/{folder}", "--to", "-")
    assert run.status == cli.EXIT_FAILED, run.err
    assert "S3 refused the credentials (ExpiredToken)" in run.err
    assert "--start-offset" not in run.err


def test_an_aws_setup_that_cannot_work_is_a_usage_error_in_one_sentence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # botocore's ProfileNotFound and "Invalid endpoint" came up as tracebacks.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    run = run_cli(capsys, "s3://logs/AWSLogs/", "--to", "-")
    assert run.status == cli.EXIT_USAGE
    assert run.err.strip() == (
        f"{cli.PROG}: cannot set up the AWS s3 client: The config profile (nosuch) could not be "
        "found; check AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL"
    )
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "notaurl")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    run = run_cli(capsys, "s3://logs/AWSLogs/", "--via-lambda", "f")
    assert run.status == cli.EXIT_USAGE
    assert "cannot set up the AWS s3 client: Invalid endpoint: notaurl" in run.err
    assert "Traceback" not in run.err


def test_no_credentials_for_a_listing_say_how_to_set_them_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3's default session keeps the credentials it found first in this process.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    run = run_cli(capsys, "s3://logs/AWSLogs/", "--to", "-")
    assert run.status == cli.EXIT_USAGE
    assert "no usable AWS credentials (Unable to locate credentials); set them up or renew" in (
        run.err
    )


@pytest.mark.parametrize(
    ("compress", "jobs"), [(False, "1"), (True, "2")], ids=["plain-inline", "gzip-in-workers"]
)
def test_an_object_s3_keeps_cutting_short_goes_on_from_its_first_line_not_shipped(
    capsys: pytest.CaptureFixture[str],
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    *,
    compress: bool,
    jobs: str,
) -> None:
    # Over real HTTP: S3 closes every read of the object at its middle (the ranged GETs that
    # resume it, at once), past the reader's retries. The lines before the cut are printed, the
    # command printed resumes from the first line not printed, and every line arrives once.
    bucket = moto.new_bucket("cut-short")
    key = dated_key(ACCOUNT, REGION, "2024/03/01", 0)
    lines = list(alb_lines(3000, seed=7))
    body = "".join(f"{line}\n" for line in lines).encode()
    stored = gzip.compress(body) if compress else body
    moto.client().put_object(Bucket=bucket, Key=key, Body=stored)
    uri = f"s3://{bucket}/{key}"
    with FaultyS3(moto, cut_after=len(stored) // 2, cuts_left=100) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        first = run_cli(capsys, uri, "--to", "-", "--jobs", jobs)
        assert first.status == cli.EXIT_FAILED, first.err
        assert "retries" in first.err
        (command,) = printed_resume_commands(first.err)
        faulty.cuts_left = 0
        again = run_command(capsys, *command)
    assert again.status == cli.EXIT_OK, again.err
    printed = stdout_events(first.out)
    assert printed
    shipped = Counter(e["log"]["offset"] for e in printed + stdout_events(again.out))
    starts = [sum(len(line) + 1 for line in lines[:n]) for n in range(len(lines))]
    assert sorted(shipped) == starts
    assert max(shipped.values()) == 1


def test_an_object_whose_checksum_failed_is_shipped_again_from_its_start(
    capsys: pytest.CaptureFixture[str], moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checksum is checked at the end of the object, every line sent already: the command
    # printed went on from its end, shipped nothing and exited 0, the suspect lines never sent
    # again, though the error said to ship it from its start.
    bucket = moto.new_bucket("checksum")
    key = dated_key(ACCOUNT, REGION, "2024/03/01", 0)
    lines = list(alb_lines(50, seed=7))
    body = "".join(f"{line}\n" for line in lines).encode()
    moto.client().put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="CRC32")
    uri = f"s3://{bucket}/{key}"
    with FaultyS3(moto, corrupt_at=len(body) // 2) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        first = run_cli(capsys, uri, "--to", "-", "--quiet")
        assert first.status == cli.EXIT_FAILED, first.err
        assert "do not match the object's S3 checksum" in first.err
        commands = printed_resume_commands(first.err)
        assert commands == [["ship", uri, "--to", "-", "--quiet", "--start-offset", "0"]]
        faulty.corrupt_at = None
        again = run_command(capsys, *commands[0])
    assert again.status == cli.EXIT_OK, again.err
    starts = [sum(len(line) + 1 for line in lines[:n]) for n in range(len(lines))]
    assert [e["log"]["offset"] for e in stdout_events(again.out)] == starts


def test_a_denied_key_is_no_folder_for_another_key_that_starts_with_it(
    capsys: pytest.CaptureFixture[str], moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only keys under `KEY/` make the denied KEY a prefix: `x.log.gz` beside `x.log` was shipped.
    bucket = moto.new_bucket("sibling")
    for name in ("d/x.log", "d/x.log.gz"):
        put(bucket, name, list(alb_lines(3, seed=1)), compress=False)
    denied = frozenset({"d/x.log"})
    with FaultyS3(moto, error=(403, "AccessDenied"), error_keys=denied) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        run = run_cli(capsys, f"s3://{bucket}/d/x.log", "--to", "-")
    assert run.status == cli.EXIT_FAILED, run.err
    assert run.out == ""
    assert "x.log.gz" not in run.err


def test_an_invocation_not_queued_prints_the_command_that_queues_it_alone(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    # Without Ctrl-C, a run with an invocation refused printed no command: the whole command
    # again would queue every other object a second time.
    logs = new_day_of_logs(moto, "not-queued-alone", 5)
    refused = sorted(logs.objects)[2]
    with LambdaStub(functions={"shipper"}, refused_keys={refused}) as stub:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", stub.endpoint_url)
        first = run_cli(capsys, logs.uri, "--via-lambda", "shipper", "--jobs", "1")
        assert first.status == cli.EXIT_FAILED, first.err
        assert "1 not queued (the errors above say why); to queue it once" in first.err
        commands = printed_resume_commands(first.err)
        assert [command[1] for command in commands] == [f"s3://{logs.bucket}/{refused}"]
        stub.refused_keys.clear()
        run_resume_commands(capsys, commands)
        invoked = Counter(call.payload["key"] for call in stub.calls)
    # Together, every object queued exactly once.
    assert invoked == Counter(list(logs.objects))


def archive(moto: MotoServer, logs: Prefix, key: str, storage_class: StorageClassType) -> None:
    """Move ``key`` into ``storage_class`` as a lifecycle rule does (its ETag stays)."""
    moto.client().copy_object(
        Bucket=logs.bucket,
        Key=key,
        CopySource={"Bucket": logs.bucket, "Key": key},
        StorageClass=storage_class,
    )


def test_a_dry_run_marks_the_archived_objects(
    capsys: pytest.CaptureFixture[str], moto: MotoServer
) -> None:
    logs = new_day_of_logs(moto, "archived-plan", 4)
    keys = sorted(logs.objects)
    archive(moto, logs, keys[0], "GLACIER")
    archive(moto, logs, keys[2], "DEEP_ARCHIVE")
    archive(moto, logs, keys[3], "GLACIER_IR")  # read as any other
    run = run_cli(capsys, logs.uri, "--dry-run")
    assert run.status == cli.EXIT_OK, run.err
    marks = {line.split()[1]: line.split("  (")[1:] for line in run.out.splitlines()[:-1]}
    uri = f"s3://{logs.bucket}/"
    assert marks == {
        uri + keys[0]: ["archived in GLACIER: read only if restored)"],
        uri + keys[1]: [],
        uri + keys[2]: ["archived in DEEP_ARCHIVE: read only if restored)"],
        uri + keys[3]: [],
    }
    assert run.out.splitlines()[-1].startswith(
        "would ship 4 objects (2 archived: GLACIER: 1; DEEP_ARCHIVE: 1; S3 reads them only once "
        "restored), "
    )
    # An object named alone is looked up, not listed: its HEAD says whether it is restored.
    run = run_cli(capsys, uri + keys[2], "--dry-run")
    assert run.out.splitlines()[0].endswith("  (archived in DEEP_ARCHIVE: read only if restored)")
    moto.client().restore_object(Bucket=logs.bucket, Key=keys[2], RestoreRequest={"Days": 1})
    run = run_cli(capsys, uri + keys[2], "--dry-run")
    assert run.out.splitlines()[0].endswith(keys[2])


def test_archived_objects_are_counted_once_with_how_to_restore_them_and_resumed_together(
    capsys: pytest.CaptureFixture[str], moto: MotoServer
) -> None:
    # A backfill over logs a lifecycle rule archived met them one by one: a line each, then one
    # resume command each (a month of a busy ALB archived: 8,000 commands to run one by one) and
    # no word of how many were archived or how to restore them all.
    logs = new_day_of_logs(moto, "archived-run", 8)
    keys = sorted(logs.objects)
    classes: list[StorageClassType] = ["GLACIER", "DEEP_ARCHIVE", "GLACIER"] * 2
    for key, storage_class in zip(keys[1:7], classes, strict=True):
        archive(moto, logs, key, storage_class)
    with JsonLinesReceiver() as receiver:
        to = f"tcp://127.0.0.1:{receiver.port}"
        first = run_cli(capsys, logs.uri, "--to", to, "--jobs", "2", "--quiet")
        assert first.status == cli.EXIT_FAILED, first.err
        assert "Traceback" not in first.err
        assert first.err.count("is archived in") == 6, first.err  # one line an object
        assert (
            f"{cli.PROG}: 6 objects are archived (GLACIER: 4; DEEP_ARCHIVE: 2) and were not read: "
            "S3 reads them only once restored (aws s3api restore-object, or S3 Batch "
            "Operations for many); restore them, then run the commands below\n"
        ) in first.err
        commands = printed_resume_commands(first.err)
        uris = [f"s3://{logs.bucket}/{key}" for key in keys[1:7]]
        assert commands == [["ship", *uris, "--to", to, "--jobs", "2", "--quiet"]], first.err
        for key in keys[1:7]:
            moto.client().restore_object(Bucket=logs.bucket, Key=key, RestoreRequest={"Days": 1})
        run_resume_commands(capsys, commands)
        receiver.wait_idle()
        got = received(receiver.events)
    # Together, every line exactly once.
    assert got == expected_lines(logs, set(logs.objects))


def test_one_archived_object_is_said_in_the_singular(
    capsys: pytest.CaptureFixture[str], moto: MotoServer
) -> None:
    # "1 object is archived (GLACIER: 1) and were not read: ...; restore them".
    logs = new_day_of_logs(moto, "archived-one", 2)
    archive(moto, logs, sorted(logs.objects)[1], "GLACIER")
    run = run_cli(capsys, logs.uri, "--to", "-", "--quiet")
    assert run.status == cli.EXIT_FAILED, run.err
    assert (
        f"{cli.PROG}: 1 object is archived (GLACIER: 1) and was not read: S3 reads it only once "
        "restored (aws s3api restore-object, or S3 Batch Operations for many); restore it, then "
        "run the commands below\n"
    ) in run.err


def overwrite_when_read(
    logs: Prefix, *, read: str, overwritten: str, stored: dict[str, Stored]
) -> Callable[[str], None]:
    """A ``FaultyS3`` ``before_read`` hook: when ``read`` is first read, ``overwritten`` gets
    new content (kept in ``stored``), after the listing named it with its old ETag."""

    def overwrite(key: str) -> None:
        if key == read and not stored:
            stored[overwritten] = put(
                logs.bucket, overwritten, list(alb_lines(5, seed=99)), compress=True
            )

    return overwrite


def test_an_object_overwritten_after_the_listing_is_given_a_command_that_ships_it_as_it_is_now(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    # A backfill reads each object pinned to the ETag its listing gave. One overwritten between
    # the listing and its read (a re-encryption by copy in place, a re-upload: a month's
    # backfill takes hours) was rejected: no command shipped it, and the run's own advice spoke
    # of hand-written events. Its content as it is now was shipped by nothing.
    logs = new_day_of_logs(moto, "changed-after-listing", 4)
    keys = sorted(logs.objects)
    stored: dict[str, Stored] = {}
    overwrite = overwrite_when_read(logs, read=keys[0], overwritten=keys[2], stored=stored)

    with (
        FaultyS3(moto, before_read=overwrite) as faulty,
        JsonLinesReceiver() as receiver,
    ):
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        to = f"tcp://127.0.0.1:{receiver.port}"
        first = run_cli(capsys, logs.uri, "--to", to, "--jobs", "1", "--quiet")
        assert first.status == cli.EXIT_FAILED, first.err
        assert (
            "changed while the command ran (overwritten, a version deleted), not shipped whole: "
            in (first.err)
        )
        commands = printed_resume_commands(first.err)
        uri = f"s3://{logs.bucket}/{keys[2]}"
        assert commands == [["ship", uri, "--to", to, "--jobs", "1", "--quiet"]], first.err
        run_resume_commands(capsys, commands)
        receiver.wait_idle()
        got = received(receiver.events)
    # Every line of the objects as they were read, the overwritten one as it is now, once.
    logs.objects.update(stored)
    assert got == expected_lines(logs, set(logs.objects))


def test_a_run_stopped_after_an_object_changed_counts_it_among_those_not_shipped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    # A run that stopped (credentials refused) after an object had changed since its listing
    # printed a command for the changed object but counted it nowhere: "2 objects were not
    # shipped", then commands naming three.
    logs = new_day_of_logs(moto, "changed-then-stopped", 4)
    keys = sorted(logs.objects)
    overwrite = overwrite_when_read(logs, read=keys[0], overwritten=keys[1], stored={})

    with FaultyS3(
        moto, before_read=overwrite, error=(400, "ExpiredToken"), error_keys=frozenset(keys[2:3])
    ) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        run = run_cli(capsys, logs.uri, "--to", "-", "--jobs", "1", "--quiet")
    assert run.status == cli.EXIT_FAILED, run.err
    assert "changed while the command ran" in run.err
    commands = printed_resume_commands(run.err)
    named = [word for command in commands for word in command if word.startswith("s3://")]
    assert len(named) == 3, commands  # the changed object, the refused one, the one not tried
    assert (
        "stopped because S3 refused the credentials (the error above says why); 3 objects were "
        "not shipped: renew them, then run:"
    ) in run.err


def test_via_lambda_queues_no_archived_object_that_is_not_restored(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    # The function cannot read an archived object: each was invoked, failed, was retried and
    # dead-lettered, and a backfill over a year that a lifecycle rule archived made as many
    # dead letters as objects. Restored ones read as any other.
    logs = new_day_of_logs(moto, "archived-lambda", 5)
    keys = sorted(logs.objects)
    archive(moto, logs, keys[0], "GLACIER")  # first: it must not stop the run
    archive(moto, logs, keys[2], "DEEP_ARCHIVE")
    moto.client().restore_object(Bucket=logs.bucket, Key=keys[2], RestoreRequest={"Days": 1})
    with LambdaStub(functions={"shipper"}) as stub:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", stub.endpoint_url)
        first = run_cli(capsys, logs.uri, "--via-lambda", "shipper", "--jobs", "1")
        assert first.status == cli.EXIT_FAILED, first.err
        assert (
            f"s3://{logs.bucket}/{keys[0]}: not queued: archived in GLACIER, not restored: S3 "
            "reads it only once restored (aws s3api restore-object)"
        ) in first.err
        assert "queued 4 objects (" in first.err
        assert "; 1 not queued, 0 skipped, 0 not tried" in first.err
        assert Counter(call.payload["key"] for call in stub.calls) == Counter(keys[1:])
        commands = printed_resume_commands(first.err)
        assert [command[1] for command in commands] == [f"s3://{logs.bucket}/{keys[0]}"]

        # Restored, the printed command queues it alone.
        moto.client().restore_object(Bucket=logs.bucket, Key=keys[0], RestoreRequest={"Days": 1})
        run_resume_commands(capsys, commands)
        invoked = Counter(call.payload["key"] for call in stub.calls)
    assert invoked == Counter(keys)


def test_ctrl_c_after_an_invocation_not_queued_prints_a_command_that_queues_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    logs = new_day_of_logs(moto, "not-queued")
    refused = sorted(logs.objects)[1]
    # Lambda refuses one invocation (a conflict boto3 does not retry); the others answer slowly
    # enough for Ctrl-C to come part-way.
    with LambdaStub(functions={"shipper"}, refused_keys={refused}, delay=0.05) as stub:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", stub.endpoint_url)
        argv = ["ship", logs.uri, "--via-lambda", "shipper", "--jobs", "1"]
        first = interrupt_command(argv, os.environ, when=lambda: len(stub.calls) >= 5)
        assert f"{refused}: not queued: ResourceConflictException" in first.err
        resumes = resumes_retrying(first, f"s3://{logs.bucket}/{refused}")

        stub.refused_keys.clear()
        stub.delay = 0
        run_resume_commands(capsys, resumes)
        invoked = Counter(call.payload["key"] for call in stub.calls)
    # Together, every object queued exactly once.
    assert invoked == Counter(list(logs.objects))


# Listing by date gives what the full listing and the filter give.

ELB = "elasticloadbalancing"
TRICKY_KEYS = [
    f"AWSLogs/{ACCOUNT}/ELBAccessLogTestFile",
    f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2024/03/06/{ACCOUNT}_CloudTrail_{REGION}_x.json.gz",
    f"AWSLogs/{ACCOUNT}/{ELB}/readme.txt",
    f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/notes.txt",
    f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/02/30/{ACCOUNT}_{ELB}_{REGION}_lb_20240301T0000Z_ip_a.log",
    f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/13/01/{ACCOUNT}_{ELB}_{REGION}_lb_20240101T0000Z_ip_a.log",
    f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/24/03/06/{ACCOUNT}_{ELB}_{REGION}_lb_20240306T0000Z_ip_a.log",
    f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/3/06/{ACCOUNT}_{ELB}_{REGION}_lb_20240306T0000Z_ip_a.log",
    f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/03/06/not-an-elb-name.txt",
    # Not ELB's: not in the date range for the filter either (no yyyy/mm/dd/<file> at the end).
    f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/03/06/sub/{ACCOUNT}_{ELB}_{REGION}_lb_x.log",
    # Outside any AWSLogs/ folder, for a listing above it to find in order among them.
    "a.txt",
    "team/AWSLogs",
    "team/notes.txt",
    f"team/xAWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/03/06/{ACCOUNT}_{ELB}_{REGION}_lb_x.log",
]


NESTED = ["AWSLogs/backup/", "team/AWSLogs/copy/"]


def dated_key(account: str, region: str, day: str, n: int = 0, root: str = "") -> str:
    end = day.replace("/", "") + "T0005Z"
    return (
        f"{root}AWSLogs/{account}/{ELB}/{region}/{day}/"
        f"{account}_{ELB}_{region}_app.web.50dc6c495c0c9188_{end}_10.0.1.7_{n:05d}.log.gz"
    )


@pytest.fixture(scope="module")
def tricky(moto: MotoServer) -> str:
    """A bucket of ELB keys over accounts, regions, month and year ends, a prefix before
    AWSLogs/, and keys that only look dated."""
    bucket = moto.new_bucket("by-date")
    keys = list(TRICKY_KEYS)
    days = ["2023/12/31", "2024/01/01", "2024/02/29", "2024/03/05", "2024/03/06", "2024/03/07"]
    for account in (ACCOUNT, "210987654321"):
        for region in (REGION, "eu-west-1"):
            keys += [dated_key(account, region, day, n) for day in days for n in range(2)]
    keys += [dated_key(ACCOUNT, REGION, day, root="team/") for day in days]
    # Copies in a folder of someone's making below AWSLogs/: the key's last AWSLogs/ dates it.
    keys += [dated_key(ACCOUNT, REGION, "2024/03/06", root=root) for root in NESTED]
    for key in keys:
        s3_backends[DEFAULT_ACCOUNT_ID]["aws"].put_object(bucket, key, b"x\n")
    return bucket


Case = tuple[str, str | None, str | None, str | None]


def day(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


@pytest.mark.parametrize(
    "case",  # prefix, --since, --until, --start-after
    [
        ("AWSLogs/", "2024-03-06", None, None),
        ("AWSLogs/", "2024-01-01", "2024-02-29", None),
        ("AWSLogs/", None, "2024-01-01", None),
        ("AWSLogs/", "2024-03-01", "2024-03-31", f"AWSLogs/{ACCOUNT}/{ELB}/eu-west-1/2024/03/06/"),
        ("AWSLogs/", "2023-12-31", None, dated_key(ACCOUNT, REGION, "2024/03/05", 1)),
        (f"AWSLogs/{ACCOUNT}/", "2024-02-29", "2024-03-06", None),
        (f"AWSLogs/{ACCOUNT}/{ELB}/", "2024-03-06", "2024-03-06", None),
        (f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/", "2024-01-01", None, None),
        (f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/", "2024-02-01", "2024-03-05", None),
        (f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/03/", "2024-03-06", None, None),
        (f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/0", "2024-03-06", None, None),
        (f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2023/", "2024-01-01", None, None),
        (f"AWSLogs/{ACCOUNT}/{ELB}/eu-", "2024-03-07", None, None),
        ("AWSLogs/2109", "2024-03-07", None, None),
        ("team/AWSLogs/", "2024-02-29", "2024-03-06", None),
        # Above AWSLogs/: the bucket root, ELB's own prefix, or part of either.
        ("", "2024-03-06", None, None),
        ("", "2024-02-29", "2024-03-06", dated_key(ACCOUNT, REGION, "2024/03/05", 1)),
        ("", "2024-01-01", None, "b"),
        ("", "2024-01-01", None, "team/AWSLogs"),
        ("", "2024-01-01", None, "team/AWSLogs/"),
        ("", None, "2024-01-01", dated_key(ACCOUNT, REGION, "2024/01/01", 0, root="team/")),
        ("team/", "2024-02-29", "2024-03-06", None),
        ("te", "2024-03-06", None, None),
        # Cut inside the name `AWSLogs/`, which the delimiter then cannot find: listed whole.
        ("AWSLogs", "2024-03-06", None, None),
        ("AWS", "2024-03-05", "2024-03-05", None),
        # Below AWSLogs/, a folder that is no account: its own AWSLogs/ folders are found.
        ("AWSLogs/backup/", "2024-03-06", None, None),
        ("AWSLogs/bac", "2024-03-06", None, None),
        ("AWSLogs/", "2024-03-06", None, f"AWSLogs/{ACCOUNT}/"),
        ("team/AWSLogs/", "2024-03-06", "2024-03-06", None),
    ],
)
def test_listing_by_date_equals_listing_all_then_filtering(
    moto: MotoServer, tricky: str, case: Case
) -> None:
    bucket = tricky
    prefix, since, until, start_after = case
    s3 = moto.client()
    dates = DateRange(day(since), day(until))
    walked = list_dated(s3, bucket, prefix, dates, start_after)
    assert walked is not None
    expected = [
        ref.key
        for ref in list_prefix(s3, bucket, prefix, start_after)
        if dates.exclusion(ref.key) is None
    ]
    assert [ref.key for ref in walked] == expected


def test_a_resumed_walk_lists_no_day_before_the_resume_point(
    moto: MotoServer, tricky: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="werkzeug")
    start_after = dated_key(ACCOUNT, REGION, "2024/03/06", 0)
    dates = DateRange(dt.date(2023, 12, 31))
    walked = list_dated(moto.client(), tricky, f"AWSLogs/{ACCOUNT}/", dates, start_after)
    assert walked is not None
    assert [ref.key for ref in walked][:1] == [dated_key(ACCOUNT, REGION, "2024/03/06", 1)]
    listed = [
        urllib.parse.unquote(found[1])
        for record in caplog.records
        if (found := re.search(r"[?&]prefix=([^&\s]+)", record.getMessage()))
    ]
    days = [prefix for prefix in listed if prefix.count("/") == 7]
    assert days == [f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/03/{day}/" for day in ("06", "07")]


def test_the_compared_listings_are_not_empty(moto: MotoServer, tricky: str) -> None:
    # Otherwise the equality above could hold for nothing.
    dates = DateRange(dt.date(2024, 2, 29), dt.date(2024, 3, 6))
    walked = list_dated(moto.client(), tricky, "AWSLogs/", dates, None)
    assert walked is not None
    # Accounts, regions, days (02/29, 03/05 and 03/06) and objects a day; and the odd file in
    # 03/06, which its folder dates; not 02/30, 2024/3/06 or the sub-folder; and the copy
    # under AWSLogs/backup/AWSLogs/.
    assert len(list(walked)) == 2 * 2 * 3 * 2 + 1 + 1
    # From the bucket root, the same, the three days under team/AWSLogs/, and its copy.
    walked = list_dated(moto.client(), tricky, "", dates, None)
    assert walked is not None
    assert len(list(walked)) == 2 * 2 * 3 * 2 + 1 + 1 + 3 + 1


@pytest.mark.parametrize(
    ("prefix", "since"),
    [
        ("AWSLogs/", None),  # no date bound: nothing to narrow
        ("", None),
        (f"AWSLogs/{ACCOUNT}/{ELB}/{REGION}/2024/03/06/", "2024-03-06"),  # a day: list it
    ],
)
def test_listing_by_date_declines_what_it_cannot_narrow(
    moto: MotoServer, tricky: str, prefix: str, since: str | None
) -> None:
    bucket = tricky
    dates = DateRange(day(since))
    assert list_dated(moto.client(), bucket, prefix, dates, None) is None


# S3 answers a busy prefix with 503 SlowDown for a while, three times in a row here: past
# botocore's default of 3 attempts, within the command's 8. A listing that gave up ended the whole
# backfill with exit 2 ("check the bucket name, the credentials and their s3:ListBucket
# permission"); reads are throttled too (each object's first three GETs), in the command's
# process or each worker's (two jobs), and fail no object.
THROTTLED: dict[str, dict[str, Any]] = {
    "listing": {"listing_error": (503, "SlowDown"), "listing_errors_left": 3},
    "reads": {"error": (503, "SlowDown"), "error_times": 3},
}


@pytest.mark.parametrize("throttled", list(THROTTLED))
def test_throttled_s3_is_retried_past_botocores_default(
    capsys: pytest.CaptureFixture[str],
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    throttled: str,
) -> None:
    logs = new_day_of_logs(moto, f"throttled-{throttled}", 2)
    with FaultyS3(moto, **THROTTLED[throttled]) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        run = run_cli(capsys, logs.uri, "--to", "-", "--jobs", "2", "--quiet")
    assert run.status == cli.EXIT_OK, run.err
    assert received(stdout_events(run.out)) == expected_lines(logs, set(logs.objects))
    if throttled == "reads":
        # Each key asked no more than the retries need: four GETs, not a storm.
        assert faulty.errors_answered == Counter(dict.fromkeys(logs.objects, 4))


def test_a_prefix_without_its_slash_is_listed_when_only_reading_it_is_denied(
    capsys: pytest.CaptureFixture[str], moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A least-privilege policy grants s3:GetObject on AWSLogs/* and s3:ListBucket: the HEAD of
    # the key `AWSLogs` is denied, which planned it as one object (denied when read) instead
    # of the prefix that the listing would have found.
    logs = new_day_of_logs(moto, "head-denied", 3)
    source = f"s3://{logs.bucket}/AWSLogs"
    denied = frozenset({"AWSLogs"})
    with FaultyS3(moto, error=(403, "AccessDenied"), error_keys=denied) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        run = run_cli(capsys, source, "--to", "-", "--quiet")
    assert run.status == cli.EXIT_OK, run.err
    assert received(stdout_events(run.out)) == expected_lines(logs, set(logs.objects))


@pytest.mark.parametrize("may_list", [True, False], ids=["with ListBucket", "without"])
def test_a_named_key_denied_blames_the_read_grant_and_counts_as_a_failed_object(
    capsys: pytest.CaptureFixture[str],
    prefix: Prefix,
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    may_list: bool,
) -> None:
    key = next(iter(prefix.objects))
    denied = (403, "AccessDenied")
    with FaultyS3(moto, error=denied, listing_error=None if may_list else denied) as denying:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", denying.endpoint_url)
        run = run_cli(capsys, f"s3://{prefix.bucket}/{key}", "--to", "-")
    assert run.status == cli.EXIT_FAILED, run.err
    assert f"access to s3://{prefix.bucket}/{key} is denied (AccessDenied): grant" in run.err
    assert "s3:GetObject" in run.err
    assert "cannot list" not in run.err


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_throttled_reads_are_said_on_the_progress_line_until_a_read_succeeds(
    capsys: pytest.CaptureFixture[str], moto: MotoServer, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    # S3 throttled the reads for seconds of botocore's back-off, and the progress line said
    # nothing of it until its one-minute "no progress" note. Only the first object is
    # throttled: the progress lines drawn while the later ones ship have no note.
    logs = new_day_of_logs(moto, f"throttle-note-{jobs}", 6)
    first = sorted(logs.objects)[0]
    with FaultyS3(
        moto, error=(503, "SlowDown"), error_keys=frozenset({first}), error_times=3
    ) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        run = run_cli(
            capsys, logs.uri, "--to", "-", "--jobs", jobs, "--quiet", "--progress-every", "0.02"
        )
    assert run.status == cli.EXIT_OK, run.err
    progress = [line for line in run.err.splitlines() if line.startswith("progress:")]
    noted = [
        i
        for i, line in enumerate(progress)
        if "; S3 throttles reads (SlowDown); retrying (attempt " in line
    ]
    assert noted, run.err
    # Cleared once the read succeeded: the lines drawn after, while the rest shipped, have none.
    assert noted[-1] < len(progress) - 1, run.err
    assert not any("S3 throttles" in line for line in progress[noted[-1] + 1 :]), run.err
