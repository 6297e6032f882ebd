"""One object, end to end: source -> events -> JSON lines -> sink, with a report; and the objects
of one Lambda invocation, deadline-aware, with one confirmation.

The per-line loop here is the product's hot path: read a batch of lines, build each event,
serialise it with orjson, and hand the sink batches of a few hundred KB. Everything per object
(the event-id prefix, the cloud and S3 sub-objects) is computed once, before the first line.

``ship_objects`` runs ``ship_object`` over the objects of one invocation. Each object's sender
finishes with ``confirm=False`` and one confirming finish ends the invocation: one TCP/TLS
handshake per pooled connection per invocation instead of per object, and nothing is called
delivered, nor handed off, before that confirmation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from elb_log_shipper.config import DEFAULT_BATCH_BYTES, ENV, Settings
from elb_log_shipper.errors import DeliveryError, SourceError
from elb_log_shipper.formats import EventBuilder
from elb_log_shipper.framing import MAX_LINE_BYTES, OversizedLine
from elb_log_shipper.logstash import DeliveryStats, LogstashSender, SocketPool
from elb_log_shipper.objectkey import parse_key
from elb_log_shipper.privacy import PrivacyRules
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.source import LineReader

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "HANDOFF_RESERVE_SECONDS",
    "EventSink",
    "ObjectLedger",
    "ObjectReport",
    "Outcome",
    "Shipment",
    "ship_object",
    "ship_objects",
]

# Events per batch before the first batch tells us their average size.
_FIRST_BATCH_EVENTS = 64


class EventSink(Protocol):
    """Where serialised events go: Logstash, stdout, a test's list."""

    def send(self, batch: bytes, events: int) -> None:
        """Take ``events`` complete JSON lines (``batch`` ends with a newline)."""


@dataclass(slots=True)
class ObjectReport:
    """What happened to one object. ``next_offset`` is set when it stopped early (hand-off)."""

    uri: str
    start_offset: int = 0
    lines: int = 0
    events: int = 0
    parse_failures: int = 0
    dropped: int = 0
    """Lines a drop filter matched (``lines = events + dropped``)."""
    bytes_read: int = 0
    bytes_decompressed: int = 0
    seconds: float = 0.0
    newest_timestamp: str | None = None
    next_offset: int | None = None
    etag: str | None = None
    version_id: str | None = None
    read_retries: int = 0
    """Times the S3 stream broke mid-object and was resumed."""
    error: SourceError | None = field(default=None, repr=False)

    @property
    def completed(self) -> bool:
        return self.next_offset is None and self.error is None

    def as_dict(self) -> dict[str, object]:
        return {
            "object": self.uri,
            "start_offset": self.start_offset,
            "lines": self.lines,
            "events": self.events,
            "parse_failures": self.parse_failures,
            "dropped": self.dropped,
            "bytes_read": self.bytes_read,
            "bytes_decompressed": self.bytes_decompressed,
            "seconds": round(self.seconds, 3),
            "newest_timestamp": self.newest_timestamp,
            "next_offset": self.next_offset,
            "error": None if self.error is None else str(self.error),
        }


