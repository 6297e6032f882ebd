"""The invocation-level pipeline's decisions that need no network: error classes, hop budget,
hand-off of objects not started."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from elb_log_shipper.config import Settings
from elb_log_shipper.errors import ObjectChangedError, SourceError
from elb_log_shipper.logstash import SocketPool
from elb_log_shipper.pipeline import ObjectLedger, Outcome, is_transient, ship_objects
from elb_log_shipper.refs import ObjectRef


def s3_error(code: str, status: int) -> SourceError:
    """A SourceError caused by an S3 answer, wrapped twice as LineReader does."""
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    try:
        try:
            raise ClientError(response, "GetObject")
        except ClientError as cause:
            raise SourceError(f"cannot read: {code}") from cause
    except SourceError as inner:
        outer = SourceError(f"s3://b/k: {inner}")
        outer.__cause__ = inner
        return outer


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (s3_error("NoSuchKey", 404), False),
        (s3_error("NoSuchBucket", 404), False),
        (s3_error("InvalidRange", 416), False),
        (s3_error("AccessDenied", 403), True),
        (s3_error("SlowDown", 503), True),
        (s3_error("InternalError", 500), True),
        (ObjectChangedError("changed"), False),
        (SourceError("gzip data is truncated"), False),
        (SourceError("gzip bomb"), False),
    ],
)
def test_which_source_errors_are_worth_a_retry(error: SourceError, transient: bool) -> None:
    assert is_transient(error) is transient


def test_network_failure_reading_s3_is_transient() -> None:
    error = SourceError("cannot read")
    error.__cause__ = EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    assert is_transient(error)


SETTINGS = Settings(host="127.0.0.1", port=9, deadline_margin=30, max_hops=3)


def test_objects_past_the_margin_are_handed_off_unstarted_and_spent_hops_fail() -> None:
    refs = [
        ObjectRef("logs", "a.log", start_offset=100, hop=1),
        ObjectRef("logs", "b.log", hop=4),
    ]
    shipment = ship_objects(refs, SocketPool(SETTINGS), SETTINGS, remaining=lambda: 10.0)
    first, second = shipment.ledgers
    assert first.outcome is Outcome.HANDED_OFF
    assert first.handoff == ObjectRef("logs", "a.log", start_offset=100, hop=2)
    assert second.outcome is Outcome.FAILED
    assert second.error is not None and "MAX_HOPS=3" in second.error
    assert shipment.delivery_error is None


def test_ledger_reports_counts_not_lines() -> None:
    ledger = ObjectLedger(
        ObjectRef("logs", "a.log", etag="e"), Outcome.SHIPPED, lines=10, parse_failures=3
    )
    record = ledger.as_dict()
    assert record["parsed"] == 7
    assert record["version"] == "e"
    assert record["next_offset"] is None
