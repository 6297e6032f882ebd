"""Randomised faults end to end: hypothesis draws a schedule of faults (resets, early closes,
stalls, a slow reader, refusals, S3 reads cut short; beats windows dropped, closed mid-window,
partly acknowledged, answered late or with garbage) and one gzip object of a few thousand lines
goes through ``pipeline.ship_objects`` over real sockets on 127.0.0.1, to a json_lines receiver
or a beats server. Whatever the schedule, the README's promises must hold:

- every line that is not dropped arrives at least once, by ``event.id``, and a copy more comes
  only from a connection that met a fault (json_lines) or a window not acknowledged (beats);
  the run's ``events_resent`` bounds those copies;
- the ledger: the lines read are the events sent plus the lines dropped, and a run that says it
  finished confirmed as many events as distinct ids arrived;
- a run that hands off or fails names where the rest starts; every line before it was
  confirmed, and a run from there ships exactly the lines from there on;
- each run ends within a bound.

CI runs a few examples of each protocol (``CHAOS_EXAMPLES`` runs more, ``CHAOS_SEED`` other
ones, unshrunk: ``CHAOS_EXAMPLES=300 CHAOS_SEED=7 pytest -n 0 tests/functional/test_chaos.py``).
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from bench.corpus import HEALTH_CHECK_AGENT, alb_lines, with_health_checks
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from elb_log_shipper.config import ENV, PROTOCOL_BEATS, PROTOCOL_JSON_LINES, Settings
from elb_log_shipper.logstash import SocketPool
from elb_log_shipper.pipeline import Shipment, ship_objects
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.report import Outcome
from tests.support.beats_server import BeatsServer, Faults, ack
from tests.support.faults import ConnectionFault, ScheduledServer
from tests.support.lambda_harness import alb_key
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import FaultyS3, MotoServer

pytestmark = pytest.mark.timeout(600)

EXAMPLES = int(os.environ.get("CHAOS_EXAMPLES", "6"))
SEED = os.environ.get("CHAOS_SEED")
LINES = 3_000
# Every BAD_EVERY-th line is no log line: it ships as a parse failure, and costs no other line.
BAD_EVERY = 97
# A bound against hangs, not a speed target: a run takes a few seconds, faults and all (a stall
# is 2.5 s at most, a refusal 1.5 s, and delivery gives up after three stall timeouts of
# failures); four times that much room more for a loaded CI machine.
RUN_SECONDS = 120.0


@dataclass(frozen=True)
class LogObject:
    ref: ObjectRef
    offsets: list[int]
    """The offset of every line."""
    kept: set[int]
    """The offsets of the lines that become events (all but the dropped health checks)."""
    bad: set[int]


def log_text() -> tuple[bytes, list[int], set[int], set[int]]:
    texts = list(with_health_checks(alb_lines(LINES, seed=11)))
    bad = set()
    for index in range(BAD_EVERY - 1, LINES, BAD_EVERY):
        texts[index] = f"not a log line {index}"
        bad.add(index)
    offsets = list(itertools.accumulate((len(text) + 1 for text in texts[:-1]), initial=0))
    dropped = {i for i, text in enumerate(texts) if HEALTH_CHECK_AGENT in text}
    return (
        "".join(f"{text}\n" for text in texts).encode(),
        offsets,
        {offsets[i] for i in range(LINES) if i not in dropped},
        {offsets[i] for i in bad},
    )


@pytest.fixture(scope="module")
def log_object(moto: MotoServer) -> LogObject:
    text, offsets, kept, bad = log_text()
    bucket = moto.new_bucket("chaos")
    key = alb_key("chaos")
    moto.put_object(bucket, key, gzip.compress(text))
    return LogObject(ObjectRef(bucket, key), offsets, kept, bad)


# --- the schedules ------------------------------------------------------------------------------

# Sizes in serialised bytes (json_lines carries about 2.6 KB an event: the object is ~7 MB).
after_bytes = st.integers(min_value=0, max_value=3_000_000)
connection_faults = st.one_of(
    st.none(),
    st.builds(ConnectionFault, kind=st.just("reset"), after_bytes=after_bytes),
    st.builds(ConnectionFault, kind=st.just("close"), after_bytes=after_bytes),
    st.builds(ConnectionFault, kind=st.just("reset_at_end")),
    st.builds(
        ConnectionFault,
        kind=st.just("stall"),
        after_bytes=after_bytes,
        seconds=st.sampled_from([0.3, 1.5, 2.5]),
    ),
    st.builds(
        ConnectionFault,
        kind=st.just("slow"),
        after_bytes=after_bytes,
        bytes_per_second=st.sampled_from([1_000_000, 4_000_000]),
    ),
)


@dataclass(frozen=True)
class WindowFault:
    """What the beats server answers one window with (windows counted over all connections)."""

    kind: str  # ack, close, partial, partial_close, late, late_keepalives, garbage
    events: int = 0
    seconds: float = 0.0


window_faults = st.one_of(
    st.just(WindowFault("ack")),
    st.just(WindowFault("close")),
    st.builds(WindowFault, kind=st.just("partial"), events=st.integers(1, 200)),
    st.builds(WindowFault, kind=st.just("partial_close"), events=st.integers(1, 200)),
    st.builds(WindowFault, kind=st.just("late"), seconds=st.sampled_from([0.3, 2.5])),
    st.builds(WindowFault, kind=st.just("late_keepalives"), seconds=st.sampled_from([0.5, 2.5])),
    st.just(WindowFault("garbage")),
)


@dataclass(frozen=True)
class S3Fault:
    cut_after: int | None = None
    cuts: int = 1
    with_reset: bool = False
    stall_after: int | None = None
    stall_seconds: float = 0.0


# The gzip object is about 400 KB.
s3_faults = st.one_of(
    st.none(),
    st.builds(
        S3Fault,
        cut_after=st.integers(0, 400_000),
        cuts=st.integers(1, 5),
        with_reset=st.booleans(),
    ),
    st.builds(
        S3Fault, stall_after=st.integers(0, 400_000), stall_seconds=st.sampled_from([0.3, 1.5])
    ),
)


@dataclass(frozen=True)
class Schedule:
    pool_size: int
    batch_bytes: int
    stall_timeout: float
    refuse_seconds: float
    handoff_after: int | None
    """Hand off (the deadline margin crossed) once the pipeline asked for the time so often."""
    s3: S3Fault | None
    connections: list[ConnectionFault | None] = field(default_factory=list)
    windows: list[WindowFault] = field(default_factory=list)
    close_mid_window: int = 0
    beats_window_max: int = 2048


def schedules(protocol: str) -> st.SearchStrategy[Schedule]:
    common: dict[str, Any] = {
        "pool_size": st.integers(1, 4),
        "batch_bytes": st.sampled_from([16 * 1024, 64 * 1024, 256 * 1024]),
        "stall_timeout": st.sampled_from([1.0, 2.0]),
        "refuse_seconds": st.sampled_from([0.0, 0.0, 0.5, 1.5]),
        "handoff_after": st.one_of(st.none(), st.integers(2, 40)),
        "s3": s3_faults,
    }
    if protocol == PROTOCOL_JSON_LINES:
        return st.builds(Schedule, connections=st.lists(connection_faults, max_size=6), **common)
    return st.builds(
        Schedule,
        windows=st.lists(window_faults, max_size=12),
        close_mid_window=st.integers(0, 2),
        beats_window_max=st.sampled_from([16, 128, 2048]),
        **common,
    )


# --- the servers ---------------------------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on (yet): connects to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.contextmanager
def listening_after(server: JsonLinesReceiver, seconds: float) -> Iterator[None]:
    """``server`` (made with ``listen_now=False`` unless ``seconds`` is 0) refuses connections
    for ``seconds``, then listens."""
    timer = threading.Timer(seconds, server.listen)
    if seconds:
        timer.start()
    try:
        yield
    finally:
        timer.cancel()
        server.stop()


class BeatsScript:
    """The ``Faults.reply`` of a schedule of window faults; records what it confirmed."""

    def __init__(self, windows: list[WindowFault], stall_timeout: float) -> None:
        self.windows = windows
        self.stall_timeout = stall_timeout
        self.count = itertools.count()
        self.lock = threading.Lock()
        self.confirmed: collections.Counter[str] = collections.Counter()
        self.garbage = False

    def _confirm(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.confirmed.update(event["event"]["id"] for event in events)

    def __call__(
        self, sock: socket.socket, connection: int, number: int, events: list[dict[str, Any]]
    ) -> bool:
        index = next(self.count)
        fault = self.windows[index] if index < len(self.windows) else WindowFault("ack")
        if fault.kind == "close":
            return False
        if fault.kind == "garbage":
            self.garbage = True
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            return False
        seq = 0
        if fault.kind in ("partial", "partial_close"):
            seq = min(fault.events, len(events) - 1)
            if seq:
                sock.sendall(ack(seq))
                self._confirm(events[:seq])
            if fault.kind == "partial_close":
                return False
        elif fault.kind == "late":
            time.sleep(fault.seconds)
            if fault.seconds >= self.stall_timeout:
                # The client gave up on the connection before this ACK: it confirms nothing.
                sock.sendall(ack(len(events)))
                return True
        elif fault.kind == "late_keepalives":
            end = time.monotonic() + fault.seconds
            while time.monotonic() < end:
                time.sleep(0.2)
                sock.sendall(ack(0))
        sock.sendall(ack(len(events)))
        self._confirm(events[seq:])
        return True


# --- one run -------------------------------------------------------------------------------------


def asks_until_handoff(after: int | None) -> Callable[[], float]:
    """``remaining()`` of an invocation with time enough, or one whose margin is crossed once
    it was asked ``after`` times (the margin is 10 s; the hard deadline is far)."""
    asked = itertools.count(1)

    def remaining() -> float:
        if after is not None and next(asked) > after:
            return 10.0
        return 100.0

    return remaining


def ids_by_offset(events: list[dict[str, Any]], key: str) -> dict[str, int]:
    """``event.id`` -> ``log.offset`` of the object's events; an id always names one line."""
    out: dict[str, int] = {}
    for event in events:
        assert event["aws"]["s3"]["object"]["key"] == key
        event_id, offset = event["event"]["id"], event["log"]["offset"]
        assert out.setdefault(event_id, offset) == offset, f"{event_id} names two lines"
    return out


