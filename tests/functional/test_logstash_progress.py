"""Confirmed progress (``LogstashSender.confirmed_offset``) against real local servers.

The offset a sender reports is what a retry resumes from, so it must never pass a batch the
server has not read, whichever connection or sender confirmed the batches.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from elb_log_shipper.errors import DeliveryError
from elb_log_shipper.logstash import LogstashSender, SocketPool
from tests.functional.test_logstash_delivery import all_ids, settings_for
from tests.support.receiver import RECV_BYTES, ConnectionRecord, JsonLinesReceiver, json_lines

pytestmark = pytest.mark.timeout(60)

# Each batch stands for this many bytes of the source object, so offsets differ from data sizes.
SOURCE_BYTES_PER_BATCH = 1000


def numbered_batches(count: int, per_batch: int) -> list[tuple[bytes, int, int]]:
    """(JSON lines, events, end_offset) for ``count`` events with ids ``e-0`` onwards."""
    events = [{"id": f"e-{i}", "message": "x" * 200} for i in range(count)]
    return [
        (
            json_lines(events[i : i + per_batch]),
            len(events[i : i + per_batch]),
            (i // per_batch + 1) * SOURCE_BYTES_PER_BATCH,
        )
        for i in range(0, count, per_batch)
    ]


def received_prefix_offset(server: JsonLinesReceiver, per_batch: int, count: int) -> int | None:
    """The end offset of the longest prefix of batches whose every event the server read."""
    seen = set(server.event_ids())
    offset = None
    for start in range(0, count, per_batch):
        if not all(f"e-{i}" in seen for i in range(start, min(count, start + per_batch))):
            break
        offset = (start // per_batch + 1) * SOURCE_BYTES_PER_BATCH
    return offset


class HoldingServer(JsonLinesReceiver):
    """Reads each connection to EOF, but holds the close of the one that carried ``e-0`` until
    ``on_hold`` returns: the earliest batch is confirmed last."""

    def __init__(self, on_hold: Any, **kwargs: Any) -> None:
        self.on_hold = on_hold
        self.held = threading.Event()
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        super().serve(sock, record)
        if any(event.get("id") == "e-0" for event in record.events):
            self.held.set()
            self.on_hold()


def test_earliest_batch_confirmed_last_holds_the_offset_back() -> None:
    """Out-of-order confirmations across pooled connections: later batches confirmed on other
    connections do not move the offset past a batch still waiting for its close."""
    payload = numbered_batches(4000, per_batch=50)
    seen_while_held: list[tuple[int, int | None]] = []
    sender_box: list[LogstashSender] = []

    def on_hold() -> None:
        sender = sender_box[0]
        end = time.monotonic() + 10
        # Wait until another connection has been confirmed while this one is held.
        while sender.stats.events_confirmed == 0 and time.monotonic() < end:
            time.sleep(0.01)
        seen_while_held.append((sender.stats.events_confirmed, sender.confirmed_offset))

    with HoldingServer(on_hold) as server:
        pool = SocketPool(
            settings_for(server, pool_size=2, stall_timeout=15.0), rotate_bytes=64 * 1024
        )
        sender = LogstashSender(pool, deadline=time.monotonic() + 30)
        sender_box.append(sender)
        for data, events, end_offset in payload:
            sender.send(data, events, end_offset)
        sender.finish(time.monotonic() + 30)
        pool.close()

    assert server.held.is_set()
    [(confirmed_elsewhere, offset_while_held)] = seen_while_held
    assert confirmed_elsewhere > 0, "no other connection was confirmed while e-0's was held"
    assert offset_while_held is None
    assert sender.confirmed_offset == payload[-1][2]
    assert set(server.event_ids()) == all_ids(4000)


def test_a_later_senders_finish_confirms_an_earlier_senders_batches(
    logstash: JsonLinesReceiver,
) -> None:
    """``finish(confirm=False)`` leaves the batches on pooled connections; the final
    ``LogstashSender(pool).finish()`` confirms them and the first sender's offset moves."""
    pool = SocketPool(settings_for(logstash, pool_size=2))
    first = LogstashSender(pool, deadline=time.monotonic() + 30)
    payload = numbered_batches(600, per_batch=20)
    for data, events, end_offset in payload:
        first.send(data, events, end_offset)
    stats = first.finish(time.monotonic() + 30, confirm=False)
    assert stats.events_confirmed == 0
    assert first.confirmed_offset is None

    final = LogstashSender(pool).finish(time.monotonic() + 30)
    assert final.events_confirmed == 600
    assert first.confirmed_offset == payload[-1][2]
    assert sorted(logstash.event_ids(), key=lambda i: int(i[2:])) == [f"e-{i}" for i in range(600)]
    pool.close()


def test_batches_cut_into_parts_count_once_all_parts_are_confirmed(
    logstash: JsonLinesReceiver,
) -> None:
    """A batch larger than the confirmation limit is cut and confirmed part by part, on several
    connections; its offset counts only when its last part is confirmed."""
    pool = SocketPool(settings_for(logstash, pool_size=1), rotate_bytes=16 * 1024)
    sender = LogstashSender(pool, deadline=time.monotonic() + 30)
    payload = numbered_batches(1000, per_batch=500)  # ~110 KB per batch: 7 parts each
    for data, events, end_offset in payload:
        sender.send(data, events, end_offset)
    stats = sender.finish(time.monotonic() + 30)
    assert stats.rotations >= 10
    assert sender.confirmed_offset == 2 * SOURCE_BYTES_PER_BATCH
    assert set(logstash.event_ids()) == all_ids(1000)
    pool.close()


class StopsReadingServer(JsonLinesReceiver):
    """Serves the first ``healthy_connections`` connections, then never reads again."""

    def __init__(self, *, healthy_connections: int, **kwargs: Any) -> None:
        self.healthy_connections = healthy_connections
        self._release = threading.Event()
        kwargs.setdefault("rcvbuf", 64 * 1024)
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        if record.index < self.healthy_connections:
            while data := sock.recv(RECV_BYTES):
                self.feed(record, data)
            return
        self._release.wait(30)

    def stop(self) -> None:
        self._release.set()
        super().stop()


def test_offset_after_a_failure_never_passes_an_unread_batch() -> None:
    """Delivery fails part-way: the offset a retry would resume from is covered by what the
    server read, and is not zero (the confirmed part is not shipped again)."""
    count, per_batch = 20_000, 100
    with StopsReadingServer(healthy_connections=3) as server:
        pool = SocketPool(settings_for(server, pool_size=1), rotate_bytes=64 * 1024)
        sender = LogstashSender(pool, deadline=time.monotonic() + 4)
        with pytest.raises(DeliveryError):
            for data, events, end_offset in numbered_batches(count, per_batch):
                sender.send(data, events, end_offset)
            sender.finish(time.monotonic() + 4)
        sender.abort()
        offset = sender.confirmed_offset
        pool.close()
        read_prefix = received_prefix_offset(server, per_batch, count)

    assert offset is not None and offset > 0
    assert read_prefix is not None and offset <= read_prefix
