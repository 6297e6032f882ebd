"""The handler's pure parts and its configuration errors: no network."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

import pytest

from elb_log_shipper import handler
from elb_log_shipper.config import ENV
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.report import ObjectResult, Outcome
from elb_log_shipper.triggers import TriggerKind, make_continuation, parse_event
from tests.support.lambda_events import dead_letter_record

DOCS = ("README.md", "docs/deploy.md")


class Context:
    function_name = "elb-log-shipper-test"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:elb-log-shipper-test"
    memory_limit_in_mb = 512
    aws_request_id = "req-config"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture(autouse=True)
def fresh_container() -> object:
    yield None
    handler.cold_start({ENV.LOGSTASH_HOST: "127.0.0.1"})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "LOGSTASH_HOST is not set: set it to the host of Logstash's tcp input"),
        (
            {ENV.LOGSTASH_HOST: "h", ENV.LOGSTASH_PORT: "web"},
            "LOGSTASH_PORT='web' is not an integer",
        ),
        ({ENV.LOGSTASH_HOST: "h", ENV.LOGSTASH_POOL_SIZE: "0"}, "LOGSTASH_POOL_SIZE=0 is out of"),
        (
            {ENV.LOGSTASH_HOST: "h", ENV.LOGSTASH_CA_FILE: "/nope.pem"},
            "LOGSTASH_CA_FILE and client certificates need LOGSTASH_TLS=true",
        ),
    ],
)
def test_configuration_error_is_raised_by_every_invocation(
    environ: dict[str, str], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler.cold_start(environ)
    event = make_continuation(ObjectRef("logs", "x.log"))
    for _ in range(2):
        with pytest.raises(ConfigurationError) as raised:
            handler.lambda_handler(event, Context())
        assert str(raised.value).startswith(message)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 3  # once at cold start, once per invocation
    assert all(getattr(r, "error", "").startswith(message) for r in errors)


class ThreeSecondContext(Context):
    """Lambda's default timeout, which a function deployed without the template gets."""

    def get_remaining_time_in_millis(self) -> int:
        return 3_000


def test_a_timeout_within_the_deadline_margin_is_a_configuration_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Without the check every object was handed off unread, hop after hop, to the dead-letter
    # queue ("handed off 11 times, more than MAX_HOPS"), and nothing said why.
    handler.cold_start({ENV.LOGSTASH_HOST: "127.0.0.1"})
    event = make_continuation(ObjectRef("logs", "x.log"))
    with pytest.raises(
        ConfigurationError, match=f"3.0s left, within {ENV.DEADLINE_MARGIN_SECONDS}=30"
    ):
        handler.lambda_handler(event, ThreeSecondContext())
    assert [r.message for r in caplog.records if r.levelname == "ERROR"] == [
        "invalid configuration"
    ]


def test_lag_is_measured_from_the_newest_timestamp() -> None:
    now = dt.datetime(2026, 11, 28, 23, 45, tzinfo=dt.UTC)
    stamps = ["2026-11-28T23:40:00.000000Z", None, "2026-11-28T23:44:30.250000Z", "garbage"]
    assert handler.lag_seconds(stamps, now=now) == 29.75
    assert handler.lag_seconds([None], now=now) is None


def test_metric_names_are_the_ones_the_template_uses() -> None:
    names = {value for name, value in vars(handler.Metric).items() if name.isupper()}
    assert names == {
        "ObjectsShipped", "ObjectsFailed", "LinesRead", "EventsSent", "ParseFailures",
        "EventsTruncated", "BytesRead", "Retries", "Reconnects", "ShipSeconds", "LagSeconds",
        "Handoffs", "DeliveryFailures", "EventsDropped", "EventsResent", "ObjectsSkipped",
        "ObjectsRejected",
    }  # fmt: skip


def test_an_object_whose_event_is_retried_is_not_logged_as_handed_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One object of an S3 event failed and the event is retried whole: the other, stopped at
    # the deadline, sent no continuation. Its line must not say it was handed off.
    trigger = parse_event(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": "logs"}, "object": {"key": key}},
                }
                for key in ("a.log", "b.log")
            ]
        }
    )
    ledgers = [
        ObjectResult(ObjectRef("logs", "a.log"), Outcome.HANDED_OFF, lines=5, next_offset=90),
        ObjectResult(ObjectRef("logs", "b.log"), Outcome.FAILED, error="S3 failed"),
    ]
    caplog.set_level(logging.INFO)
    handler._log_objects(trigger.to_ship, ledgers, retry_event=True)
    lines = [(r.levelname, r.getMessage(), getattr(r, "error", None)) for r in caplog.records]
    assert lines == [
        ("INFO", "object not handed off", "not handed off: the whole event is retried"),
        ("ERROR", "object failed", "S3 failed"),
    ]
    caplog.clear()
    handler._log_objects(trigger.to_ship[:1], ledgers[:1], retry_event=False)
    assert [r.getMessage() for r in caplog.records] == ["object handed off"]