def run(
    ref: ObjectRef,
    protocol: str,
    port: int,
    schedule: Schedule,
    s3_client: Any,
    *,
    remaining: Callable[[], float],
) -> tuple[Shipment, float]:
    settings = Settings(
        host="127.0.0.1",
        port=port,
        protocol=protocol,
        pool_size=schedule.pool_size,
        batch_bytes=schedule.batch_bytes,
        stall_timeout=schedule.stall_timeout,
        connect_timeout=1.0,
        deadline_margin=10.0,
        beats_window_max=schedule.beats_window_max,
        drop_user_agent_prefixes=(HEALTH_CHECK_AGENT,),
    )
    pool = SocketPool(settings)
    started = time.monotonic()
    try:
        shipment = ship_objects(
            [ref],
            pool,
            settings,
            remaining=remaining,
            s3_client=s3_client,
            privacy=settings.privacy_rules(),
        )
    finally:
        pool.close()
    return shipment, time.monotonic() - started


def check_ledger(log: LogObject, shipment: Shipment) -> None:
    (result,) = shipment.results
    start = result.ref.start_offset
    assert result.parsed + result.parse_failures + result.dropped == result.lines
    if result.outcome is Outcome.SHIPPED:
        read = [o for o in log.offsets if o >= start]
        assert result.lines == len(read), result
        assert result.dropped == len([o for o in read if o not in log.kept]), result
        assert result.parse_failures == len([o for o in read if o in log.bad]), result
        assert result.events_sent == result.lines - result.dropped, result
    if result.outcome is Outcome.HANDED_OFF and not result.error:
        # Stopped at the deadline: it read every line before where the rest starts.
        assert result.next_offset is not None
        read = [o for o in log.offsets if start <= o < result.next_offset]
        assert result.lines == len(read), result
        assert result.events_sent == result.lines - result.dropped, result


