"""The Lambda handler on every trigger shape (the events/*.json files), against moto S3 and SQS
over HTTP on 127.0.0.1 and a json_lines receiver.

The helpers here (a Lambda context, a container, object generators, checks) are shared with
``test_reliability.py``.
"""

from __future__ import annotations

import bz2
import copy
import datetime as dt
import gzip
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

from elb_log_shipper import handler
from elb_log_shipper.config import ENV, MIN_DEADLINE_MARGIN
from elb_log_shipper.errors import ShipperError
from elb_log_shipper.framing import INFLATE_STEP_BYTES
from elb_log_shipper.pipeline import HANDOFF_RESERVE_SECONDS
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.samples import ALB_LINES, CLASSIC_LINES
from elb_log_shipper.triggers import make_continuation
from tests.support.damaged import damaged_gzip
from tests.support.faults import NeverReadingServer
from tests.support.lambda_events import dead_letter_record
from tests.support.lambda_harness import (
    ALB_KEY,
    ALB_TEMPLATE,
    CLASSIC_KEY,
    DAY,
    NOT_A_STALL_TIMEOUT,
    Container,
    FakeContext,
    alb_key,
    alb_lines,
    emf_documents,
    expected,
    joined,
    load_event,
    log_records,
    metric,
    offsets,
    pin_s3_record,
    put_lines,
    received,
    start_container,
    stop_container,
    store,
)
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import FaultyS3, MotoServer

pytestmark = pytest.mark.timeout(60)

# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def container(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer, logstash: JsonLinesReceiver
) -> Iterator[Container]:
    # The receiver is healthy: a pause of the test process must not pass for a stall, which
    # would rightly resend what the receiver may have read (duplicates these tests count).
    yield start_container(
        monkeypatch, moto, logstash.port, **{ENV.LOGSTASH_STALL_TIMEOUT: NOT_A_STALL_TIMEOUT}
    )
    stop_container()


ALB_DATA = [line.encode() for line in ALB_LINES]
CLASSIC_DATA = [line.encode() for line in CLASSIC_LINES]


@pytest.fixture
def sample_objects(moto: MotoServer) -> tuple[str, dict[str, dict[str, Any]]]:
    """A versioned bucket holding the two objects the events/*.json files name."""
    bucket = moto.new_bucket("elb-logs-example", versioned=True)
    stored = {
        ALB_KEY: store(moto, bucket, ALB_KEY, joined(ALB_DATA), compress=True),
        CLASSIC_KEY: store(moto, bucket, CLASSIC_KEY, joined(CLASSIC_DATA), compress=False),
    }
    return bucket, stored


def both_objects_event() -> dict[str, Any]:
    """events/s3-put.json with a second record, for the Classic object."""
    event = load_event("s3-put.json")
    second = copy.deepcopy(event["Records"][0])
    second["s3"]["object"]["key"] = quote_plus(CLASSIC_KEY, safe="/")
    event["Records"].append(second)
    return event


# ------------------------------------------------------------------------------------ triggers


