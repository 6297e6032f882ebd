"""The ledger of an invocation (``pipeline.ship_objects``) over real sockets: each object's
outcome when the invocation's last confirmation fails, the hard deadline it fails at, the hop
budget's boundary, the first batch of an object started late, and the invocation's counts.
Local files; json_lines receivers on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import pytest
from bench.corpus import alb_lines

from elb_log_shipper.config import Settings
from elb_log_shipper.logstash import SocketPool
from elb_log_shipper.pipeline import HANDOFF_RESERVE_SECONDS, ship_objects
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.report import Outcome
from tests.support.faults import NeverClosingServer
from tests.support.receiver import JsonLinesReceiver

pytestmark = pytest.mark.timeout(60)


def log_file(tmp_path: Path, name: str, lines: int) -> tuple[ObjectRef, list[int]]:
    """A local ALB log of ``lines`` lines: its ref and the offset of each line."""
    texts = list(alb_lines(lines, seed=len(name) + lines))
    path = tmp_path / name
    path.write_text("".join(f"{text}\n" for text in texts))
    offsets = list(itertools.accumulate((len(text) + 1 for text in texts[:-1]), initial=0))
    return ObjectRef.local(str(path)), offsets[:lines]


def settings_for(server: JsonLinesReceiver, **changes: object) -> Settings:
    values: dict[str, object] = {"host": "127.0.0.1", "port": server.port, "pool_size": 1}
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def test_a_failed_final_confirmation_resumes_each_object_from_its_confirmed_progress(
    tmp_path: Path,
) -> None:
    """An invocation's objects are confirmed together at its end. Here Logstash closes (confirms)
    only the first connection, which carries the small object whole and the start of the large
    one, and then reads everything else without ever closing. Each object must then say how
    much of it Logstash confirmed: none of them is SHIPPED with lines unconfirmed (mutants left
    every object after an empty or a wholly confirmed one SHIPPED: their lines lost)."""
    empty, _ = log_file(tmp_path, "a-empty.log", 0)
    small, small_offsets = log_file(tmp_path, "b-small.log", 20)
    large, large_offsets = log_file(tmp_path, "c-large.log", 100)
    last, _ = log_file(tmp_path, "d-last.log", 10)
    margin = 4.0
    with NeverClosingServer(closing=1) as server:
        settings = settings_for(server, stall_timeout=30.0, deadline_margin=margin)
        pool = SocketPool(settings, rotate_bytes=256 * 1024)
        end = time.monotonic() + 8.0
        shipment = ship_objects(
            [empty, small, large, last], pool, settings, remaining=lambda: end - time.monotonic()
        )
        returned = 8.0 - (end - time.monotonic())
        pool.close()
        confirmed: dict[str, set[int]] = {}
        for event in server.records[0].events:
            confirmed.setdefault(event["log"]["file"]["path"], set()).add(event["log"]["offset"])
    assert shipment.delivery_error is not None
    # It fails at the hard deadline, which keeps HANDOFF_RESERVE_SECONDS (at most half the
    # margin) for the hand-off messages.
    assert returned == pytest.approx(8.0 - min(HANDOFF_RESERVE_SECONDS, margin / 2), abs=0.3)
    by_key = {result.ref.key: result for result in shipment.results}
    # Nothing to confirm: not sent again for nothing.
    assert by_key[empty.key].outcome is Outcome.SHIPPED
    assert confirmed[small.key] == set(small_offsets)
    assert by_key[small.key].outcome is Outcome.SHIPPED
    # Part-way: handed off from its first line not confirmed, and every line before it was.
    part = by_key[large.key]
    assert part.outcome is Outcome.HANDED_OFF, part
    assert part.next_offset in large_offsets[1:]
    assert {o for o in large_offsets if o < part.next_offset} == confirmed[large.key]
    assert part.handoff == dataclasses.replace(large, start_offset=part.next_offset, hop=1)
    # Nothing of it confirmed: failed as a delivery failure, which the handler parks in the
    # continuation queue rather than failing the event.
    rest = by_key[last.key]
    assert last.key not in confirmed
    assert rest.outcome is Outcome.FAILED and rest.delivery_failed, rest


def test_the_last_hop_within_max_hops_still_ships(tmp_path: Path) -> None:
    """An object handed off exactly ``MAX_HOPS`` times ships; one more hop fails it."""
    ref, offsets = log_file(tmp_path, "a.log", 10)
    with JsonLinesReceiver() as server:
        settings = settings_for(server, max_hops=3)
        pool = SocketPool(settings)
        within, past = (
            ship_objects(
                [dataclasses.replace(ref, hop=hop)], pool, settings, remaining=lambda: 60.0
            )
            for hop in (3, 4)
        )
        pool.close()
        server.wait_idle()
    assert within.results[0].outcome is Outcome.SHIPPED
    assert past.results[0].outcome is Outcome.FAILED
    assert len(server.events) == len(offsets)


def test_an_object_started_before_the_margin_ships_its_first_batch(tmp_path: Path) -> None:
    """The margin is crossed just after the object was started (a slow first GET, a long inflate
    up to the resume point): its first batch still goes, so that every hop makes progress (a hop
    that handed off where it began would do so again until MAX_HOPS)."""
    ref, offsets = log_file(tmp_path, "a.log", 2_000)
    asked = itertools.count(1)

    def remaining() -> float:
        # The first two asks (the hard deadline, the check before the object starts) see time
        # enough; every later one sees the margin crossed.
        return 100.0 if next(asked) <= 2 else 1.0

    with JsonLinesReceiver() as server:
        settings = settings_for(server, deadline_margin=10.0)
        pool = SocketPool(settings)
        (result,) = ship_objects([ref], pool, settings, remaining=remaining).results
        pool.close()
        server.wait_idle()
    assert result.outcome is Outcome.HANDED_OFF
    assert result.events_sent > 0
    assert result.next_offset == offsets[result.events_sent]
    assert len(server.events) == result.events_sent


def test_the_invocation_counts_every_objects_confirmed_events(tmp_path: Path) -> None:
    """What each object's sender confirmed as it went (a connection confirmed at every 64 KiB),
    and what the invocation's last confirmation did: together, every event once."""
    refs = [log_file(tmp_path, f"{name}.log", lines)[0] for name, lines in (("a", 300), ("b", 700))]
    with JsonLinesReceiver() as server:
        settings = settings_for(server, pool_size=2)
        pool = SocketPool(settings, rotate_bytes=64 * 1024)
        shipment = ship_objects(refs, pool, settings, remaining=lambda: 60.0)
        pool.close()
    assert [result.outcome for result in shipment.results] == [Outcome.SHIPPED] * 2
    assert all(result.events_confirmed > 0 for result in shipment.results)
    assert shipment.confirmation is not None and shipment.confirmation.events_confirmed > 0
    assert shipment.events_confirmed == 1_000