def resume_point(shipment: Shipment) -> int | None:
    """Where the rest of the object starts, or None when it was all shipped."""
    (result,) = shipment.results
    if result.outcome is Outcome.SHIPPED and shipment.delivery_error is None:
        return None
    assert result.outcome in (Outcome.HANDED_OFF, Outcome.FAILED), result
    return result.ref.start_offset if result.next_offset is None else result.next_offset


def events_resent(shipment: Shipment) -> int:
    return sum(r.events_resent for r in shipment.results) + shipment.confirmation.events_resent


def check_resume(
    log: LogObject,
    protocol: str,
    *,
    schedule: Schedule,
    moto: MotoServer,
    confirmed: set[int],
    resume_at: int,
) -> None:
    """Every kept line before ``resume_at`` was confirmed; a healthy run from there ships the
    kept lines from there on, each once, and says it finished."""
    before = {o for o in log.kept if o < resume_at}
    assert before <= confirmed, f"{len(before - confirmed)} lines before the resume point lost"
    assert resume_at in log.offsets or resume_at == log.offsets[-1] + 1
    healthy: JsonLinesReceiver = (
        BeatsServer() if protocol == PROTOCOL_BEATS else JsonLinesReceiver()
    )
    rest = ObjectRef(log.ref.bucket, log.ref.key, start_offset=resume_at, hop=1)
    with healthy:
        shipment, _ = run(
            rest, protocol, healthy.port, schedule, moto.client(), remaining=lambda: 100.0
        )
        healthy.wait_idle()
        arrived = collections.Counter(ids_by_offset(healthy.events, log.ref.key).values())
        copies = len(healthy.events)
    assert shipment.delivery_error is None and shipment.results[0].outcome is Outcome.SHIPPED
    assert set(arrived) == {o for o in log.kept if o >= resume_at}
    assert copies == len(arrived), "a healthy run sent a line twice"
    check_ledger(log, shipment)


