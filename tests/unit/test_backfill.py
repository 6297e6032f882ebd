"""Pure parts of the backfill: date filter, resume command, fan-out, progress line."""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import io
import sys
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from hypothesis import given
from hypothesis import strategies as st

from elb_log_shipper.backfill import (
    DateRange,
    ListingError,
    ListingUnavailableError,
    PlannedObject,
    _listing_errors,
    fan_out,
    parse_s3_uri,
)
from elb_log_shipper.cli import _resume_offset, build_parser, resume_commands, ship_parser
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.progress import Progress, Snapshot, render
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.report import ObjectResult, Outcome

FOLDER = "AWSLogs/123456789012/elasticloadbalancing/us-east-1"
D = dt.date


def key_on(day: str) -> str:
    name = "123456789012_elasticloadbalancing_us-east-1_lb_20240301T0005Z_1.2.3.4_x.log"
    return f"{FOLDER}/{day}/{name}"


@pytest.mark.parametrize(
    ("since", "until", "key", "reason"),
    [
        (None, None, "no/date/here.log", None),  # no filter: everything is in
        (D(2024, 3, 2), D(2024, 3, 3), key_on("2024/03/02"), None),  # lower bound, inclusive
        (D(2024, 3, 2), D(2024, 3, 3), key_on("2024/03/03"), None),  # upper bound, inclusive
        (D(2024, 3, 2), D(2024, 3, 3), key_on("2024/03/01"), "delivered before --since"),
        (D(2024, 3, 2), D(2024, 3, 3), key_on("2024/03/04"), "delivered after --until"),
        (D(2024, 3, 2), None, key_on("2031/12/31"), None),
        (None, D(2024, 3, 2), key_on("2024/03/02"), None),
        (D(2024, 3, 2), None, "no/date/here.log", "no yyyy/mm/dd delivery date in the key"),
        (
            D(2024, 3, 2),
            None,
            f"{FOLDER}/2024/02/30/x.log",
            "no yyyy/mm/dd delivery date in the key",
        ),
        (
            None,
            D(2024, 3, 2),
            "AWSLogs/123456789012/ELBAccessLogTestFile",
            "no yyyy/mm/dd delivery date in the key",
        ),
    ],
)
def test_date_range(since: D | None, until: D | None, key: str, reason: str | None) -> None:
    assert DateRange(since, until).exclusion(key) == reason


@given(*[st.dates(min_value=D(1000, 1, 1))] * 3)  # keys spell years with four digits
def test_date_range_is_the_inclusive_interval(since: D, until: D, day: D) -> None:
    if since > until:
        with pytest.raises(ConfigurationError):
            DateRange(since, until)
        return
    inside = DateRange(since, until).exclusion(key_on(day.strftime("%Y/%m/%d"))) is None
    assert inside == (since <= day <= until)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b/", ("b", "")),
        ("s3://b", ("b", "")),
        ("s3://b/p/k", ("b", "p/k")),
        (
            "s3://arn:aws:s3:eu-west-1:123456789012:accesspoint:elb-logs/AWSLogs/",
            ("arn:aws:s3:eu-west-1:123456789012:accesspoint:elb-logs", "AWSLogs/"),
        ),
    ],
)
def test_parse_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert parse_s3_uri(uri) == expected


def test_parse_s3_uri_needs_a_bucket() -> None:
    with pytest.raises(ConfigurationError, match="use s3://bucket"):
        parse_s3_uri("s3:///key")


# The resume command.


def planned(source: int, key: str, *, listed: bool = True) -> PlannedObject:
    return PlannedObject(ObjectRef("b", key), source, listed=listed)


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_resume_one_prefix_with_start_after_the_last_key_done() -> None:
    options = ["--to", "-", "--since", "2024-03-01", "--quiet"]
    argv = ["ship", "s3://b/p/", *options, "--start-after", "p/0"]
    objects = [planned(0, "p/1"), planned(0, "p/2"), planned(0, "p/3")]
    assert resume_commands(parse(argv), objects, 2) == [
        ["ship", "s3://b/p/", *options, "--start-after=p/2"]
    ]


def test_resume_after_a_key_that_starts_with_a_dash_parses_back() -> None:
    # `--start-after -a.log` would read `-a.log` as an option: the command printed to resume
    # after such a key (an S3 prefix's, a file's) did not run.
    argv = ["ship", "s3://b/", "--to", "-"]
    objects = [planned(0, "-a.log"), planned(0, "-b.log")]
    (resumed,) = resume_commands(parse(argv), objects, 1)
    assert parse(resumed).start_after == "-a.log"