def ship_object(
    ref: ObjectRef,
    sink: EventSink,
    *,
    keep_original: bool = True,
    privacy: PrivacyRules | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    s3_client: S3Client | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ObjectReport:
    """Read ``ref``, turn every line into one event and send them to ``sink`` in batches.

    ``should_stop`` is asked before each batch of lines (about a MiB of log), and by the reader
    while an S3 read stalls; when it answers True the function returns with
    ``report.next_offset`` set to the first line not shipped. ``privacy`` redacts and drops
    lines (``report.dropped``) as ``EventBuilder`` says. A SourceError (unreadable object, gzip
    bomb, changed object) is returned in ``report.error`` after the lines before it were sent;
    delivery errors from the sink propagate.

    >>> class Stdout:
    ...     def send(self, batch: bytes, events: int) -> None: ...
    >>> ship_object(ObjectRef.local("alb.log.gz"), Stdout()).events  # doctest: +SKIP
    1000
    """
    started = time.monotonic()
    report = ObjectReport(uri=ref.uri, start_offset=ref.start_offset)
    reader = LineReader(ref, s3_client, should_stop=should_stop)
    try:
        reader.open()
    except SourceError as error:
        report.error = error
        report.seconds = time.monotonic() - started
        return report
    report.etag, report.version_id = reader.etag, reader.version_id
    info = parse_key(ref.key)
    builder = EventBuilder(
        bucket=ref.bucket,
        key=ref.key,
        version=reader.version_id or reader.etag,
        region=info.region,
        account=info.account,
        keep_original=keep_original,
        privacy=privacy,
    )
    build = builder.build
    dumps = orjson.dumps
    newest = ""
    failures = 0
    per_batch = _FIRST_BATCH_EVENTS
    pending: list[bytes] = []
    append = pending.append
    try:
        with reader:
            for lines in reader:
                if should_stop is not None and lines and should_stop():
                    # Hand off at a line boundary: this batch is the next hop's first.
                    report.next_offset = lines[0][0]
                    break
                report.lines += len(lines)
                for offset, raw in lines:
                    if type(raw) is bytes:
                        event = build(raw, offset)
                        if event is None:
                            continue  # dropped by a filter: counted by the builder
                    else:
                        event = _oversized(builder, raw, offset)
                    if "tags" in event:
                        failures += 1
                    elif event["@timestamp"] > newest:
                        newest = event["@timestamp"]
                    append(dumps(event))
                    if len(pending) >= per_batch:
                        per_batch = _flush(sink, pending, batch_bytes)
        if reader.stopped_at is not None:
            report.next_offset = reader.stopped_at
    except SourceError as error:
        report.error = error
    finally:
        if pending:
            _flush(sink, pending, batch_bytes)
        report.dropped = builder.dropped
        report.events = report.lines - report.dropped
        report.parse_failures = failures
        report.newest_timestamp = newest or None
        report.bytes_read = reader.bytes_read
        report.bytes_decompressed = reader.bytes_decompressed
        report.read_retries = reader.retries
        report.seconds = time.monotonic() - started
    return report


def _flush(sink: EventSink, pending: list[bytes], batch_bytes: int) -> int:
    """Send the pending events as one batch; return how many events fill the next batch."""
    pending.append(b"")
    payload = b"\n".join(pending)
    events = len(pending) - 1
    pending.clear()
    sink.send(payload, events)
    return max(16, batch_bytes * events // max(len(payload), 1))


def _oversized(builder: EventBuilder, raw: bytes, offset: int) -> dict[str, Any]:
    full = raw.full_length if isinstance(raw, OversizedLine) else len(raw)
    return builder.failure(
        raw.decode(errors="replace"),
        offset,
        f"line of {full} bytes is longer than the {MAX_LINE_BYTES}-byte limit; "
        "its beginning is kept",
    )


# --- the objects of one invocation ---------------------------------------------------------------

# Kept after the hard deadline for what follows the confirmation: sending the hand-off messages
# (the handler's SQS client times out within it), flushing metrics, returning. At most half the
# margin, so that a small margin still leaves the flush the other half.
HANDOFF_RESERVE_SECONDS = 5.0


class Outcome(StrEnum):
    """What an invocation did with one object."""

    SHIPPED = "shipped"
    """Read to the end; every line sent (delivered once the invocation's confirmation passed)."""
    HANDED_OFF = "handed_off"
    """Stopped at a line for the deadline; a continuation message carries on from there."""
    REJECTED = "rejected"
    """Cannot be shipped and retrying will not help (gone, changed, bad gzip): counted, logged,
    not retried. Its lines before the fault were sent."""
    FAILED = "failed"
    """Not shipped now, may be later (S3 or Logstash failing, hop budget spent): the invocation,
    or its SQS message, fails so that it is retried and in the end dead-lettered."""
    DEAD_LETTERED = "dead_lettered"
    """Past its hop budget and sent straight to the dead-letter queue (the handler does this when
    ``DEAD_LETTER_QUEUE_URL`` is set): nothing is retried; people replay it after a fix."""


@dataclass(slots=True)
class ObjectLedger:
    """One object's account in one invocation: the structured log line and the metrics.

    ``lines`` were read, ``parsed`` became events without the parse-failure tag, ``events_sent``
    were handed to Logstash (delivered only if the invocation's confirmation passed). ``handoff``
    is the continuation to send (the rest of the object, one hop further) when the outcome is
    ``HANDED_OFF``.
    """

    ref: ObjectRef
    outcome: Outcome
    lines: int = 0
    parse_failures: int = 0
    dropped: int = 0
    """Lines a drop filter matched: never events, never sent (``lines = parsed + parse_failures
    + dropped``)."""
    events_sent: int = 0
    bytes_read: int = 0
    retries: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    newest_timestamp: str | None = None
    handoff: ObjectRef | None = None
    error: str | None = None
    hops_spent: bool = False
    """FAILED because the object was handed off more than ``max_hops`` times."""

    @property
    def parsed(self) -> int:
        return self.lines - self.parse_failures - self.dropped

    def as_dict(self) -> dict[str, object]:
        """The ledger as a JSON-ready dict (log line, handler result); no log line content.

        >>> ObjectLedger(ObjectRef("logs", "x.log"), Outcome.SHIPPED, lines=2).as_dict()["parsed"]
        2
        """
        ref = self.ref
        return {
            "bucket": ref.bucket,
            "key": ref.key,
            "version": ref.version_id or ref.etag,
            "outcome": self.outcome.value,
            "hop": ref.hop,
            "start_offset": ref.start_offset,
            "next_offset": None if self.handoff is None else self.handoff.start_offset,
            "lines": self.lines,
            "parsed": self.parsed,
            "parse_failures": self.parse_failures,
            "dropped": self.dropped,
            "events_sent": self.events_sent,
            "bytes_read": self.bytes_read,
            "retries": self.retries,
            "reconnects": self.reconnects,
            "seconds": round(self.seconds, 3),
            "newest_timestamp": self.newest_timestamp,
            "error": self.error,
        }


@dataclass(slots=True)
class Shipment:
    """The objects of one invocation: one ledger per object, in order, and the confirmation.

    ``delivery_error`` is set when Logstash could not be reached or did not read in time; then
    every object whose events were not confirmed is ``FAILED``.
    """

    ledgers: list[ObjectLedger]
    events_confirmed: int = 0
    seconds: float = 0.0
    delivery_error: DeliveryError | None = None


def ship_objects(
    refs: Sequence[ObjectRef],
    pool: SocketPool,
    settings: Settings,
    *,
    remaining: Callable[[], float],
    s3_client: S3Client | None = None,
    privacy: PrivacyRules | None = None,
) -> Shipment:
    """Ship the objects of one invocation to Logstash, stopping in time for the deadline.

    ``remaining()`` gives the seconds left before the invocation is killed (the Lambda
    context's ``get_remaining_time_in_millis() / 1000``). Two deadlines: when ``remaining()``
    reaches ``settings.deadline_margin`` the object being read stops at a line and the objects
    not started are not started (each gets a ``handoff``); sending, flushing and the
    confirmation may go on until the hard deadline, ``HANDOFF_RESERVE_SECONDS`` (at most half
    the margin) before the end. An object started ships at least one batch of lines, so every
    hop makes progress. An object handed off more than ``settings.max_hops`` times is
    ``FAILED``, so that it dead-letters instead of circling.

    Sending the continuations is the caller's (after this returns: they may only go once the
    confirmation passed, which this function does last). A DeliveryError does not propagate:
    it is ``Shipment.delivery_error``, the objects whose events were not confirmed are
    ``FAILED``, the objects after it are not started, and the pool drops its connections so
    that no unconfirmed batch outlives the invocation.

    >>> shipment = ship_objects([ObjectRef("logs", "AWSLogs/1/x.log.gz")], SocketPool(settings),
    ...     settings, remaining=lambda: context.get_remaining_time_in_millis() / 1000)
    ... # doctest: +SKIP
    >>> [ledger.outcome.value for ledger in shipment.ledgers]  # doctest: +SKIP
    ['shipped']
    """
    started = time.monotonic()
    margin = settings.deadline_margin
    hard_deadline = started + remaining() - min(HANDOFF_RESERVE_SECONDS, margin / 2)

    def out_of_time() -> bool:
        return remaining() <= margin

    shipment = Shipment(ledgers=[])
    for ref in refs:
        if shipment.delivery_error is not None:
            # Logstash is failing: every later object would wait as long to fail the same way.
            shipment.ledgers.append(
                ObjectLedger(ref, Outcome.FAILED, error="not started: delivery to Logstash failed")
            )
        elif ref.hop > settings.max_hops:
            shipment.ledgers.append(
                ObjectLedger(
                    ref,
                    Outcome.FAILED,
                    error=f"handed off {ref.hop} times, more than {ENV.MAX_HOPS}="
                    f"{settings.max_hops}: it is failing, not slow; find out why, then replay "
                    "it from the dead-letter queue",
                    hops_spent=True,
                )
            )
        elif out_of_time():
            # Not started before the margin: the next invocation starts it, never dropped.
            shipment.ledgers.append(
                ObjectLedger(ref, Outcome.HANDED_OFF, handoff=replace(ref, hop=ref.hop + 1))
            )
        else:
            shipment.ledgers.append(
                _ship_one(
                    ref,
                    pool,
                    settings,
                    hard_deadline=hard_deadline,
                    out_of_time=out_of_time,
                    s3_client=s3_client,
                    shipment=shipment,
                    privacy=privacy,
                )
            )
    if shipment.delivery_error is None:
        try:
            final = LogstashSender(pool).finish(hard_deadline)
        except DeliveryError as error:
            shipment.delivery_error = error
        else:
            shipment.events_confirmed += final.events_confirmed
    if shipment.delivery_error is not None:
        _unconfirmed_fail(shipment)
        pool.close()
    shipment.seconds = time.monotonic() - started
    return shipment


def _ship_one(
    ref: ObjectRef,
    pool: SocketPool,
    settings: Settings,
    *,
    hard_deadline: float,
    out_of_time: Callable[[], bool],
    s3_client: S3Client | None,
    shipment: Shipment,
    privacy: PrivacyRules | None,
) -> ObjectLedger:
    """Ship one object, leaving its batches unconfirmed in the pool."""
    asked = False

    def should_stop() -> bool:
        # The first batch always goes: a hop that shipped nothing would circle until MAX_HOPS.
        nonlocal asked
        if not asked:
            asked = True
            return False
        return out_of_time()

    started = time.monotonic()
    sender = LogstashSender(pool, deadline=hard_deadline)
    try:
        report = ship_object(
            ref,
            sender,
            keep_original=settings.keep_original,
            privacy=privacy,
            batch_bytes=settings.batch_bytes,
            s3_client=s3_client,
            should_stop=should_stop,
        )
        stats = sender.finish(hard_deadline, confirm=False)
    except DeliveryError as error:
        sender.abort()
        shipment.delivery_error = error
        failed = sender.stats
        shipment.events_confirmed += failed.events_confirmed
        return _with_stats(
            ObjectLedger(
                ref,
                Outcome.FAILED,
                seconds=time.monotonic() - started,
                error=f"delivery to Logstash failed: {error}",
            ),
            failed,
        )
    except BaseException:
        sender.abort()
        raise
    shipment.events_confirmed += stats.events_confirmed
    ledger = _with_stats(
        ObjectLedger(
            ref,
            Outcome.SHIPPED,
            lines=report.lines,
            parse_failures=report.parse_failures,
            dropped=report.dropped,
            bytes_read=report.bytes_read,
            seconds=time.monotonic() - started,
            newest_timestamp=report.newest_timestamp,
        ),
        stats,
    )
    ledger.retries += report.read_retries
    if report.error is not None:
        ledger.error = str(report.error)
        ledger.outcome = Outcome.FAILED if report.error.transient else Outcome.REJECTED
    elif report.next_offset is not None:
        ledger.outcome = Outcome.HANDED_OFF
        # The ETag and version read pin the rest of the object, and keep event.id the same.
        ledger.handoff = replace(
            ref,
            start_offset=report.next_offset,
            hop=ref.hop + 1,
            etag=report.etag,
            version_id=report.version_id,
        )
    return ledger


def _with_stats(ledger: ObjectLedger, stats: DeliveryStats) -> ObjectLedger:
    ledger.events_sent = stats.events_sent
    ledger.retries = stats.retries
    ledger.reconnects = stats.reconnects
    return ledger


def _unconfirmed_fail(shipment: Shipment) -> None:
    """After a delivery failure, nothing sent counts: fail every object that sent events."""
    for ledger in shipment.ledgers:
        if ledger.events_sent and ledger.outcome is not Outcome.FAILED:
            ledger.outcome = Outcome.FAILED
            ledger.handoff = None
            ledger.error = f"not confirmed by Logstash: {shipment.delivery_error}" + (
                "" if ledger.error is None else f" (and: {ledger.error})"
            )
