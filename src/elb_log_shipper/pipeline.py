"""One object, end to end: source -> events -> JSON lines -> sink, with a report.

The per-line loop here is the product's hot path: read a batch of lines, build each event,
serialise it with orjson, and hand the sink batches of a few hundred KB. Everything per object
(the event-id prefix, the cloud and S3 sub-objects) is computed once, before the first line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import orjson

from elb_log_shipper.config import DEFAULT_BATCH_BYTES
from elb_log_shipper.errors import SourceError
from elb_log_shipper.formats import EventBuilder
from elb_log_shipper.framing import MAX_LINE_BYTES, OversizedLine
from elb_log_shipper.objectkey import parse_key
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.source import LineReader

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["EventSink", "ObjectReport", "ship_object"]

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
    bytes_read: int = 0
    bytes_decompressed: int = 0
    seconds: float = 0.0
    newest_timestamp: str | None = None
    next_offset: int | None = None
    etag: str | None = None
    version_id: str | None = None
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
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    s3_client: S3Client | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ObjectReport:
    """Read ``ref``, turn every line into one event and send them to ``sink`` in batches.

    ``should_stop`` is asked before each batch of lines (about a MiB of log); when it answers
    True the function returns with ``report.next_offset`` set to the first line not shipped. A
    SourceError (unreadable object, gzip bomb, changed object) is returned in ``report.error``
    after the lines before it were sent; delivery errors from the sink propagate.

    >>> class Stdout:
    ...     def send(self, batch: bytes, events: int) -> None: ...
    >>> ship_object(ObjectRef.local("alb.log.gz"), Stdout()).events  # doctest: +SKIP
    1000
    """
    started = time.monotonic()
    report = ObjectReport(uri=ref.uri, start_offset=ref.start_offset)
    reader = LineReader(ref, s3_client)
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
                    else:
                        event = _oversized(builder, raw, offset)
                    if "tags" in event:
                        failures += 1
                    elif event["@timestamp"] > newest:
                        newest = event["@timestamp"]
                    append(dumps(event))
                    if len(pending) >= per_batch:
                        per_batch = _flush(sink, pending, batch_bytes)
    except SourceError as error:
        report.error = error
    finally:
        if pending:
            _flush(sink, pending, batch_bytes)
        report.events = report.lines
        report.parse_failures = failures
        report.newest_timestamp = newest or None
        report.bytes_read = reader.bytes_read
        report.bytes_decompressed = reader.bytes_decompressed
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


def _oversized(builder: EventBuilder, raw: bytes, offset: int) -> dict[str, object]:
    full = raw.full_length if isinstance(raw, OversizedLine) else len(raw)
    return builder.failure(
        raw.decode(errors="replace"),
        offset,
        f"line of {full} bytes is longer than the {MAX_LINE_BYTES}-byte limit; "
        "its beginning is kept",
    )
