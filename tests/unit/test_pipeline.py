"""The invocation-level pipeline's decisions that need no network: hop budget, hand-off of
objects not started. (Which source errors are transient is decided, and tested, in source.)"""

from __future__ import annotations

from elb_log_shipper.config import Settings
from elb_log_shipper.logstash import SocketPool
from elb_log_shipper.pipeline import ship_objects
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.report import ObjectResult, Outcome

SETTINGS = Settings(host="127.0.0.1", port=9, deadline_margin=30, max_hops=3)


def test_objects_past_the_margin_are_handed_off_unstarted_and_spent_hops_fail() -> None:
    refs = [
        ObjectRef("logs", "a.log", start_offset=100, hop=1),
        ObjectRef("logs", "b.log", hop=4),
    ]
    shipment = ship_objects(refs, SocketPool(SETTINGS), SETTINGS, remaining=lambda: 10.0)
    first, second = shipment.results
    assert first.outcome is Outcome.HANDED_OFF
    assert first.handoff == ObjectRef("logs", "a.log", start_offset=100, hop=2)
    assert second.outcome is Outcome.FAILED
    assert second.error is not None and "MAX_HOPS=3" in second.error
    assert shipment.delivery_error is None


def test_result_reports_counts_not_lines() -> None:
    result = ObjectResult(
        ObjectRef("logs", "a.log", etag="e"), Outcome.SHIPPED, lines=10, parse_failures=3
    )
    record = result.as_dict()
    assert record["parsed"] == 7
    assert record["version"] == "e"
    assert record["next_offset"] is None