def test_dead_letter_record_replays_as_its_payload() -> None:
    continuation = make_continuation(ObjectRef("logs", "a.log", etag="e", start_offset=40, hop=2))
    trigger = parse_event(dead_letter_record(continuation))
    assert trigger.kind is TriggerKind.DIRECT
    assert trigger.items[0].ref == ObjectRef("logs", "a.log", etag="e", start_offset=40, hop=2)

    s3 = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "logs"}, "object": {"key": "b+c.log"}},
            }
        ]
    }
    redriven = {
        "Records": [
            {"messageId": "m", "eventSource": "aws:sqs", "body": json.dumps(dead_letter_record(s3))}
        ]
    }
    trigger = parse_event(redriven)
    assert trigger.kind is TriggerKind.SQS
    assert [(i.ref.key, i.sqs_message_id) for i in trigger.items] == [("b c.log", "m")]


class MarginContext(Context):
    """A function whose timeout is exactly the default deadline margin (30 s)."""

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# Kills x__require_time__mutmut_1 (`<=` -> `<`): an invocation that starts with exactly the
# margin left is out of time at once (pipeline: remaining() <= margin) and would hand every
# object off unread, hop after hop, to the dead-letter queue.
def test_a_timeout_equal_to_the_deadline_margin_is_a_configuration_error() -> None:
    handler.cold_start({ENV.LOGSTASH_HOST: "127.0.0.1"})
    event = make_continuation(ObjectRef("logs", "x.log"))
    with pytest.raises(
        ConfigurationError, match=f"30.0s left, within {ENV.DEADLINE_MARGIN_SECONDS}=30"
    ):
        handler.lambda_handler(event, MarginContext())


QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/elb-log-shipper-blue-continuations"


@pytest.mark.parametrize(
    ("arn", "same"),
    [
        ("arn:aws:sqs:eu-west-1:123456789012:elb-log-shipper-blue-continuations", True),
        # Another queue of the account, the same name in another account, not SQS.
        ("arn:aws:sqs:eu-west-1:123456789012:elb-log-shipper-green-continuations", False),
        ("arn:aws:sqs:eu-west-1:210987654321:elb-log-shipper-blue-continuations", False),
        ("arn:aws:sns:eu-west-1:123456789012:elb-log-shipper-blue-continuations", False),
        ("arn:aws:sqs:eu-west-1:123456789012", False),
        ("", False),
        (None, False),
    ],
)
def test_the_back_off_is_set_only_for_the_continuation_queues_messages(
    arn: object, same: bool
) -> None:
    assert handler._is_queue(arn, QUEUE_URL) is same


def test_failed_continuations_come_back_sooner_then_later_and_as_often_as_before() -> None:
    """The back-off keeps the retries' reach: the dead-letter queue after the queue's 5
    receives (template.yaml) is still over 2 hours away (2.5 at the queue's 30 minutes each)."""
    visibility, receives = 1800, 5
    waits = [handler.retry_after(count) or visibility for count in range(1, receives + 1)]
    assert waits[0] == 60
    assert list(handler.RETRY_AFTER_SECONDS) == sorted(handler.RETRY_AFTER_SECONDS)
    # Receives at 0, 1, 6, 36 and 96 minutes; the dead-letter queue at the sixth, 126.
    assert sum(waits) >= 2 * 3600
    assert all(wait <= 12 * 3600 for wait in waits)  # SQS's longest visibility timeout
    assert handler.retry_after(0) is None


def test_the_docs_give_the_retry_schedule_the_function_sets() -> None:
    """README and docs/deploy.md tell an operator how long an outage heals by itself."""
    root = Path(__file__).resolve().parents[2]
    docs = " ".join(" ".join((root / name).read_text(encoding="utf-8") for name in DOCS).split())
    minutes = [seconds // 60 for seconds in handler.RETRY_AFTER_SECONDS]
    schedules = re.findall(r"\b(\d+), (\d+), (\d+),? (?:and )?(\d+) minutes", docs)
    assert schedules
    assert {tuple(int(n) for n in schedule) for schedule in schedules} == {tuple(minutes)}
    # The last receive, and the dead-letter queue the queue's visibility timeout (30 minutes) later.
    last = re.findall(r"the last (\d+) minutes after the first", docs)
    assert set(last) == {str(sum(minutes))}
    dead_letter = re.findall(r"dead-letter queue is about \d hours away \((\d+) minutes\)", docs)
    assert set(dead_letter) == {str(sum(minutes) + 30)}


def test_the_containers_repr_holds_no_hash_key() -> None:
    # A repr reaches logs and tracebacks; PrivacyRules already kept its key out of its own.
    container = handler._Container(None, None, privacy_key=b"0123456789abcdef-s3cr3tKey")
    assert "s3cr3tKey" not in repr(container)