def chaos(log: LogObject, moto: MotoServer, protocol: str, schedule: Schedule) -> None:
    s3 = schedule.s3 or S3Fault()
    faulty = FaultyS3(
        moto,
        cut_after=s3.cut_after,
        cuts_left=s3.cuts,
        cut_with_reset=s3.with_reset,
        stall_after=s3.stall_after,
    )
    port = free_port() if schedule.refuse_seconds else 0
    listen_now = not schedule.refuse_seconds
    script = BeatsScript(schedule.windows, schedule.stall_timeout)
    server: ScheduledServer | BeatsServer
    if protocol == PROTOCOL_BEATS:
        faults = Faults(reply=script, close_mid_window_connections=schedule.close_mid_window)
        server = BeatsServer(faults=faults, port=port, listen_now=listen_now)
    else:
        server = ScheduledServer(schedule.connections, port=port, listen_now=listen_now)
    release = threading.Timer(s3.stall_seconds, faulty.release)
    with faulty, listening_after(server, schedule.refuse_seconds):
        if s3.stall_after is not None:
            release.start()
        shipment, seconds = run(
            log.ref,
            protocol,
            server.port,
            schedule,
            faulty.client(),
            remaining=asks_until_handoff(schedule.handoff_after),
        )
        release.cancel()
        server.wait_idle()
        received = ids_by_offset(server.events, log.ref.key)
        copies = collections.Counter(event["event"]["id"] for event in server.events)
        if protocol == PROTOCOL_BEATS:
            confirmed_copies = script.confirmed
            confirmed_ids = set(script.confirmed)
        else:
            assert isinstance(server, ScheduledServer)
            ended = [r for r in server.records if r.index in server.ended and r.error is None]
            confirmed_ids = {event["event"]["id"] for r in ended for event in r.events}
            confirmed_copies = collections.Counter(
                event["event"]["id"]
                for record in ended
                if record.index not in server.faulted
                for event in record.events
            )
    (result,) = shipment.results
    assert seconds < RUN_SECONDS, f"the run took {seconds:.1f} s"
    assert set(received.values()) <= log.kept, "a dropped line was shipped"
    # A copy more comes only from a connection that failed or a window not acknowledged: no
    # line is confirmed twice, and every copy more was counted as resent.
    assert max(confirmed_copies.values(), default=0) <= 1, "a line was confirmed twice"
    duplicates = sum(copies.values()) - len(copies)
    assert duplicates <= events_resent(shipment), (duplicates, events_resent(shipment), result)
    check_ledger(log, shipment)
    if script.garbage:
        # No beats input: a clear failure at once, naming the setting, not a wait.
        assert result.error is not None and ENV.LOGSTASH_PROTOCOL in result.error, result
    resume_at = resume_point(shipment)
    if resume_at is None:
        assert set(received.values()) == log.kept, "lines lost"
        assert shipment.events_confirmed == len(received), (shipment.events_confirmed, result)
        return
    confirmed = {received[i] for i in confirmed_ids}
    check_resume(
        log, protocol, schedule=schedule, moto=moto, confirmed=confirmed, resume_at=resume_at
    )


def seeded(test: Any) -> Any:
    return test if SEED is None else seed(int(SEED))(test)


CHAOS_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=SEED is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
    # A hunt (CHAOS_SEED) reports its first failing schedule as drawn: shrinking one re-runs
    # real sockets and timeouts for many minutes.
    phases=tuple(Phase) if SEED is None else (Phase.generate,),
)


@pytest.mark.parametrize("protocol", [PROTOCOL_JSON_LINES, PROTOCOL_BEATS])
@CHAOS_SETTINGS
@seeded
@given(data=st.data())
def test_every_line_arrives_under_random_faults(
    log_object: LogObject, moto: MotoServer, protocol: str, data: st.DataObject
) -> None:
    chaos(log_object, moto, protocol, data.draw(schedules(protocol), label="schedule"))