def test_s3_notification_ships_every_line_of_every_record(
    container: Container,
    logstash: JsonLinesReceiver,
    sample_objects: tuple[str, dict[str, dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket, stored = sample_objects
    event = both_objects_event()
    for record in event["Records"]:
        pin_s3_record(record, bucket, stored)

    result = container.invoke(event)

    assert [o["outcome"] for o in result["objects"]] == ["shipped", "shipped"]
    assert set(received(logstash)) == expected(ALB_KEY, ALB_DATA) | expected(
        CLASSIC_KEY, CLASSIC_DATA
    )
    assert max(received(logstash).values()) == 1
    # event.id pins the version read: the one the notification named.
    version = stored[ALB_KEY]["VersionId"]
    assert all(
        o["version"] == stored[k]["VersionId"]
        for o, k in zip(result["objects"], (ALB_KEY, CLASSIC_KEY), strict=True)
    )
    assert version
    output = capsys.readouterr().out
    lines = len(ALB_DATA) + len(CLASSIC_DATA)
    assert metric(output, "LinesRead") == lines
    assert metric(output, "EventsSent") == lines
    assert metric(output, "ObjectsShipped") == 2
    assert metric(output, "ObjectsFailed") == 0
    # The samples are dated 2026-11-28 23:40; only a clock after that makes the lag positive.
    assert "LagSeconds" in next(d for d in emf_documents(output) if "LinesRead" in d)
    document = next(d for d in emf_documents(output) if "LinesRead" in d)
    assert document["environment"] == "test"
    assert document["service"] == "elb-log-shipper"
    # One structured line per object, with bucket, key and request id, never a log line.
    shipped = [r for r in log_records(caplog) if r["message"] == "object shipped"]
    assert {(r["bucket"], r["key"]) for r in shipped} == {(bucket, ALB_KEY), (bucket, CLASSIC_KEY)}
    assert all(r["function_request_id"] == "req-1" for r in shipped)
    assert not [r for r in log_records(caplog) if "GET http" in json.dumps(r)]


def test_an_object_is_not_handed_off_when_its_sqs_message_is_retried_for_another(
    container_for: Any,
    logstash: JsonLinesReceiver,
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One SQS message naming two objects, one handed off and one failed: the message is retried
    # whole, and each attempt sent one more continuation for the first, a chain each, every one
    # reading and shipping the rest of the object.
    container = container_for(logstash, **HAND_OFF_AT_ONCE)
    bucket = moto.new_bucket()
    denied, key = alb_key("denied"), alb_key("blank")
    store(moto, bucket, denied, joined(alb_lines(5)), compress=True)
    # Handed off inside its blank lines (as in test_a_run_of_blank_lines_is_handed_off_at_the_
    # deadline), after the denied one failed.
    store(moto, bucket, key, b"\n" * BLANK_BYTES + joined(alb_lines(20)), compress=True)
    records = [
        {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
         "s3": {"bucket": {"name": bucket}, "object": {"key": name}}}
        for name in (denied, key)
    ]  # fmt: skip
    event = {"Records": [sqs_record("m-1", json.dumps({"Records": records}))]}
    with FaultyS3(moto, error=(403, "AccessDenied"), error_keys=frozenset({denied})) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        result = container.invoke(event, budget=MIN_DEADLINE_MARGIN + BLANK_WORK_SECONDS)
    assert [o["outcome"] for o in result["objects"]] == ["failed", "failed"]
    assert "another object of its SQS message failed" in result["objects"][1]["error"]
    assert result["batchItemFailures"] == [{"itemIdentifier": "m-1"}]
    assert container.continuations() == []


def test_sqs_batch_of_s3_sns_and_test_event_messages(
    container: Container,
    logstash: JsonLinesReceiver,
    sample_objects: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    bucket, stored = sample_objects
    event = load_event("sqs-s3.json")
    plain, wrapped, _test_event = event["Records"]
    body = json.loads(plain["body"])
    pin_s3_record(body["Records"][0], bucket, stored)
    plain["body"] = json.dumps(body)
    envelope = json.loads(wrapped["body"])
    message = json.loads(envelope["Message"])
    pin_s3_record(message["Records"][0], bucket, stored)
    envelope["Message"] = json.dumps(message)
    wrapped["body"] = json.dumps(envelope)

    result = container.invoke(event)

    assert result["batchItemFailures"] == []
    assert [o["key"] for o in result["objects"]] == [ALB_KEY, CLASSIC_KEY]
    assert set(received(logstash)) == expected(ALB_KEY, ALB_DATA) | expected(
        CLASSIC_KEY, CLASSIC_DATA
    )


def test_eventbridge_object_created(
    container: Container, logstash: JsonLinesReceiver, moto: MotoServer
) -> None:
    bucket = moto.new_bucket("elb-logs-example")  # unversioned: the ETag pins the object
    stored = store(moto, bucket, ALB_KEY, joined(ALB_DATA), compress=True)
    event = load_event("eventbridge-object-created.json")
    event["detail"]["bucket"]["name"] = bucket
    obj = event["detail"]["object"]
    obj.update(etag=stored["ETag"], size=stored["size"])  # as EventBridge sends it

    result = container.invoke(event)

    assert result["objects"][0]["outcome"] == "shipped"
    assert result["objects"][0]["version"] == stored["ETag"]
    assert set(received(logstash)) == expected(ALB_KEY, ALB_DATA)


def test_sqs_continuation_resumes_at_its_offset(
    container: Container,
    logstash: JsonLinesReceiver,
    sample_objects: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    bucket, stored = sample_objects
    start = sorted(offsets(ALB_DATA))[2]
    event = load_event("sqs-continuation.json")
    body = json.loads(event["Records"][0]["body"])
    body.update(
        bucket=bucket,
        etag=stored[ALB_KEY]["ETag"],
        versionId=stored[ALB_KEY]["VersionId"],
        size=stored[ALB_KEY]["size"],
        offset=start,
    )
    event["Records"][0]["body"] = json.dumps(body)

    result = container.invoke(event)

    assert result["batchItemFailures"] == []
    assert result["objects"][0]["hop"] == 1
    assert set(received(logstash)) == expected(ALB_KEY, ALB_DATA, start)


def test_direct_invocation_with_a_continuation(
    container: Container,
    logstash: JsonLinesReceiver,
    moto: MotoServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What `elb-log-shipper ship --via-lambda` sends: no ETag, offset 0.
    bucket = moto.new_bucket()
    store(moto, bucket, CLASSIC_KEY, joined(CLASSIC_DATA), compress=False)

    result = container.invoke(make_continuation(ObjectRef(bucket, CLASSIC_KEY)))

    assert "batchItemFailures" not in result
    assert set(received(logstash)) == expected(CLASSIC_KEY, CLASSIC_DATA)
    # A backfill of old objects is not lag: no LagSeconds to set off the alarm.
    output = capsys.readouterr().out
    assert metric(output, "LinesRead") == len(CLASSIC_DATA)
    assert all("LagSeconds" not in document for document in emf_documents(output))


@pytest.mark.parametrize("name", ["s3-test-file.json", "s3-test-event.json"])
def test_test_file_and_test_event_are_skipped_quietly(
    container: Container,
    logstash: JsonLinesReceiver,
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = container.invoke(load_event(name))

    assert result == {"objects": []}
    assert logstash.connection_count == 0
    assert not [r for r in log_records(caplog) if r["level"] != "DEBUG"]


@pytest.mark.parametrize("name", ["ELBConnectionLogTestFile", "ELBHealthCheckLogTestFile"])
def test_the_test_files_of_connection_and_health_check_logs_are_skipped_quietly(
    container: Container,
    logstash: JsonLinesReceiver,
    moto: MotoServer,
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Enabling ALB connection logs writes AWSLogs/<account>/ELBConnectionLogTestFile, "not an
    # actual connection log file" (AWS, "Enable connection logs for your Application Load
    # Balancer", step 4); health check logs write ELBHealthCheckLogTestFile. The rule's prefix
    # matches them like any log, so the function receives their "Object Created" events.
    # The content here is a stand-in: AWS documents none, and no line of it is a log line.
    bucket = moto.new_bucket()
    key = f"AWSLogs/123456789012/{name}"
    store(moto, bucket, key, b"Enable ConnectionLog for ELB: my-alb\n", compress=False)
    event = load_event("eventbridge-object-created.json")
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"].update(key=key, size=37)

    result = container.invoke(event)

    assert result == {"objects": []}
    assert logstash.connection_count == 0
    assert not [r for r in log_records(caplog) if r["level"] != "DEBUG"]


def test_health_check_log_is_skipped_with_a_log_line(
    container: Container, logstash: JsonLinesReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    key = (
        f"{DAY}health_check_log_123456789012_elasticloadbalancing_us-east-1_"
        "app.my-alb.50dc6c495c0c9188_20261128T2340Z_10.0.1.7_2a3b4c5d.log.gz"
    )
    event = load_event("s3-test-file.json")
    event["Records"][0]["s3"]["object"]["key"] = quote_plus(key, safe="/")

    result = container.invoke(event)

    assert result == {"objects": []}
    assert logstash.connection_count == 0
    skipped = [r for r in log_records(caplog) if r["message"] == "object skipped"]
    assert skipped[0]["key"] == key
    assert "health check" in skipped[0]["reason"]


def test_unreadable_sqs_message_fails_alone(
    container: Container,
    logstash: JsonLinesReceiver,
    sample_objects: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    bucket, _ = sample_objects
    good = make_continuation(ObjectRef(bucket, CLASSIC_KEY))
    event = {
        "Records": [
            sqs_record("m-good", json.dumps(good)),
            sqs_record("m-bad", "this is not JSON"),
        ]
    }

    result = container.invoke(event)

    assert result["batchItemFailures"] == [{"itemIdentifier": "m-bad"}]
    assert set(received(logstash)) == expected(CLASSIC_KEY, CLASSIC_DATA)


def test_dead_letter_redrive_replays_the_failed_event(
    container: Container,
    logstash: JsonLinesReceiver,
    sample_objects: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    # Lambda's on-failure destination wraps the event; redriven to the queue, it ships again.
    bucket, stored = sample_objects
    failed = both_objects_event()
    for record in failed["Records"]:
        pin_s3_record(record, bucket, stored)
    dead_letter = dead_letter_record(failed)

    result = container.invoke({"Records": [sqs_record("m-dlq", json.dumps(dead_letter))]})

    assert result["batchItemFailures"] == []
    assert set(received(logstash)) == expected(ALB_KEY, ALB_DATA) | expected(
        CLASSIC_KEY, CLASSIC_DATA
    )


def test_a_dead_letter_of_an_sns_invocation_replays_through_the_continuation_queue(
    container: Container, logstash: JsonLinesReceiver, moto: MotoServer
) -> None:
    # NotificationTopicArn: SNS invoked the function, which failed; Lambda's on-failure record
    # went to the dead-letter queue, and the move task (docs/deploy.md) puts it on the queue.
    bucket = moto.new_bucket("elb-logs-example")
    store(moto, bucket, ALB_KEY, joined(ALB_DATA), compress=True)
    failed = edit_bucket_and_key("sns-s3.json", bucket, quote_plus(ALB_KEY, safe="/"))
    result = container.invoke(sqs_event_from(container, dead_letter_record(failed)))

    assert result["batchItemFailures"] == []
    assert [(o["key"], o["outcome"]) for o in result["objects"]] == [(ALB_KEY, "shipped")]
    assert set(received(logstash)) == expected(ALB_KEY, ALB_DATA)


def sqs_event_from(container: Container, *bodies: dict[str, Any]) -> dict[str, Any]:
    """The SQS event Lambda makes of ``bodies``, sent through a real (moto) queue and received
    from it, as the event source mapping does."""
    sqs = boto3.client("sqs", **container.moto.client_kwargs())
    queue_url = sqs.create_queue(QueueName=f"redrive-{time.monotonic_ns()}")["QueueUrl"]
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    messages = container.take_messages(queue_url)
    assert len(messages) == len(bodies)
    return {"Records": [sqs_record(m["MessageId"], m["Body"]) for m in messages]}


# ------------------------------------------------------------------------------------ lag


# A container with the least margin, invoked with a budget of just that margin, hands its object
# off at once: a slow Logstash or a large object does the same near the deadline.
HAND_OFF_AT_ONCE = {
    ENV.LOGSTASH_STALL_TIMEOUT: NOT_A_STALL_TIMEOUT,
    ENV.DEADLINE_MARGIN_SECONDS: f"{MIN_DEADLINE_MARGIN:g}",
}


def lag_reported(output: str) -> bool:
    return any("LagSeconds" in document for document in emf_documents(output))


@pytest.mark.parametrize("live", [True, False], ids=["notified", "backfilled"])
def test_the_hops_of_a_notified_object_report_lag_and_those_of_a_backfill_do_not(
    container_for: Any,
    logstash: JsonLinesReceiver,
    moto: MotoServer,
    capsys: pytest.CaptureFixture[str],
    live: bool,
) -> None:
    container = container_for(logstash, **HAND_OFF_AT_ONCE)
    bucket, key, lines = put_lines(moto, 50, "lag1")
    # An S3 notification, or what `ship --via-lambda` sends for an old object.
    first_event = (
        edit_bucket_and_key("s3-put.json", bucket, key)
        if live
        else make_continuation(ObjectRef(bucket, key))
    )
    first = container.invoke(first_event, budget=MIN_DEADLINE_MARGIN, late=True)
    assert first["objects"][0]["outcome"] == "handed_off"
    capsys.readouterr()
    (message,) = container.continuations()
    assert json.loads(message["Body"])["live"] is live

    hop = container.invoke({"Records": [sqs_record(message["MessageId"], message["Body"])]})

    assert hop["objects"][0]["outcome"] == "shipped"
    assert set(received(logstash)) == expected(key, lines)
    output = capsys.readouterr().out
    assert metric(output, "LinesRead") == len(lines)
    # The samples' lines are from 2026-11-28: an old object for the backfill, which would have
    # set off the lag alarm (LagSeconds over 1800 s for 15 minutes).
    assert lag_reported(output) is live


# A line dated ahead of the clock (year 9999, or any time after the object was read) is damage,
# not lag: it must neither make LagSeconds negative nor hide the age of the object's other lines.
# Each case: the lines' ages in seconds (negative: ahead of the clock; None: year 9999) and the
# lag expected, None for no LagSeconds at all.
FUTURE_LINES = [
    pytest.param([600, 600, None], 600, id="year-9999"),
    pytest.param([600, -3600, 600], 600, id="an-hour-ahead"),
    pytest.param([-60, 600], 600, id="a-minute-ahead"),
    pytest.param([None, -3600], None, id="only-future-lines"),
]


@pytest.mark.parametrize(("ages", "lag"), FUTURE_LINES)
def test_a_line_dated_in_the_future_is_not_lag(
    container: Container,
    moto: MotoServer,
    capsys: pytest.CaptureFixture[str],
    ages: list[int | None],
    lag: int | None,
) -> None:
    now = dt.datetime.now(dt.UTC)
    stamps = [
        "9999-12-31T23:59:59.999999Z"
        if age is None
        else (now - dt.timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for age in ages
    ]
    template = ALB_TEMPLATE.replace("2026-11-28T23:39:{second:02d}.{n:06d}Z", "{stamp}")
    lines = [template.format(stamp=stamp, n=n).encode() for n, stamp in enumerate(stamps)]
    bucket, key = moto.new_bucket(), alb_key("future")
    store(moto, bucket, key, joined(lines), compress=True)
    capsys.readouterr()

    result = container.invoke(edit_bucket_and_key("s3-put.json", bucket, key))
    elapsed = (dt.datetime.now(dt.UTC) - now).total_seconds()

    assert result["objects"][0]["outcome"] == "shipped"
    output = capsys.readouterr().out
    assert metric(output, "EventsSent") == len(lines)
    if lag is None:
        assert not lag_reported(output)
    else:
        # LagSeconds is rounded to the millisecond.
        assert lag <= metric(output, "LagSeconds") <= lag + elapsed + 0.001


# Blank lines give no line: before, the deadline was asked only when a line came out, so an
# object of them ran past it (to Lambda's kill) with nothing handed off.
BLANK_BYTES = 20 * 1024 * 1024
# Work time before the deadline margin: a few steps of inflation (1 MiB each) of the blank lines,
# far from all of them (some 3 s here).
BLANK_WORK_SECONDS = 1.0


def test_a_run_of_blank_lines_is_handed_off_at_the_deadline(
    container_for: Any, logstash: JsonLinesReceiver, moto: MotoServer
) -> None:
    container = container_for(
        logstash,
        **{
            ENV.LOGSTASH_STALL_TIMEOUT: NOT_A_STALL_TIMEOUT,
            ENV.DEADLINE_MARGIN_SECONDS: f"{MIN_DEADLINE_MARGIN:g}",
        },
    )
    bucket, key = moto.new_bucket(), alb_key("blank")
    lines = alb_lines(20)
    store(moto, bucket, key, b"\n" * BLANK_BYTES + joined(lines), compress=True)

    first = container.invoke(
        edit_bucket_and_key("s3-put.json", bucket, key),
        budget=MIN_DEADLINE_MARGIN + BLANK_WORK_SECONDS,
    )

    (report,) = first["objects"]
    assert report["outcome"] == "handed_off"
    # Stopped within the blank lines, after some steps of inflation, not at the first line.
    assert 0 < report["next_offset"] < BLANK_BYTES
    hops = 0
    while (messages := container.continuations()) and hops < 10:
        (message,) = messages
        container.invoke({"Records": [sqs_record(message["MessageId"], message["Body"])]})
        hops += 1
    assert hops >= 1
    assert received(logstash) == {(key, BLANK_BYTES + offset): 1 for offset in offsets(lines)}


def test_a_hand_off_that_sqs_does_not_answer_gives_up_within_the_reserve(
    container_for: Any,
    logstash: JsonLinesReceiver,
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The continuation is sent after the hard deadline, within HANDOFF_RESERVE_SECONDS of the
    # function's end. botocore's `max_attempts` counts retries, not attempts: SQS had three, not
    # the two the reserve was sized for.
    container = container_for(logstash, **HAND_OFF_AT_ONCE)
    bucket, key, _ = put_lines(moto, 50, "silent-sqs")
    with NeverReadingServer() as silent:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{silent.port}")
        started = time.monotonic()
        # The event fails, and Lambda retries it: nothing is dropped.
        with pytest.raises(ShipperError, match="the continuation could not be sent"):
            container.invoke(
                make_continuation(ObjectRef(bucket, key)), budget=MIN_DEADLINE_MARGIN, late=True
            )
        took = time.monotonic() - started
        assert silent.connection_count == handler.SQS_MAX_ATTEMPTS
    assert took < HANDOFF_RESERVE_SECONDS


def test_a_replayed_dead_letter_reports_no_lag(
    container: Container,
    logstash: JsonLinesReceiver,
    sample_objects: tuple[str, dict[str, dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket, stored = sample_objects
    failed = load_event("s3-put.json")
    pin_s3_record(failed["Records"][0], bucket, stored)
    capsys.readouterr()

    result = container.invoke(sqs_event_from(container, dead_letter_record(failed)))

    assert result["batchItemFailures"] == []
    assert set(received(logstash)) == expected(ALB_KEY, ALB_DATA)
    output = capsys.readouterr().out
    assert metric(output, "LinesRead") == len(ALB_DATA)
    assert not lag_reported(output)


# ------------------------------------------------------------------------------- LOG_PREFIX


def test_a_key_outside_the_log_prefix_is_skipped_not_retried_into_the_dead_letter_queue(
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    logstash: JsonLinesReceiver,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The bucket's topic announces every object, CloudTrail's too; the role may read only
    # LogPrefix, so S3 would answer 403, which is worth a retry: the event would be retried and
    # dead-lettered, setting off the alarms, for an object this stack was never meant to read.
    bucket = moto.new_bucket()
    key = "cloudtrail/AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/x.json.gz"
    store(moto, bucket, key, b'{"Records": []}\n', compress=True)
    event = edit_bucket_and_key("sns-s3.json", bucket, quote_plus(key, safe="/"))
    container = start_container(monkeypatch, moto, logstash.port, **{ENV.LOG_PREFIX: "AWSLogs/"})
    with FaultyS3(moto, error=(403, "AccessDenied")) as role_outside_prefix:
        result = invoke_once_through(role_outside_prefix, container, event, monkeypatch)
    assert result["objects"] == []
    assert role_outside_prefix.gets == []
    skipped = [r for r in log_records(caplog) if r["message"] == "object skipped"]
    assert [(r["key"], r["reason"]) for r in skipped] == [
        (key, "the key is outside LOG_PREFIX 'AWSLogs/', the only keys this function may read")
    ]
    output = capsys.readouterr().out
    assert metric(output, "ObjectsSkipped") == 1
    assert metric(output, "ObjectsFailed") == 0


def test_an_object_of_another_bucket_is_skipped_not_read(
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    logstash: JsonLinesReceiver,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A topic fed by several buckets (or a hand-written replay) names an object of another
    # bucket under the same AWSLogs/ prefix. The template's role may not read it (403, retried
    # into the dead-letter queue); a role granted more would read it and ship another bucket's
    # data to Logstash. Moto grants everything: any GET here is a read of the other bucket.
    log_bucket, other_bucket = moto.new_bucket(), moto.new_bucket()
    store(moto, other_bucket, ALB_KEY, joined(ALB_DATA), compress=True)
    event = edit_bucket_and_key("sns-s3.json", other_bucket, quote_plus(ALB_KEY, safe="/"))
    container = start_container(
        monkeypatch,
        moto,
        logstash.port,
        **{ENV.LOG_PREFIX: "AWSLogs/", ENV.LOG_BUCKET: log_bucket},
    )
    with FaultyS3(moto) as s3:
        result = invoke_once_through(s3, container, event, monkeypatch)
    assert result["objects"] == []
    assert s3.gets == []
    assert not received(logstash)
    skipped = [r for r in log_records(caplog) if r["message"] == "object skipped"]
    assert [(r["bucket"], r["reason"]) for r in skipped] == [
        (
            other_bucket,
            f"the bucket is not LOG_BUCKET {log_bucket!r}, the only bucket this function may read",
        )
    ]
    output = capsys.readouterr().out
    assert metric(output, "ObjectsSkipped") == 1
    assert metric(output, "ObjectsFailed") == 0


def invoke_once_through(
    s3: FaultyS3, container: Container, event: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Invoke ``container`` once with S3 behind the proxy ``s3`` (which counts the reads), then
    stop it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint_url)
    try:
        return container.invoke(event)
    finally:
        stop_container()


# ------------------------------------------------------ the local-invoke recipe (docs/deploy.md)


def edit_bucket_and_key(name: str, bucket: str, key: str) -> dict[str, Any]:
    """A sample event with only its bucket and key edited, as a user does for ``sam local
    invoke``."""
    event = load_event(name)
    if name == "eventbridge-object-created.json":
        event["detail"]["bucket"]["name"] = bucket
        event["detail"]["object"]["key"] = key
        return event
    if name == "sns-s3.json":
        sns = event["Records"][0]["Sns"]
        message = json.loads(sns["Message"])
        message["Records"][0]["s3"]["bucket"]["name"] = bucket
        message["Records"][0]["s3"]["object"]["key"] = key
        sns["Message"] = json.dumps(message)
        return event
    s3 = event["Records"][0]["s3"]
    s3["bucket"]["name"] = bucket
    s3["object"]["key"] = key
    return event


@pytest.mark.parametrize("name", ["s3-put.json", "eventbridge-object-created.json", "sns-s3.json"])
def test_a_sample_event_edited_to_name_an_object_ships_it(
    container: Container, logstash: JsonLinesReceiver, moto: MotoServer, name: str
) -> None:
    bucket = moto.new_bucket("my-elb-logs", versioned=True)
    key = alb_key("recipe")
    lines = alb_lines(50)
    store(moto, bucket, key, joined(lines), compress=True)

    result = container.invoke(edit_bucket_and_key(name, bucket, key))

    (shipped,) = result["objects"]
    assert (shipped["outcome"], shipped["error"]) == ("shipped", None)
    assert set(received(logstash)) == expected(key, lines)
    assert max(received(logstash).values()) == 1


def test_a_missing_object_is_said_in_one_sentence(
    container: Container, logstash: JsonLinesReceiver, moto: MotoServer
) -> None:
    bucket = moto.new_bucket()
    key = alb_key("missing")

    result = container.invoke(edit_bucket_and_key("s3-put.json", bucket, key))

    (rejected,) = result["objects"]
    assert rejected["outcome"] == "rejected"
    assert rejected["error"] == (
        f"s3://{bucket}/{key} does not exist (NoSuchKey): it was deleted, or the bucket or key "
        "is wrong"
    )
    assert logstash.events == []


@pytest.mark.parametrize("pin", ["eTag", "versionId"])
def test_an_object_changed_since_the_event_is_said_in_one_sentence_and_not_shipped(
    container: Container, logstash: JsonLinesReceiver, moto: MotoServer, pin: str
) -> None:
    bucket = moto.new_bucket(versioned=pin == "versionId")
    key = alb_key("changed")
    first = store(moto, bucket, key, joined(alb_lines(5)), compress=True)
    store(moto, bucket, key, joined(alb_lines(6)), compress=True)
    if pin == "versionId":
        moto.client().delete_object(Bucket=bucket, Key=key, VersionId=first["VersionId"])
    # What S3 sent for the first upload: its ETag (and version, in a versioned bucket).
    event = edit_bucket_and_key("s3-put.json", bucket, key)
    event["Records"][0]["s3"]["object"].update(
        {"eTag": first["ETag"], **({"versionId": first["VersionId"]} if pin == "versionId" else {})}
    )

    result = container.invoke(event)

    (rejected,) = result["objects"]
    assert rejected["outcome"] == "rejected"
    error = rejected["error"]
    if pin == "eTag":
        assert error.startswith(
            f"s3://{bucket}/{key} is not the object named (ETag {first['ETag']}): it was "
            "overwritten since the event or listing named it"
        )
    else:
        assert error.startswith(
            f"s3://{bucket}/{key} has no version {first['VersionId']} (NoSuchVersion): it was "
            "deleted since the event named it"
        )
    assert error.endswith(
        "(leave eTag and versionId out of a hand-written event to ship the object as it is now)"
    )
    assert ". " not in error  # one sentence
    assert logstash.events == []


def test_an_object_in_a_compression_elb_never_writes_is_rejected_in_one_sentence(
    container: Container, logstash: JsonLinesReceiver, moto: MotoServer
) -> None:
    bucket = moto.new_bucket()
    key = alb_key("bzip2")
    moto.client().put_object(Bucket=bucket, Key=key, Body=bz2.compress(joined(alb_lines(50))))

    result = container.invoke(edit_bucket_and_key("s3-put.json", bucket, key))

    (rejected,) = result["objects"]
    assert (rejected["outcome"], rejected["lines"]) == ("rejected", 0)
    assert rejected["error"] == (
        f"s3://{bucket}/{key}: the data is bzip2-compressed (by its first bytes), but ELB writes "
        "gzip or plain text: decompress it and ship the log itself"
    )
    assert logstash.events == []


def test_a_corrupt_gzip_object_ships_every_line_before_the_damage_and_is_rejected(
    container: Container, logstash: JsonLinesReceiver, moto: MotoServer
) -> None:
    # Over a step of text (1 MiB) before the damage, which ISA-L's failing call drops: the
    # function reads the object again for it.
    bucket = moto.new_bucket()
    key = alb_key("damaged")
    lines = alb_lines(8000)
    damage = damaged_gzip(text=joined(lines))
    moto.client().put_object(Bucket=bucket, Key=key, Body=damage.data)
    intact = [line for line in lines if damage.text.index(line) < damage.intact]
    assert len(joined(intact)) == damage.intact > INFLATE_STEP_BYTES

    result = container.invoke(edit_bucket_and_key("s3-put.json", bucket, key))

    (rejected,) = result["objects"]
    assert (rejected["outcome"], rejected["lines"]) == ("rejected", len(intact))
    assert rejected["error"] == (
        f"s3://{bucket}/{key}: gzip data is corrupt in member 1 at compressed byte {damage.at}: "
        "Error -3 while decompressing data: invalid block type"
    )
    assert set(received(logstash)) == expected(key, intact)
    assert max(received(logstash).values()) == 1


# ------------------------------------------------------------------------ S3 -> SNS -> Lambda


def sns_lambda_record(envelope: dict[str, Any]) -> dict[str, Any]:
    """The record SNS invokes a subscribed function with (AWS's documented ``aws:sns`` shape),
    for the message it delivered to a subscribed queue as ``envelope``: the same fields, with
    two of them spelled differently."""
    sns = {k: v for k, v in envelope.items() if k not in ("SigningCertURL", "UnsubscribeURL")}
    sns.update(
        SigningCertUrl=envelope["SigningCertURL"],
        UnsubscribeUrl=envelope["UnsubscribeURL"],
        MessageAttributes=envelope.get("MessageAttributes", {}),
    )
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{envelope['TopicArn']}:b9a6ef11-4fb2-4a5c-8d37-0e6a4b3b1f12",
        "Sns": sns,
    }


def test_s3_notifications_through_sns_ship(
    container: Container, logstash: JsonLinesReceiver, moto: MotoServer
) -> None:
    # Moto's own S3 -> SNS notification, tapped by a queue subscribed to the topic.
    bucket = moto.new_bucket()
    sns = boto3.client("sns", **moto.client_kwargs())
    sqs = boto3.client("sqs", **moto.client_kwargs())
    topic = sns.create_topic(Name=f"{bucket}-created")["TopicArn"]
    tap = sqs.create_queue(QueueName=f"{bucket}-tap")["QueueUrl"]
    tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=tap_arn["QueueArn"])
    moto.client().put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    lines = alb_lines(40)
    store(moto, bucket, ALB_KEY, joined(lines), compress=True)  # a key with colons
    envelopes = [json.loads(message["Body"]) for message in container.take_messages(tap)]
    assert any("ObjectCreated:Put" in envelope["Message"] for envelope in envelopes)

    # SNS invokes the function once per message: the s3:TestEvent, if any, and the put.
    results = [container.invoke({"Records": [sns_lambda_record(e)]}) for e in envelopes]

    shipped = [o for result in results for o in result["objects"]]
    assert [(o["key"], o["outcome"]) for o in shipped] == [(ALB_KEY, "shipped")]
    assert set(received(logstash)) == expected(ALB_KEY, lines)
    assert max(received(logstash).values()) == 1


def test_an_object_failing_under_sns_fails_the_invocation_so_that_sns_retries(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SNS invokes asynchronously, as EventBridge does: a failure is retried, then dead-lettered.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # refused: worth a retry
    with pytest.raises(ShipperError, match="1 of 1 objects failed and the event is retried"):
        container.invoke(edit_bucket_and_key("sns-s3.json", "my-elb-logs", alb_key("retry")))


# ------------------------------------------------------- an S3 body cut short, resumed or not


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_an_s3_body_cut_short_is_resumed_with_a_range_and_ships_every_line_once(
    *,
    container: Container,
    logstash: JsonLinesReceiver,
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    compress: bool,
    reset: bool,
) -> None:
    # Over real HTTP: S3 sends half of the body it announced, then closes (or resets) the
    # connection. The rest comes by a ranged GET from the byte the cut left off at.
    bucket = moto.new_bucket()
    key = alb_key("cut")
    lines = alb_lines(3000)
    size = store(moto, bucket, key, joined(lines), compress=compress)["size"]
    with FaultyS3(moto, cut_after=size // 2, cut_with_reset=reset) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        result = container.invoke(edit_bucket_and_key("s3-put.json", bucket, key))
    (shipped,) = result["objects"]
    assert shipped["outcome"] == "shipped"
    assert shipped["retries"] == 1
    assert shipped["lines"] == shipped["events_sent"] == len(lines)
    # A ranged GET from the bytes received, which a reset can leave at 0 (the kernel drops what
    # it had received but not yet handed over).
    (first, resumed) = faulty.ranges
    assert first is None
    assert resumed is not None
    assert 0 <= int(resumed.removeprefix("bytes=").removesuffix("-")) <= size // 2
    logstash.wait_idle()
    assert set(received(logstash)) == expected(key, lines)
    assert max(received(logstash).values()) == 1


def test_an_s3_body_whose_resume_s3_keeps_refusing_fails_naming_the_object_once(
    container: Container,
    logstash: JsonLinesReceiver,
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The body is cut at its middle and every ranged GET that would resume it is answered 503
    # SlowDown (botocore's retries too): the lines before the cut are shipped once, the object
    # fails so that the event is retried, and the error names the object once. It named it
    # twice ("first: s3://b/k: cannot read s3://b/k: SlowDown ...").
    bucket = moto.new_bucket()
    key = alb_key("cut-refused")
    lines = alb_lines(3000)
    size = store(moto, bucket, key, joined(lines), compress=True)["size"]
    uri = f"s3://{bucket}/{key}"
    with FaultyS3(moto, cut_after=size // 2, range_errors_left=100) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        with pytest.raises(ShipperError, match="objects failed and the event is retried") as err:
            container.invoke(edit_bucket_and_key("s3-put.json", bucket, key))
    message = str(err.value)
    assert message.count(uri) == 1, message
    assert "SlowDown" in message
    (ledger,) = [r for r in log_records(caplog) if r.get("key") == key]
    assert ledger["outcome"] == "failed"
    assert 0 < ledger["lines"] < len(lines)
    assert ledger["lines"] == ledger["events_sent"] + ledger["dropped"]
    logstash.wait_idle()
    arrived = received(logstash)
    assert set(arrived) == expected(key, lines[: ledger["lines"]])
    assert max(arrived.values()) == 1


# ----------------------------------------------------------------- an S3 body that stalls


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_an_s3_body_that_stalls_hands_off_within_the_budget_and_the_rest_ships_once(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer, logstash: JsonLinesReceiver
) -> None:
    # Production settings and S3 timeouts (a read waits 20 s) on a 60 s budget: the body stalls
    # at its middle, and every read that resumes it stalls there too.
    # It is S3 that stalls: Logstash's stall timeout is one no pause of this process reaches
    # (a CI simulation saw two lines resent, and counted twice, with the harness's 0.5 s).
    container = start_container(
        monkeypatch, moto, logstash.port, **{ENV.LOGSTASH_STALL_TIMEOUT: NOT_A_STALL_TIMEOUT}
    )
    try:
        bucket = moto.new_bucket()
        key = alb_key("stalls")
        lines = alb_lines(9000)  # 4 MB of plain text: several 1 MiB reads before the stall
        data = joined(lines)
        store(moto, bucket, key, data, compress=False)
        with FaultyS3(moto, stall_after=len(data) // 2) as faulty:
            monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
            context = FakeContext(budget=60)
            result = handler.lambda_handler(
                edit_bucket_and_key("s3-put.json", bucket, key), context
            )
            left = context.get_remaining_time_in_millis()
            logstash.wait_idle()
            (first,) = result["objects"]
            assert first["outcome"] == "handed_off"
            assert left > 0  # returned before Lambda's deadline: a hand-off, not a timeout
            assert 0 < first["next_offset"] <= len(data) // 2
            assert faulty.stalls >= 2  # the read timed out, was resumed, and stalled again
            assert set(received(logstash)) == expected(key, lines) - expected(
                key, lines, first["next_offset"]
            )
            (message,) = container.continuations()

            faulty.release()  # S3 is well again for the next invocation
            second = container.invoke({"Records": [sqs_record("m-cont", message["Body"])]})

        assert second["batchItemFailures"] == []
        assert second["objects"][0]["outcome"] == "shipped"
        assert second["objects"][0]["start_offset"] == first["next_offset"]
        logstash.wait_idle()
        assert set(received(logstash)) == expected(key, lines)
        assert max(received(logstash).values()) == 1
    finally:
        stop_container()


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    """An SQS event record as Lambda's event source mapping delivers it."""
    record: dict[str, Any] = copy.deepcopy(load_event("sqs-continuation.json")["Records"][0])
    record.update(messageId=message_id, body=body)
    return record


def test_gzip_helper_round_trips() -> None:
    # The generated lines are what the tests think they are: distinct, newline-free.
    lines = alb_lines(100)
    assert len(set(lines)) == 100
    assert gzip.decompress(gzip.compress(joined(lines))).count(b"\n") == 100


def test_s3_throttling_past_botocores_default_attempts_ships_and_is_counted(
    container: Container,
    logstash: JsonLinesReceiver,
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    *,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # S3 answers the object's first GETs 503 SlowDown and botocore retries them: the retries
    # were said nowhere. The object's log line counts them now, and the Retries metric
    # includes them. More times than botocore's default of 3 attempts allows: the function,
    # which left its attempts to that default, failed the object and Lambda retried the whole
    # event; within S3_MAX_ATTEMPTS it ships.
    bucket = moto.new_bucket()
    key = alb_key("throttled")
    lines = alb_lines(50)
    store(moto, bucket, key, joined(lines), compress=True)
    throttled = handler.S3_MAX_ATTEMPTS - 1
    assert throttled >= 3  # past botocore's default
    with FaultyS3(moto, error=(503, "SlowDown"), error_times=throttled) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        result = container.invoke(edit_bucket_and_key("s3-put.json", bucket, key))
    (shipped,) = result["objects"]
    assert shipped["outcome"] == "shipped", shipped
    assert shipped["s3_retries"] == throttled
    assert faulty.errors_answered[key] == throttled + 1
    (logged,) = [r for r in log_records(caplog) if r["message"] == "object shipped"]
    assert logged["s3_retries"] == throttled
    assert metric(capsys.readouterr().out, "Retries") == throttled
    logstash.wait_idle()
    assert set(received(logstash)) == expected(key, lines)