def test_resume_before_anything_of_the_prefix_keeps_the_given_start_after() -> None:
    argv = ["ship", "--start-after=p/0", "s3://b/p/", "--to", "tcp://h:1"]
    objects = [planned(0, "p/1")]
    assert resume_commands(parse(argv), objects, 0) == [
        ["ship", "s3://b/p/", "--to", "tcp://h:1", "--start-after=p/0"]
    ]


def test_resume_names_archived_objects_a_hundred_to_a_command() -> None:
    # Thousands of archived objects were a command each, one object failed part-way keeps its own.
    argv = ["ship", "s3://b/p/", "--to", "-"]
    objects = [planned(0, f"p/{n:03d}") for n in range(251)]
    commands = resume_commands(parse(argv), objects, 251, [(objects[0], 7)], objects[1:])
    assert commands[0] == ["ship", "s3://b/p/000", "--to", "-", "--start-offset", "7"]
    assert [len(command) - 3 for command in commands[1:]] == [100, 100, 50]
    assert [uri for command in commands[1:] for uri in command[1:-2]] == [
        obj.ref.uri for obj in objects[1:]
    ]
    assert all(parse(command).to == "-" for command in commands)


def test_resume_drops_finished_sources_and_splits_a_prefix_from_the_rest() -> None:
    argv = ["ship", "s3://b/one", "s3://b/p/", "./dir", "--to", "-"]
    objects = [
        planned(0, "one", listed=False),
        planned(1, "p/1"),
        planned(1, "p/2"),
        PlannedObject(ObjectRef.local("./dir/x.log"), 2, listed=True),
    ]
    assert resume_commands(parse(argv), objects, 2) == [
        ["ship", "s3://b/p/", "--to", "-", "--start-after=p/1"],
        ["ship", "./dir", "--to", "-"],
    ]
    # A source whose first object was not done is named again whole.
    assert resume_commands(parse(argv), objects, 1) == [["ship", "s3://b/p/", "./dir", "--to", "-"]]


START = 100  # the object's own --start-offset


@pytest.mark.parametrize(
    ("result", "offset"),
    [
        (ObjectResult(ObjectRef("b", "k", start_offset=START)), None),
        (ObjectResult(ObjectRef("b", "k"), Outcome.SKIPPED), None),
        # Reading it again cannot help.
        (ObjectResult(ObjectRef("b", "k"), Outcome.REJECTED, offset_sent=300), None),
        # Stopped part-way by Ctrl-C (at its first line, too).
        (ObjectResult(ObjectRef("b", "k"), Outcome.HANDED_OFF, next_offset=0), 0),
        (ObjectResult(ObjectRef("b", "k"), Outcome.HANDED_OFF, next_offset=4096), 4096),
        # A read that failed part-way: its lines before the fault were shipped.
        (
            ObjectResult(ObjectRef("b", "k", start_offset=START), Outcome.FAILED, offset_sent=300),
            300,
        ),
        # One that failed to open shipped nothing: it goes on from its own start.
        (ObjectResult(ObjectRef("b", "k", start_offset=START), Outcome.FAILED), START),
        # Logstash failed: only what it confirmed counts.
        (
            ObjectResult(
                ObjectRef("b", "k", start_offset=START),
                Outcome.FAILED,
                offset_sent=900,
                next_offset=500,
                delivery_failed=True,
            ),
            500,
        ),
        (
            ObjectResult(
                ObjectRef("b", "k", start_offset=START),
                Outcome.FAILED,
                offset_sent=900,
                delivery_failed=True,
            ),
            START,
        ),
    ],
    ids=[
        "shipped",
        "skipped",
        "rejected",
        "stopped-at-start",
        "stopped",
        "read-failed-part-way",
        "open-failed",
        "delivery-failed-part-confirmed",
        "delivery-failed-unconfirmed",
    ],
)
def test_resume_offset_is_the_first_line_not_shipped(
    result: ObjectResult, offset: int | None
) -> None:
    assert _resume_offset(result) == offset


# The fan-out.


def test_fan_out_hands_results_back_in_order_whatever_finishes_first() -> None:
    done: list[tuple[int, int]] = []

    def task(n: int) -> int:
        time.sleep(0.01 * (5 - n % 5))  # later items finish first
        return n * 10

    count = fan_out(
        list(range(20)), task, lambda i, r: done.append((i, r)), jobs=4, stop=threading.Event()
    )
    assert count == 20
    assert done == [(n, n * 10) for n in range(20)]


