"""Driving the Lambda handler in-process as Lambda would: a fake context with a real clock, a
cold-started module per test ("container"), objects in a moto S3 server, and helpers to read what
arrived at the receiver and what the handler printed (EMF metrics, log lines).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

from elb_log_shipper import handler
from elb_log_shipper.config import ENV
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import MotoServer

EVENTS = Path(__file__).resolve().parents[2] / "events"
DAY = "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/"
# Short, so that fault tests end in seconds; production uses 20 s.
STALL_TIMEOUT = 0.5
# For the tests that count duplicates but are not about stalls: with the lambda harness's 0.5 s,
# a receiver in this process, starved of the CPU on a loaded machine, was taken for stalled and
# batches were resent once more (hand-offs: 1-6k duplicate lines in 4 of 10 runs under two busy
# loops; resets: lines that arrived three times in a CI run). 2 s still leaves a hand-off's
# confirmation (HANDOFF_RESERVE_SECONDS before the end) time to resend after one stall.
NOT_A_STALL_TIMEOUT = "2"

# The keys the events/*.json files name (decoded).
ALB_KEY = (
    f"{DAY}123456789012_elasticloadbalancing_us-east-1_app.my-alb.50dc6c495c0c9188_"
    "20261128T2340Z_2600:1f18:4c1:a800::7_2a3b4c5d.log.gz"
)
CLASSIC_KEY = (
    f"{DAY}123456789012_elasticloadbalancing_us-east-1_my-classic-lb_20261128T2340Z_"
    "10.0.2.8_5f6g7h8j.log"
)

# One documented ALB entry; {n} makes each generated line (and its request) unique.
ALB_TEMPLATE = (
    "http 2026-11-28T23:39:{second:02d}.{n:06d}Z app/my-alb/50dc6c495c0c9188 "
    "192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "
    '"GET http://www.example.com:80/items/{n} HTTP/1.1" "curl/7.46.0" - - '
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "
    '"Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" 0 2026-11-28T23:38:48.364000Z '
    '"forward" "-" "-" "10.0.0.1:80" "200" "-" "-" TID_{n}'
)


def alb_lines(count: int) -> list[bytes]:
    """``count`` distinct, valid ALB log lines (about 450 bytes each)."""
    return [ALB_TEMPLATE.format(second=n % 60, n=n).encode() for n in range(count)]


def alb_key(name: str) -> str:
    """An ALB access-log key whose random part is ``name`` (letters and digits)."""
    return (
        f"{DAY}123456789012_elasticloadbalancing_us-east-1_app.my-alb.50dc6c495c0c9188_"
        f"20261128T2340Z_10.0.1.7_{name}.log.gz"
    )


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def offsets(lines: list[bytes], start: int = 0) -> set[int]:
    """The byte offsets of ``lines`` in ``joined(lines)``, from ``start`` on."""
    found, position = set(), 0
    for line in lines:
        if position >= start:
            found.add(position)
        position += len(line) + 1
    return found


class FakeContext:
    """The parts of the Lambda context the handler and Powertools read; time runs for real.

    ``started_with``, when given, is what the first reading of the remaining time shows (the
    function's timeout, as the handler sees it when the invocation starts); every later reading
    counts down from ``budget``: as if earlier work had spent the rest, without waiting for it.
    """

    function_name = "elb-log-shipper-test"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:elb-log-shipper-test"
    memory_limit_in_mb = 512
    log_group_name = "/aws/lambda/elb-log-shipper-test"
    log_stream_name = "2026/11/28/[$LATEST]0123456789abcdef"

    def __init__(
        self, budget: float = 300.0, request_id: str = "req-1", started_with: float | None = None
    ) -> None:
        self.deadline = time.monotonic() + budget
        self.aws_request_id = request_id
        self._first: float | None = started_with

    def get_remaining_time_in_millis(self) -> int:
        if self._first is not None:
            first, self._first = self._first, None
            return int(first * 1000)
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class Container:
    """One Lambda container: the handler module after ``cold_start`` with these settings."""

    moto: MotoServer
    queue_url: str

    def invoke(
        self, event: Mapping[str, Any], budget: float = 300.0, *, late: bool = False
    ) -> dict[str, Any]:
        """``late``: the invocation starts with 300 s (the template's timeout), and ``budget``
        is what is left once it looks again: objects meet the deadline margin before they
        start."""
        context = FakeContext(budget, started_with=300.0 if late else None)
        result: dict[str, Any] = handler.lambda_handler(dict(event), context)
        return result

    def continuations(self) -> list[dict[str, Any]]:
        """Take every message waiting in the continuation queue."""
        return self.take_messages(self.queue_url)

    def take_messages(self, queue_url: str) -> list[dict[str, Any]]:
        """Take every message waiting in the queue at ``queue_url``."""
        sqs = boto3.client("sqs", **self.moto.client_kwargs())
        taken: list[dict[str, Any]] = []
        while True:
            response = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = response.get("Messages", [])
            if not messages:
                return taken
            for message in messages:
                taken.append(dict(message))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def start_container(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer, port: int, **settings: str
) -> Container:
    """Cold-start the handler against ``moto`` and a receiver on ``port``."""
    for name, value in moto.environ().items():
        monkeypatch.setenv(name, value)
    sqs = boto3.client("sqs", **moto.client_kwargs())
    queue_url = sqs.create_queue(QueueName=f"continuation-{time.monotonic_ns()}")["QueueUrl"]
    environ = {
        ENV.LOGSTASH_HOST: "127.0.0.1",
        ENV.LOGSTASH_PORT: str(port),
        ENV.LOGSTASH_POOL_SIZE: "2",
        ENV.LOGSTASH_CONNECT_TIMEOUT: "1",
        ENV.LOGSTASH_STALL_TIMEOUT: str(STALL_TIMEOUT),
        ENV.CONTINUATION_QUEUE_URL: queue_url,
        ENV.DEPLOYMENT_ENVIRONMENT: "test",
        **settings,
    }
    handler.cold_start(environ)
    return Container(moto, queue_url)


def stop_container() -> None:
    """Close the container's sockets (a new one, with valid settings and no pool yet)."""
    handler.cold_start({ENV.LOGSTASH_HOST: "127.0.0.1"})


def received(server: JsonLinesReceiver) -> Counter[tuple[str, int]]:
    """How many times each (key, line offset) arrived."""
    return arrivals(server.events)


def arrivals(events: Iterable[Mapping[str, Any]]) -> Counter[tuple[str, int]]:
    """How many times each (key, line offset) is among ``events``."""
    return Counter(
        (event["aws"]["s3"]["object"]["key"], event["log"]["offset"]) for event in events
    )


def expected(key: str, lines: list[bytes], start: int = 0) -> set[tuple[str, int]]:
    return {(key, offset) for offset in offsets(lines, start)}


def emf_documents(output: str) -> list[dict[str, Any]]:
    """The EMF metric documents Powertools printed."""
    return [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]


def log_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The handler's log lines as Powertools' Logger writes them (JSON, with its keys)."""
    formatter = handler.logger.registered_formatter
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == handler.logger.name
    ]


def metric(output: str, name: str) -> float:
    """The sum of one metric over the EMF documents printed."""
    total = 0.0
    for document in emf_documents(output):
        value = document.get(name)
        if isinstance(value, list):
            total += sum(value)
        elif isinstance(value, int | float):
            total += value
    return total


def load_event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def pin_s3_record(
    record: dict[str, Any], bucket: str, stored: Mapping[str, dict[str, Any]]
) -> None:
    """Point an S3 notification record at ``bucket`` and the stored object it names."""
    record["s3"]["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    obj = record["s3"]["object"]
    key = next(k for k in stored if quote_plus(k, safe="/") == obj["key"] or k == obj["key"])
    obj.update(eTag=stored[key]["ETag"], size=stored[key]["size"])
    obj.pop("versionId", None)
    if "VersionId" in stored[key]:
        obj["versionId"] = stored[key]["VersionId"]


def store(moto: MotoServer, bucket: str, key: str, data: bytes, compress: bool) -> dict[str, Any]:
    result: dict[str, Any] = dict(moto.put_object(bucket, key, data, compress=compress))
    result["size"] = moto.client().head_object(Bucket=bucket, Key=key)["ContentLength"]
    return result


def put_lines(
    moto: MotoServer, count: int, name: str, *, compress: bool = True, bucket: str | None = None
) -> tuple[str, str, list[bytes]]:
    """``count`` ALB lines stored as the object ``alb_key(name)`` of ``bucket`` (a new bucket
    when None): the bucket, the key and the lines."""
    bucket = bucket or moto.new_bucket()
    key = alb_key(name)
    lines = alb_lines(count)
    store(moto, bucket, key, joined(lines), compress=compress)
    return bucket, key, lines
