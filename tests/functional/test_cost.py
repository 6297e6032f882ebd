"""What one object costs a deployment besides Lambda time: the S3 and SQS requests it makes, the
bytes it writes to CloudWatch Logs, and the custom metrics its EMF document creates.

The handler runs for real against moto over HTTP, through ``FaultyS3`` (which forwards every
request and counts it: S3 and SQS alike), and a json_lines receiver on 127.0.0.1. The bounds:
one GET per healthy object, one SendMessage per hand-off, one log line and one EMF document per
object whatever its lines, and 17 metrics in one dimension set. A HEAD before each read, a line
logged per bad line or a dimension per object (its key) would each fail one of these.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from elb_log_shipper import handler
from elb_log_shipper.config import ENV, MIN_DEADLINE_MARGIN
from elb_log_shipper.handler import Metric
from tests.functional.test_observability import template
from tests.functional.test_reliability import s3_event, sqs_event
from tests.support.damaged import damaged_gzip
from tests.support.lambda_harness import (
    NOT_A_STALL_TIMEOUT,
    alb_key,
    emf_documents,
    metric,
    put_lines,
    start_container,
    stop_container,
)
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import FaultyS3, MotoServer

pytestmark = pytest.mark.timeout(60)

# What an invocation of one object writes to its log group, but Lambda's own START, END and
# REPORT lines (about 350 bytes): the object's line is 0.9-1.4 KB (its key, its error), the EMF
# document 1.1-1.2 KB. Whatever the object holds: a million bad lines cost no more.
LOG_BYTES_PER_OBJECT = 3 * 1024
# Every metric the function emits (handler.Metric), in the one dimension set
# [environment, service]: each is one custom metric, whatever the traffic.
CUSTOM_METRICS = 17
# One line of the log for a message the function does not understand, however large the value
# that it names (SQS takes messages of up to 1 MiB): its reason quotes enough to recognise it.
LOG_LINE_BYTES = 2048
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Invocation:
    """What one invocation cost: requests through the proxy, log lines and EMF documents."""

    result: dict[str, Any]
    requests: list[tuple[str, str | None]]
    """(method, SQS action) of each request: ("GET", None) is an object read."""
    log_lines: list[str]
    emf: list[dict[str, Any]]
    stdout: str

    @property
    def log_bytes(self) -> int:
        return sum(len(line.encode()) + 1 for line in self.log_lines) + sum(
            len(json.dumps(document, separators=(",", ":")).encode()) + 1 for document in self.emf
        )


@pytest.fixture
def invoke(
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Callable[..., Invocation]]:
    """Invoke a container whose S3 and SQS clients go through a counting proxy."""

    def run(
        port: int, event: dict[str, Any], *, budget: float = 300.0, late: bool = False
    ) -> Invocation:
        with FaultyS3(moto) as proxy:
            container = start_container(
                monkeypatch,
                moto,
                port,
                **{ENV.LOGSTASH_STALL_TIMEOUT: NOT_A_STALL_TIMEOUT},
            )
            # The clients are made at first use: this invocation's go through the proxy.
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
            capsys.readouterr()
            caplog.clear()
            result = container.invoke(event, budget=budget, late=late)
            requests = [(method, target) for method, _, target in proxy.requests]
        formatter = handler.logger.registered_formatter
        lines = [formatter.format(record) for record in caplog.records]
        stdout = capsys.readouterr().out
        return Invocation(result, requests, lines, emf_documents(stdout), stdout)

    yield run
    stop_container()


def assert_one_object_worth_of_logs(cost: Invocation) -> None:
    assert len(cost.log_lines) == 1, cost.log_lines
    assert len(cost.emf) == 1
    assert cost.log_bytes <= LOG_BYTES_PER_OBJECT, cost.log_lines
    for document in cost.emf:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Dimensions"] == [["environment", "service"]]
        names = {entry["Name"] for entry in directive["Metrics"]}
        assert names <= {value for name, value in vars(Metric).items() if name.isupper()}


GET = ("GET", None)
SEND = ("POST", "AmazonSQS.SendMessage")


def test_the_function_emits_a_bounded_set_of_custom_metrics() -> None:
    names = {value for name, value in vars(Metric).items() if name.isupper()}
    assert len(names) == CUSTOM_METRICS


def test_a_healthy_object_costs_one_get_one_log_line_and_one_emf_document(
    invoke: Callable[..., Invocation], moto: MotoServer, logstash: JsonLinesReceiver
) -> None:
    bucket, key, _ = put_lines(moto, 5000, "healthy")

    cost = invoke(logstash.port, s3_event(bucket, key))

    assert [o["outcome"] for o in cost.result["objects"]] == ["shipped"]
    assert cost.requests == [GET]
    assert_one_object_worth_of_logs(cost)


def test_a_flood_of_bad_lines_is_counted_in_one_line_not_logged_line_by_line(
    invoke: Callable[..., Invocation], moto: MotoServer, logstash: JsonLinesReceiver
) -> None:
    bucket, key = moto.new_bucket(), alb_key("flood")
    # Each would be a log-injection attempt if logged: a forged log line after the newline.
    flood = b'garbage {"level":"ERROR","message":"forged"}\n' * 50_000
    moto.client().put_object(Bucket=bucket, Key=key, Body=gzip.compress(flood))

    cost = invoke(logstash.port, s3_event(bucket, key))

    assert metric(cost.stdout, Metric.PARSE_FAILURES) == 50_000
    assert cost.requests == [GET]
    assert_one_object_worth_of_logs(cost)
    assert "forged" not in cost.log_lines[0]


def test_logstash_refusing_costs_one_get_and_one_continuation(
    invoke: Callable[..., Invocation], moto: MotoServer
) -> None:
    bucket, key, _ = put_lines(moto, 500, "refused")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    cost = invoke(port, s3_event(bucket, key))

    assert [o["outcome"] for o in cost.result["objects"]] == ["handed_off"]
    assert cost.requests == [GET, SEND]
    assert_one_object_worth_of_logs(cost)


def test_a_corrupt_gzip_costs_at_most_two_gets_and_one_log_line(
    invoke: Callable[..., Invocation], moto: MotoServer, logstash: JsonLinesReceiver
) -> None:
    bucket, key = moto.new_bucket(), alb_key("corrupt")
    moto.client().put_object(Bucket=bucket, Key=key, Body=damaged_gzip(5000).data)

    cost = invoke(logstash.port, s3_event(bucket, key))

    assert [o["outcome"] for o in cost.result["objects"]] == ["rejected"]
    # The second reads the text before the damage that the fast inflater dropped (salvage).
    assert cost.requests in ([GET], [GET, GET])
    assert_one_object_worth_of_logs(cost)


def test_a_deadline_hand_off_costs_one_message_and_one_log_line(
    invoke: Callable[..., Invocation], moto: MotoServer, logstash: JsonLinesReceiver
) -> None:
    bucket, key, _ = put_lines(moto, 500, "late")

    cost = invoke(logstash.port, s3_event(bucket, key), budget=MIN_DEADLINE_MARGIN, late=True)

    assert [o["outcome"] for o in cost.result["objects"]] == ["handed_off"]
    assert cost.requests == [SEND]
    assert_one_object_worth_of_logs(cost)


def test_a_message_not_understood_is_logged_in_a_line_not_in_the_whole_value(
    invoke: Callable[..., Invocation], logstash: JsonLinesReceiver
) -> None:
    large = "x" * 200_000
    continuation = {"elbLogShipperContinuation": 1, "bucket": "logs", "key": "AWSLogs/a.log"}
    bodies: list[dict[str, Any]] = [
        {**continuation, "offset": large},
        {**continuation, "live": large},
        {**continuation, "elbLogShipperContinuation": large},
        {"source": large, "detail-type": "Object Created", "detail": {}},
        {"source": "aws.s3", "detail-type": large, "detail": {}},
        # Skipped, with the reason in an INFO line.
        {
            "source": "aws.s3",
            "detail-type": large,
            "detail": {"bucket": {"name": "logs"}, "object": {"key": "AWSLogs/a.log"}},
        },
        {"Records": [{"eventSource": large}]},
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": large,
                    "s3": {"bucket": {"name": "logs"}, "object": {"key": "AWSLogs/a.log"}},
                }
            ]
        },
    ]

    cost = invoke(logstash.port, sqs_event(*bodies))

    assert len(cost.result["batchItemFailures"]) == len(bodies) - 2
    assert len(cost.log_lines) == len(bodies)
    for line in cost.log_lines:
        assert len(line.encode()) <= LOG_LINE_BYTES, line[:300]
    assert cost.requests == []


def test_the_cost_section_counts_the_metrics_and_alarms_the_stack_has() -> None:
    """docs/deploy.md prices what template.yaml and the handler make: its counts stay theirs."""
    alarms = [
        resource["Properties"]
        for resource in template()["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    ]
    alarm_metrics = sum(
        len([query for query in alarm["Metrics"] if "MetricStat" in query])
        if "Metrics" in alarm
        else 1
        for alarm in alarms
    )
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = deploy.split("\n## What a deployment costs\n", 1)[1].split("\n## ", 1)[0]
    text = re.sub(r"\s+", " ", section)
    assert f"{CUSTOM_METRICS} metrics (README" in text
    assert f"{len(alarms)} alarms on {alarm_metrics} metrics" in text
    assert f"${CUSTOM_METRICS * 0.30:.2f}" in text
    assert f"${alarm_metrics * 0.10:.2f}" in text
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert f"{CUSTOM_METRICS} custom metrics, {len(alarms)} alarms" in readme