def test_fan_out_runs_the_first_item_alone_and_then_up_to_jobs() -> None:
    lock = threading.Lock()
    running = 0
    peaks: list[int] = []

    def task(n: int) -> int:
        nonlocal running
        with lock:
            running += 1
            peaks.append(running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return n

    fan_out(list(range(12)), task, lambda i, r: None, jobs=3, stop=threading.Event())
    assert peaks[0] == 1
    assert max(peaks) == 3


def test_fan_out_stops_starting_after_a_fatal_result() -> None:
    started: list[int] = []

    def task(n: int) -> int:
        started.append(n)
        return n

    done: list[int] = []
    count = fan_out(
        list(range(10)),
        task,
        lambda i, r: done.append(r),
        jobs=4,
        stop=threading.Event(),
        is_fatal=lambda r: r == 0,
    )
    assert count == 1
    assert started == done == [0]


def test_fan_out_stop_lets_running_items_finish() -> None:
    stop = threading.Event()
    done: list[int] = []

    def on_done(index: int, result: int) -> None:
        done.append(result)
        if index == 3:
            stop.set()

    count = fan_out(list(range(50)), lambda n: n, on_done, jobs=2, stop=stop)
    assert 4 <= count < 50
    assert done == list(range(count))


def test_fan_out_raises_a_task_error_on_the_calling_thread() -> None:
    def task(n: int) -> int:
        if n == 2:
            raise RuntimeError("boom")
        return n

    done: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        fan_out(list(range(5)), task, lambda i, r: done.append(r), jobs=2, stop=threading.Event())
    assert done[:2] == [0, 1]
    assert 2 not in done


# The progress line.


@pytest.mark.parametrize(
    ("snap", "expected"),
    [
        (
            Snapshot(0, 10, 0, 0, 1000, 0.0),
            "0/10 objects shipped, 0 lines, 0 B of 1000 B, 0 KiB/s",
        ),
        (
            Snapshot(5, 10, 1234, 512 * 1024, 1024 * 1024, 2.0, "queued"),
            "5/10 objects queued, 1,234 lines, 512.00 KiB of 1.00 MiB, 256 KiB/s, about 2 s left",
        ),
        (
            Snapshot(10, 10, 5, 1024, 1024, 1.0),
            "10/10 objects shipped, 5 lines, 1.00 KiB of 1.00 KiB, 1 KiB/s",
        ),
    ],
)
def test_render(snap: Snapshot, expected: str) -> None:
    assert render(snap) == expected


def test_failed_objects_are_not_counted_as_shipped() -> None:
    progress = Progress(io.StringIO(), objects=3, bytes_total=300, interactive=False)
    progress.object_done(100)
    progress.object_done(100, failed=True)
    assert render(progress.snapshot()).startswith("1/3 objects shipped, 1 failed, 0 lines, 200 B")


class _HeldStream(io.StringIO):
    """A stream whose first write waits for ``go`` (a terminal that is not being read)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.go = threading.Event()

    def write(self, text: str) -> int:
        if not self.writing.is_set():
            self.writing.set()
            self.go.wait(10)
        return super().write(text)


def test_two_threads_ticking_at_once_draw_the_progress_line_once() -> None:
    # fan_out's thread and the watcher thread both tick: both find a line due, and the one that
    # gets to draw second must find it drawn meanwhile, not print it again.
    now = [0.0]
    stream = _HeldStream()
    progress = Progress(
        stream, objects=1, bytes_total=10, interactive=False, interval=1.0, clock=lambda: now[0]
    )
    printing = threading.Thread(target=progress.print, args=("a line of its own",))
    printing.start()
    assert stream.writing.wait(10)  # print holds the drawing lock, in its write
    now[0] = 5.0  # a line is due
    ticking = [threading.Thread(target=progress.tick) for _ in range(2)]
    for thread in ticking:
        thread.start()
    source, first = inspect.getsourcelines(Progress.tick)
    at_the_lock = first + next(i for i, line in enumerate(source) if "with self._drawing" in line)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        frames = [sys._current_frames().get(thread.ident or 0) for thread in ticking]
        if all(f is not None and f.f_lineno == at_the_lock for f in frames):
            break  # both found the line due, and wait for the lock
        time.sleep(0.001)
    else:
        pytest.fail("the ticking threads did not reach the drawing lock")
    stream.go.set()
    for thread in (printing, *ticking):
        thread.join(10)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "a line of its own"
    assert [line for line in lines if line.startswith("progress: ")] == [lines[1]], lines


# Every option of `ship` gives a value here that is not its default; an option added to the
# parser without a row fails the test, so the resume command cannot drop it silently.
RESUME_SAMPLES = {
    "to": "tcp://h:1",
    "via_lambda": "fn",  # excludes --to: each gets a command of its own
    "since": "2024-03-01",
    "until": "2024-03-07",
    "dry_run": True,
    "any_key": True,
    "jobs": "3",
    "quiet": True,
    "progress_every": "2.5",
    "ca_file": "ca.pem",
    "client_cert": "c.pem",
    "client_key": "k.pem",
    "pool_size": "7",
    "no_original": True,
    "redact_query": "values",
    "client_ip": "truncate",
    "client_ip_hash_key_parameter": "/elb/key",
    "drop_user_agent_prefixes": "ELB-HealthChecker/,kube-probe/",
    "drop_methods": "OPTIONS",
    "drop_status": "2xx,304",
    "drop_path_prefixes": "/static/",
    "drop_path_suffixes": ".png",
    "start_offset": None,  # one object only, and a resume sets its own
}


def test_resume_options_round_trip_through_the_parser() -> None:
    actions = [a for a in ship_parser()._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in actions} - {"start_after"} == set(RESUME_SAMPLES)
    for left_out in ("via_lambda", "to"):
        argv = ["ship", "s3://b/p/"]
        for action in actions:
            if action.dest in (left_out, "start_after", "start_offset"):
                continue
            flag = next(s for s in action.option_strings if s.startswith("--"))
            value = RESUME_SAMPLES[action.dest]
            argv += [flag] if value is True else [flag, str(value)]
        argv += ["--start-after=p/0"]
        args = parse(argv)
        (resumed,) = resume_commands(args, [planned(0, "p/1")], 0)
        assert vars(parse(resumed)) == vars(args)
        # Every option the user gave, and only those, carries over.
        assert sorted(resumed) == sorted(argv)


def test_resume_ships_the_rest_of_each_object_stopped_part_way_then_the_objects_left() -> None:
    argv = ["ship", "s3://b/p/", "--to", "-", "--jobs", "2", "--start-offset=0"]
    objects = [planned(0, "p/1"), planned(0, "p/2"), planned(0, "p/3"), planned(0, "p/4")]
    stopped = [(objects[1], 4096), (objects[2], 512)]
    assert resume_commands(parse(argv), objects, 3, stopped) == [
        ["ship", "s3://b/p/2", "--to", "-", "--jobs", "2", "--start-offset", "4096"],
        ["ship", "s3://b/p/3", "--to", "-", "--jobs", "2", "--start-offset", "512"],
        ["ship", "s3://b/p/", "--to", "-", "--jobs", "2", "--start-after=p/3"],
    ]
    # Stopped in the last objects: nothing else is left.
    assert resume_commands(parse(argv), objects, 4, [(objects[3], 7)]) == [
        ["ship", "s3://b/p/4", "--to", "-", "--jobs", "2", "--start-offset", "7"]
    ]


@pytest.mark.parametrize(
    "claim",
    [
        "starts no new object",
        "stops the objects in progress at their next batch",
        "--start-offset",
        "--start-after",
        "130",
        "run them all and every line arrives",
    ],
)
def test_help_and_readme_say_the_same_of_ctrl_c(claim: str) -> None:
    # What `ship --help` says before its options, and the README's Backfill section.
    assert claim in (ship_parser().description or "")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert claim in " ".join(readme.split())  # wrapped: compare the words


@pytest.mark.parametrize(
    ("status", "code", "unavailable"),
    [
        (503, "SlowDown", True),
        (500, "InternalError", True),
        (503, "ServiceUnavailable", True),
        (400, "Throttling", True),
        (403, "AccessDenied", False),
        (404, "NoSuchBucket", False),
        (400, "InvalidArgument", False),
    ],
)
def test_a_listing_that_s3_throttled_says_to_wait_not_to_check_names_and_grants(
    status: int, code: str, unavailable: bool
) -> None:
    # A listing still throttled after the retries ended the command with exit 2 (a usage error)
    # and "check the bucket name, the credentials and their s3:ListBucket permission".
    answer = {
        "Error": {"Code": code, "Message": "-"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    with pytest.raises(ListingError) as caught, _listing_errors("logs", "AWSLogs/"):
        raise ClientError(answer, "ListObjectsV2")  # type: ignore[arg-type]
    assert isinstance(caught.value, ListingUnavailableError) is unavailable
    message = str(caught.value)
    assert message.startswith(f"cannot list s3://logs/AWSLogs/ ({code}): ")
    assert ("run the command again later" in message) is unavailable
    assert ("s3:ListBucket" in message) is not unavailable


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (EndpointConnectionError(endpoint_url="https://s3.example"), True),
        (ReadTimeoutError(endpoint_url="https://s3.example"), True),
        (NoCredentialsError(), False),
    ],
    ids=["no connection", "no answer", "no credentials"],
)
def test_a_listing_that_got_no_answer_is_no_usage_error(
    error: BotoCoreError, unavailable: bool
) -> None:
    # A stalled or unreachable endpoint, after the retries, ended the command with exit 2 (a
    # usage error); missing credentials still are one (the setup is wrong).
    with pytest.raises(ListingError) as caught, _listing_errors("logs", "AWSLogs/"):
        raise error
    assert isinstance(caught.value, ListingUnavailableError) is unavailable
    assert ("run the command again later" in str(caught.value)) is unavailable
