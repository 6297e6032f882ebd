"""The pipeline's decisions that need no network: hop budget, hand-off of objects not started,
and bad events that must not cost their object (local files, a list sink). Which source errors
are transient is decided, and tested, in source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from bench.corpus import alb_lines

from elb_log_shipper.config import Settings
from elb_log_shipper.logstash import SocketPool
from elb_log_shipper.pipeline import TRUNCATED_TAG, ship_object, ship_objects
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


# One bad event never costs its object (issue 12 items 6 and 7).


class ListSink:
    """Keeps every event sent, and each batch's end offset."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.end_offsets: list[int] = []

    def send(
        self, batch: bytes, events: int, end_offset: int, line_offsets: list[int] | None = None
    ) -> None:
        lines = batch.splitlines()
        assert len(lines) == events
        self.events += [orjson.loads(line) for line in lines]
        self.end_offsets.append(end_offset)


GOOD = next(iter(alb_lines(1, seed=7)))
HUGE = "123456789012345678901"  # past 2^64


def with_field(line: str, index: int, value: str) -> str:
    """``line`` with its ``index``-th space-separated field (before the request) replaced."""
    head, quote, rest = line.partition('"')
    fields = head.split(" ")
    fields[index] = value
    return " ".join(fields) + quote + rest


def with_url(line: str, url: str) -> str:
    """``line`` with the URL of its request replaced."""
    parts = line.split('"')
    method, _, version = parts[1].split(" ")
    parts[1] = f"{method} {url} {version}"
    return '"'.join(parts)


@pytest.mark.parametrize(
    "poison",
    [
        # The port of the URL as the client sent it, a status, a byte count.
        with_url(GOOD, f"https://www.example.com:{HUGE}/"),
        with_field(GOOD, 9, HUGE),
        with_field(GOOD, 10, HUGE),
    ],
)
def test_a_line_with_a_20_digit_integer_gives_one_event_and_costs_no_other(
    tmp_path: Path, poison: str
) -> None:
    assert poison != GOOD
    path = tmp_path / "poison.log"
    path.write_text(f"{GOOD}\n{poison}\n{GOOD}\n")
    sink = ListSink()
    result = ship_object(ObjectRef.local(str(path)), sink)
    assert result.outcome is Outcome.SHIPPED
    assert result.lines == len(sink.events) == 3
    first, bad, last = sink.events
    assert "tags" not in first and "tags" not in last
    assert bad["event"]["original"] == poison
    assert HUGE in orjson.dumps(bad).decode()
    # Kept as text by the parser, or a tagged failure here: either way counted, never lost.
    if "tags" in bad:
        assert result.parse_failures == 1
    assert sink.end_offsets == [path.stat().st_size]


def test_an_event_over_max_event_bytes_ships_cut_and_tagged(tmp_path: Path) -> None:
    # A 250 KiB URL: its event would be about three times that.
    long_path = "/" + "a" * (250 * 1024)
    huge = with_url(GOOD, f"https://www.example.com:443{long_path}")
    path = tmp_path / "long.log"
    path.write_text(f"{GOOD}\n{huge}\n{GOOD}\n")
    sink = ListSink()
    limit = 60 * 1024
    result = ship_object(ObjectRef.local(str(path)), sink, max_event_bytes=limit)
    assert result.lines == len(sink.events) == 3
    assert result.oversized_events == 1
    first, cut, last = sink.events
    assert len(orjson.dumps(cut)) <= limit
    assert cut["tags"] == [TRUNCATED_TAG]
    assert int(cut["labels"]["elb_original_event_bytes"]) > 3 * 250 * 1024
    assert cut["event"]["original"] == huge[: len(cut["event"]["original"])]
    assert cut["log"]["offset"] == len(GOOD) + 1
    assert "tags" not in first and "tags" not in last


def test_a_stop_hands_off_at_a_line_and_the_batch_before_it_says_so(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text(f"{GOOD}\n" * 3)
    asked = []

    def should_stop() -> bool:
        asked.append(True)
        return True

    sink = ListSink()
    result = ship_object(ObjectRef.local(str(path)), sink, should_stop=should_stop)
    assert result.outcome is Outcome.HANDED_OFF
    assert result.next_offset == 0
    assert result.handoff == ObjectRef("", str(path), hop=1)
    assert sink.events == []
