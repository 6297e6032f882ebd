"""The one delivery path: an object's lines -> events -> JSON lines -> a sink, confirmed.

Three layers, each used by the next, and the worker-process side of ``ship --jobs``:

- ``ship_object`` is the per-line loop, the product's hot path: read a batch of lines, build
  each event, serialise it with orjson, and hand the sink batches of a few hundred KB, each
  with the offset of the next line to read. Everything per object (the event-id prefix, the
  cloud and S3 sub-objects) is computed once, before the first line. One bad event never costs
  the object: an event the encoder refuses becomes a tagged failure event with the raw line,
  and an event larger than ``MAX_EVENT_BYTES`` is shipped with its longest texts cut.
- ``deliver_object`` ships one object to one sender and confirms it: what the CLI and the
  demo call per object, and what ``ship_objects`` calls for the function. It returns the one
  result type, ``report.ObjectResult``. After a delivery failure the result carries the
  confirmed progress: ``next_offset`` is the offset up to which the sink confirmed every line,
  so the retry or continuation starts there, not at byte 0.
- ``ship_objects`` runs the objects of one Lambda invocation, deadline-aware. Each object's
  sender finishes with ``confirm=False`` and one confirming finish ends the invocation: one
  TCP/TLS handshake per pooled connection per invocation instead of per object, and nothing is
  called delivered, nor handed off, before that confirmation.
- ``start_worker`` / ``ship_in_worker`` / ``stop_worker`` are what each of the command's worker
  processes (``workers.run_in_processes``) runs: ``deliver_object`` with the process's own S3
  client and Logstash pool, so that the command holds at most ``LOGSTASH_POOL_SIZE`` connections
  per process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson

from elb_log_shipper.backfill import NOT_A_FILE, LazyClients, not_a_file
from elb_log_shipper.config import DEFAULT_BATCH_BYTES, DEFAULT_MAX_EVENT_BYTES, ENV, Settings
from elb_log_shipper.errors import (
    ArchivedObjectError,
    CredentialsError,
    DeliveryError,
    ObjectChangedError,
    SourceError,
)
from elb_log_shipper.formats import TIMESTAMP_FORMAT, EventBuilder
from elb_log_shipper.framing import OversizedLine
from elb_log_shipper.logstash import (
    JSON_LINES,
    BatchFormat,
    DeliveryStats,
    LogstashSender,
    Retrying,
    SocketPool,
)
from elb_log_shipper.objectkey import parse_key
from elb_log_shipper.privacy import PrivacyRules
from elb_log_shipper.progress import ObjectNotes, wait_note
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.report import ObjectResult, Outcome
from elb_log_shipper.source import LineReader
from elb_log_shipper.triggers import classify

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from elb_log_shipper.logstash.confirmed import ConfirmedProgress
    from elb_log_shipper.workers import ItemContext

__all__ = [
    "HANDOFF_RESERVE_SECONDS",
    "TRUNCATED_TAG",
    "UNSERIALISABLE_TAG",
    "EventSink",
    "ObjectSender",
    "Shipment",
    "StdoutSender",
    "WorkerSetup",
    "deliver_object",
    "resume_from_confirmed",
    "ship_in_worker",
    "ship_object",
    "ship_objects",
    "start_worker",
    "stop_worker",
]

# Events per batch before the first batch tells us their average size.
_FIRST_BATCH_EVENTS = 64
# An event cut to MAX_EVENT_BYTES says so, and how long it was.
TRUNCATED_TAG = "_elbtruncated"
TRUNCATED_LABEL = "elb_original_event_bytes"
# An event the JSON encoder refused (an integer of 2^64 or more, say): the line ships as this.
UNSERIALISABLE_TAG = "_elbserialisationfailure"
# Texts are never cut below this many characters: a key or an IP is worth keeping whole.
_MIN_KEPT_CHARS = 256
# Cuts tried before an event is shipped as it is (a limit below its short fields' size).
_MAX_CUTS = 16


class EventSink(Protocol):
    """Where serialised events go: Logstash, stdout, a test's list."""

    def send(
        self, batch: bytes, events: int, end_offset: int, line_offsets: list[int] | None = None
    ) -> None:
        """Take a batch of ``events`` in the sink's ``BatchFormat`` (``ship_object``'s
        ``batch_format``: complete JSON lines unless the sink says otherwise); ``end_offset``
        is the offset, in the decompressed object, of the line after the batch's last, and
        ``line_offsets`` the offset of each event's line (the pipeline always passes them)."""


class ObjectSender(EventSink, Protocol):
    """A sink that confirms: ``LogstashSender``, or ``StdoutSender`` (written is confirmed)."""

    @property
    def batch_format(self) -> BatchFormat:
        """How ``send`` takes batches (``deliver_object`` builds them so)."""

    def finish(self, deadline: float | None = None, *, confirm: bool = True) -> DeliveryStats:
        """Send what is queued and confirm it; DeliveryError when that fails."""

    def abort(self) -> None:
        """Stop without confirming."""

    @property
    def confirmed_offset(self) -> int | None:
        """``end_offset`` of the longest prefix of the batches sent that is confirmed."""

    @property
    def stats(self) -> DeliveryStats:
        """The counters so far."""


def file_position(stream: IO[bytes]) -> int | None:
    """Where the next write to ``stream`` lands when it is a regular file (its end, when it was
    opened to append, as ``>>`` does), or None: a pipe, a terminal, no descriptor."""
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
            return os.fstat(fd).st_size
        return os.lseek(fd, 0, os.SEEK_CUR)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def take_back(stream: IO[Any], position: int | None) -> None:
    """After a failed write to the process's stdout: cut a regular file back to ``position``
    (what whole batches left it at; None leaves it), so that it ends with a whole line and the
    printed commands' output can be appended to it; then point the descriptor at /dev/null, as
    what the buffer still holds would land after the cut at the next flush."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        fd = stream.fileno()
        if position is not None:
            os.ftruncate(fd, position)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


class StdoutSender:
    """JSON lines to a binary stream: a batch written (and flushed) is a batch delivered.
    ``name`` is what the stream is, for the error when it cannot be written; ``whole``: the
    stream counts only if all of it is written (a worker's spool, thrown away when a write
    fails), so a failure takes back what the batches before it confirmed. Otherwise the stream
    is the process's stdout, which a failed write leaves as ``take_back`` says."""

    batch_format = JSON_LINES

    def __init__(self, stream: IO[bytes], name: str = "stdout", *, whole: bool = False) -> None:
        self._stream = stream
        self._name = name
        self._whole = whole
        self._stats = DeliveryStats()
        self.confirmed_offset: int | None = None
        self.writing_since: float | None = None
        """When the write in progress began (None: none is): another thread may read it, to
        tell a reader of the stream that does not read from a command that is stuck."""

    def send(
        self, batch: bytes, events: int, end_offset: int, line_offsets: list[int] | None = None
    ) -> None:
        start = None if self._whole else file_position(self._stream)
        self.writing_since = time.monotonic()
        try:
            self._stream.write(batch)
            # Flushed: a buffer that fails later (a full disk) would fail the next object for
            # this one's lines, counted as sent.
            self._stream.flush()
        except BrokenPipeError:
            raise  # the reader went away (`| head`): the command ends quietly
        except OSError as error:
            if self._whole:
                self._stats.events_confirmed = 0
                self.confirmed_offset = None
            else:
                take_back(self._stream, start)
            # A full disk, a quota: every object would fail alike, as for Logstash failing.
            # "delivery to <name> failed: <why>" (``_delivery_failed``).
            raise DeliveryError(str(error.strerror or error), destination=self._name) from error
        finally:
            self.writing_since = None
        self._stats.events_sent += events
        self._stats.events_confirmed += events
        self.confirmed_offset = end_offset

    def finish(self, deadline: float | None = None, *, confirm: bool = True) -> DeliveryStats:
        return self._stats

    def abort(self) -> None:
        """Nothing to stop: every batch was written when it was sent."""

    @property
    def stats(self) -> DeliveryStats:
        return self._stats


class _CountingSink:
    """Passes batches on and tells ``count`` how many events went (for a progress line)."""

    def __init__(self, sink: EventSink, count: Callable[[int], None]) -> None:
        self._sink = sink
        self._count = count

    def send(
        self, batch: bytes, events: int, end_offset: int, line_offsets: list[int] | None = None
    ) -> None:
        self._sink.send(batch, events, end_offset, line_offsets)
        self._count(events)


def ship_object(
    ref: ObjectRef,
    sink: EventSink,
    *,
    keep_original: bool = True,
    privacy: PrivacyRules | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    s3_client: S3Client | None = None,
    should_stop: Callable[[], bool] | None = None,
    batch_format: BatchFormat = JSON_LINES,
    on_read: Callable[[int], None] | None = None,
    on_retry_note: Callable[[str | None], None] | None = None,
) -> ObjectResult:
    """Read ``ref``, turn every line into one event and send them to ``sink`` in batches, each
    built as ``batch_format`` says (JSON lines, or the beats sink's frames). ``on_read`` is told
    the bytes read from the object as stored since it was last told, for a progress line: in
    all, the result's ``bytes_read``.

    ``should_stop`` is asked before each batch of lines (about a MiB of log), and by the reader
    while an S3 read stalls; when it answers True the function returns with ``next_offset`` set
    to the first line not shipped. ``privacy`` redacts and drops lines (``dropped``) as
    ``EventBuilder`` says. A SourceError (unreadable object, gzip bomb, changed object)
    makes the result ``FAILED`` (worth a retry) or ``REJECTED`` after the lines before it were
    sent. A DeliveryError from the sink ends the read: the result is ``FAILED`` with
    ``delivery_failed`` set, and counts what was read. The result's ``events_sent`` is left to
    the caller, who knows the sink.

    >>> class Stdout:
    ...     def send(self, batch, events, end_offset, line_offsets=None): ...
    >>> ship_object(ObjectRef.local("alb.log.gz"), Stdout()).lines  # doctest: +SKIP
    1000
    """
    started = time.monotonic()
    result = ObjectResult(ref)
    reader = LineReader(ref, s3_client, should_stop=should_stop, on_retry_note=on_retry_note)
    try:
        reader.open()
    except SourceError as error:
        _source_failed(result, error)
        result.s3_retries = reader.s3_retries
        result.seconds = time.monotonic() - started
        return result
    result.etag, result.version_id = reader.etag, reader.version_id
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
    prepared = builder.prepared
    dumps = orjson.dumps
    metadata = batch_format.metadata
    join = batch_format.join
    newest = ""
    # The newest line is the object's lag (LagSeconds), and no line can be newer than the object
    # read: one dated later (year 9999, a load balancer's clock gone wrong) is damage, which
    # would make the lag negative and hide the age of every other line. ISO 8601 text as
    # timestamp() writes it (27 characters, UTC) sorts as the time it names.
    not_after = dt.datetime.now(dt.UTC).strftime(TIMESTAMP_FORMAT)
    lines_read = oversized = unserialisable = 0
    per_batch = _FIRST_BATCH_EVENTS
    pending: list[bytes] = []
    append = pending.append
    # The offset of each pending event's line: a part of a batch can be confirmed on its own.
    pending_offsets: list[int] = []
    append_offset = pending_offsets.append
    told = 0  # the bytes read that on_read was told of
    try:
        with reader:
            for lines in reader:
                if on_read is not None and (read := reader.bytes_read) != told:
                    on_read(read - told)
                    told = read
                if (
                    should_stop is not None
                    and (lines or reader.resume_offset > ref.start_offset)
                    and should_stop()
                ):
                    # Hand off at a line boundary: this batch is the next hop's first. An empty
                    # batch (a step of blank lines, which give no line) is checked too, once it
                    # is past where this hop began: an object of them would otherwise run past
                    # the deadline unchecked; before that (a gzip hop inflating up to its resume
                    # point) a hand-off would gain nothing, and the first batch must go.
                    result.next_offset = lines[0][0] if lines else reader.resume_offset
                    result.outcome = Outcome.HANDED_OFF
                    break
                lines_read += len(lines)
                for offset, raw in prepared(lines):
                    if len(pending) >= per_batch:
                        # The batch ends before this line: its offset is where a resume starts.
                        per_batch = _flush(
                            sink,
                            join,
                            pending,
                            pending_offsets,
                            batch_bytes=batch_bytes,
                            end_offset=offset,
                        )
                        result.offset_sent = offset
                    if type(raw) is not OversizedLine:
                        event = build(raw, offset)
                        if event is None:
                            continue  # dropped by a filter: counted by the builder
                    else:
                        event = builder.too_long(raw, offset)
                    if "tags" not in event and newest < (stamp := event["@timestamp"]) <= not_after:
                        newest = stamp
                    if metadata is not None:
                        event["@metadata"] = metadata
                    try:
                        line = dumps(event)
                    except TypeError as error:  # orjson.JSONEncodeError: an integer past 64 bits
                        unserialisable += 1
                        event = _unserialisable(builder, raw, offset, error)
                        if metadata is not None:
                            event["@metadata"] = metadata
                        line = dumps(event)
                    if len(line) > max_event_bytes:
                        oversized += 1
                        line = _fit(line, max_event_bytes)
                    append(line)
                    append_offset(offset)
        if reader.stopped_at is not None:  # a stalled read gave up at the deadline
            result.next_offset = reader.stopped_at
            result.outcome = Outcome.HANDED_OFF
    except SourceError as error:
        _source_failed(result, error)
    except DeliveryError as error:
        _delivery_failed(result, error)
    if not result.delivery_failed:
        end = reader.resume_offset if result.next_offset is None else result.next_offset
        try:
            if pending:
                _flush(
                    sink, join, pending, pending_offsets, batch_bytes=batch_bytes, end_offset=end
                )
            result.offset_sent = end
        except DeliveryError as error:
            _delivery_failed(result, error)
    result.lines = lines_read
    result.parse_failures = builder.failures
    result.dropped = builder.dropped
    result.oversized_events = oversized
    result.unserialisable = unserialisable
    result.newest_timestamp = newest or None
    result.bytes_read = reader.bytes_read
    if on_read is not None and result.bytes_read != told:
        on_read(result.bytes_read - told)
    result.bytes_decompressed = reader.bytes_decompressed
    result.retries = reader.retries
    result.s3_retries = reader.s3_retries
    result.seconds = time.monotonic() - started
    return result


def _flush(
    sink: EventSink,
    join: Callable[[list[bytes]], bytes],
    pending: list[bytes],
    pending_offsets: list[int],
    *,
    batch_bytes: int,
    end_offset: int,
) -> int:
    """Send the pending events as one batch; return how many events fill the next batch."""
    payload = join(pending)
    events = len(pending)
    pending.clear()
    line_offsets = pending_offsets.copy()
    pending_offsets.clear()
    sink.send(payload, events, end_offset, line_offsets)
    return max(16, batch_bytes * events // max(len(payload), 1))


def _source_failed(result: ObjectResult, error: SourceError) -> None:
    result.error = str(error)
    result.outcome = Outcome.FAILED if error.transient else Outcome.REJECTED
    result.credentials_refused = isinstance(error, CredentialsError)
    result.archived = isinstance(error, ArchivedObjectError)
    result.changed = isinstance(error, ObjectChangedError)
    result.restart = error.restart


def _delivery_failed(result: ObjectResult, error: DeliveryError) -> None:
    """``result`` FAILED by the sink; what it read stays counted, where it stopped reading
    does not say where a retry starts (the caller sets that from the confirmed progress)."""
    earlier = "" if result.error is None else f" (and: {result.error})"
    result.outcome = Outcome.FAILED
    result.delivery_failed = True
    result.error = f"delivery to {error.destination} failed: {error}{earlier}"
    result.next_offset = None


def _unserialisable(
    builder: EventBuilder, raw: bytes | str, offset: int, error: TypeError
) -> dict[str, Any]:
    """The failure event of a line whose event the encoder refused: the raw text (``raw``, or
    the text that the privacy rules made of it), tagged."""
    text = raw if isinstance(raw, str) else raw.decode(errors="backslashreplace")
    event = builder.failure(text, offset, f"the event could not be serialised: {error}")
    event["tags"].append(UNSERIALISABLE_TAG)
    return event


def _fit(line: bytes, limit: int) -> bytes:
    """``line`` (a JSON object) within ``limit`` bytes: its longest texts cut, tagged.

    Works on a copy (the builder's events share their object context): the longest string is
    cut until the event fits, never below ``_MIN_KEPT_CHARS``; what cannot fit ships as it is.

    >>> big = orjson.dumps({"event": {"original": "x" * 5000}, "url": {"path": "y" * 3000}})
    >>> fitted = orjson.loads(_fit(big, 2000))
    >>> len(_fit(big, 2000)) <= 2000, fitted["tags"], fitted["labels"]
    (True, ['_elbtruncated'], {'elb_original_event_bytes': '8043'})
    """
    event: dict[str, Any] = orjson.loads(line)
    event.setdefault("tags", []).append(TRUNCATED_TAG)
    event.setdefault("labels", {})[TRUNCATED_LABEL] = str(len(line))
    texts: list[tuple[dict[str, Any] | list[Any], Any]] = []
    _collect_texts(event, texts)
    fitted = orjson.dumps(event)
    for _ in range(_MAX_CUTS):
        excess = len(fitted) - limit
        if excess <= 0 or not texts:
            break
        container, key = max(texts, key=lambda place: len(place[0][place[1]]))
        text: str = container[key]
        keep = max(_MIN_KEPT_CHARS, len(text) - excess)
        if keep >= len(text):
            break
        container[key] = text[:keep]
        fitted = orjson.dumps(event)
    return fitted


def _collect_texts(value: Any, texts: list[tuple[Any, Any]]) -> None:
    """Every string in ``value`` as (container, key) places, for cutting."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, str):
            texts.append((value, key))
        elif isinstance(item, dict | list):
            _collect_texts(item, texts)


def deliver_object(
    ref: ObjectRef,
    sender: ObjectSender,
    settings: Settings,
    *,
    confirm: bool = True,
    deadline: float | None = None,
    s3_client: S3Client | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_events: Callable[[int], None] | None = None,
    privacy: PrivacyRules | None = None,
    on_read: Callable[[int], None] | None = None,
    on_retry_note: Callable[[str | None], None] | None = None,
) -> ObjectResult:
    """Ship one object to ``sender`` and confirm it: the one way an object is delivered.

    ELB's test file and health-check logs come back ``SKIPPED``, unread. ``deadline`` (a
    ``time.monotonic()`` value) bounds the confirmation; with ``confirm=False`` the batches stay
    unconfirmed in the pool for a later finish (``ship_objects``). A DeliveryError does not
    propagate: the result is ``FAILED`` with ``delivery_failed`` set, and ``next_offset`` is
    the sink's confirmed progress when some of the object was confirmed. ``on_events`` is told
    how many events each batch handed on, ``on_read`` how many bytes were read, and
    ``on_retry_note`` of S3 requests retried (for progress: ``ship_object``).

    >>> with open(os.devnull, "wb") as out:  # doctest: +SKIP
    ...     deliver_object(ObjectRef.local("alb.log"), StdoutSender(out), settings).outcome
    <Outcome.SHIPPED: 'shipped'>
    """
    decision = classify(ref)
    if not decision.ship:
        return ObjectResult(
            ref, Outcome.SKIPPED, skip_reason=decision.skip_reason, quiet=decision.quiet
        )
    if ref.is_local and not_a_file(ref.key):
        # A FIFO found in a folder: opening it would wait for a writer, past Ctrl-C.
        return ObjectResult(ref, Outcome.SKIPPED, skip_reason=NOT_A_FILE)
    started = time.monotonic()
    try:
        result = ship_object(
            ref,
            sender if on_events is None else _CountingSink(sender, on_events),
            keep_original=settings.keep_original,
            privacy=privacy,
            batch_bytes=settings.batch_bytes,
            max_event_bytes=settings.max_event_bytes,
            s3_client=s3_client,
            should_stop=should_stop,
            batch_format=sender.batch_format,
            on_read=on_read,
            on_retry_note=on_retry_note,
        )
        if not result.delivery_failed:
            try:
                _with_stats(result, sender.finish(deadline, confirm=confirm))
            except DeliveryError as error:
                _delivery_failed(result, error)
        if result.delivery_failed:
            sender.abort()
            _with_stats(result, sender.stats)
            resume_from_confirmed(result, sender.confirmed_offset)
    except BaseException:
        sender.abort()
        raise
    result.seconds = time.monotonic() - started
    return result


def _with_stats(result: ObjectResult, stats: DeliveryStats) -> ObjectResult:
    result.events_sent = stats.events_sent
    result.events_confirmed = stats.events_confirmed
    result.retries += stats.retries
    result.reconnects = stats.reconnects
    result.events_resent = stats.events_resent
    return result


def resume_from_confirmed(result: ObjectResult, confirmed: int | None) -> None:
    """After a delivery failure, or a worker process that died: where the rest of the object
    starts (its confirmed progress)."""
    if confirmed is not None and confirmed > result.ref.start_offset:
        result.next_offset = confirmed
        result.error = f"{result.error} (confirmed up to byte {confirmed})"


# --- the objects of one invocation ---------------------------------------------------------------

# Kept after the hard deadline for what follows the confirmation: sending the hand-off messages
# (the handler's SQS client times out within it), flushing metrics, returning. At most half the
# margin, so that a small margin still leaves the flush the other half.
HANDOFF_RESERVE_SECONDS = 5.0


@dataclass(slots=True)
class Shipment:
    """The objects of one invocation: one result per object, in order, and the confirmation.

    ``delivery_error`` is set when Logstash could not be reached or did not read in time; then
    every object whose events were not all confirmed is ``HANDED_OFF`` from its confirmed
    progress, or ``FAILED`` when none of it was confirmed.
    """

    results: list[ObjectResult]
    events_confirmed: int = 0
    seconds: float = 0.0
    delivery_error: DeliveryError | None = None
    confirmation: DeliveryStats = field(default_factory=DeliveryStats)
    """The shared confirmation's own counters: what it resent after a connection failed to
    confirm (the objects' results count only what their own senders resent)."""


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
    not started are not started (each is handed off); sending, flushing and the confirmation
    may go on until the hard deadline, ``HANDOFF_RESERVE_SECONDS`` (at most half the margin)
    before the end. An object started ships at least one batch of lines, so every hop makes
    progress. An object handed off more than ``settings.max_hops`` times is ``FAILED``, so that
    it dead-letters instead of circling.

    Sending the continuations is the caller's (after this returns: they may only go once the
    confirmation passed, which this function does last). A DeliveryError does not propagate:
    it is ``Shipment.delivery_error``; each object not wholly confirmed is handed off from its
    confirmed progress, or ``FAILED`` when none of it was confirmed; the objects after it are
    not started, and the pool drops its connections so that no unconfirmed batch outlives the
    invocation.

    >>> shipment = ship_objects([ObjectRef("logs", "AWSLogs/1/x.log.gz")], SocketPool(settings),
    ...     settings, remaining=lambda: context.get_remaining_time_in_millis() / 1000)
    ... # doctest: +SKIP
    >>> [result.outcome.value for result in shipment.results]  # doctest: +SKIP
    ['shipped']
    """
    started = time.monotonic()
    margin = settings.deadline_margin
    hard_deadline = started + remaining() - min(HANDOFF_RESERVE_SECONDS, margin / 2)

    def out_of_time() -> bool:
        return remaining() <= margin

    shipment = Shipment(results=[])
    # Each object's progress, not its sender: a sender holds its queue, events and worker
    # threads (12 KB), which an event of thousands of small objects kept until its end.
    progresses: list[ConfirmedProgress | None] = []
    for ref in refs:
        sender: LogstashSender | None = None
        if shipment.delivery_error is not None:
            # Logstash is failing: every later object would wait as long to fail the same way.
            result = ObjectResult(
                ref,
                Outcome.FAILED,
                error="not started: delivery to Logstash failed",
                delivery_failed=True,
            )
        elif ref.hop > settings.max_hops:
            result = ObjectResult(
                ref,
                Outcome.FAILED,
                error=f"handed off {ref.hop} times, more than {ENV.MAX_HOPS}="
                f"{settings.max_hops}: it is failing, not slow; find out why, then replay "
                "it from the dead-letter queue",
                hops_spent=True,
            )
        elif out_of_time():
            # Not started before the margin: the next invocation starts it, never dropped.
            result = ObjectResult(ref, Outcome.HANDED_OFF, next_offset=ref.start_offset)
        else:
            sender = LogstashSender(pool, deadline=hard_deadline)
            result = deliver_object(
                ref,
                sender,
                settings,
                confirm=False,
                deadline=hard_deadline,
                s3_client=s3_client,
                should_stop=_first_batch_goes(out_of_time),
                privacy=privacy,
            )
            if result.delivery_failed:
                shipment.delivery_error = DeliveryError(result.error or "delivery failed")
            shipment.events_confirmed += result.events_confirmed
        shipment.results.append(result)
        progresses.append(None if sender is None else sender.progress)
    if shipment.delivery_error is None:
        final = LogstashSender(pool)
        try:
            final.finish(hard_deadline)
        except DeliveryError as error:
            shipment.delivery_error = error
        shipment.confirmation = final.stats
        shipment.events_confirmed += shipment.confirmation.events_confirmed
    if shipment.delivery_error is not None:
        # Beats windows acknowledged while their connection waited in the pool count (their
        # senders' offsets move) before the hand-offs are decided.
        settled = pool.close()
        shipment.events_confirmed += sum(batch.events for batch in settled)
        _unconfirmed_hand_off(shipment, progresses)
    shipment.seconds = time.monotonic() - started
    return shipment


def _first_batch_goes(out_of_time: Callable[[], bool]) -> Callable[[], bool]:
    """``out_of_time``, except that the first batch always goes: a hop that shipped nothing
    would circle until MAX_HOPS."""
    asked = False

    def should_stop() -> bool:
        nonlocal asked
        if not asked:
            asked = True
            return False
        return out_of_time()

    return should_stop


def _unconfirmed_hand_off(
    shipment: Shipment, progresses: Sequence[ConfirmedProgress | None]
) -> None:
    """After a delivery failure, only what was confirmed counts.

    Each object that sent events and is not confirmed to its end is handed off from its
    confirmed progress, or FAILED (``delivery_failed``) when nothing of it was confirmed.
    """
    error = shipment.delivery_error
    for result, progress in zip(shipment.results, progresses, strict=True):
        if progress is None or not result.events_sent or result.delivery_failed:
            continue
        confirmed = progress.offset
        if confirmed is not None and confirmed >= result.offset_sent:
            continue  # wholly confirmed before the failure
        earlier = "" if result.error is None else f" (and: {result.error})"
        result.error = f"not confirmed by Logstash: {error}{earlier}"
        if confirmed is not None and confirmed > result.ref.start_offset:
            result.outcome = Outcome.HANDED_OFF
            result.next_offset = confirmed
        else:
            result.outcome = Outcome.FAILED
            result.next_offset = None
            result.delivery_failed = True
    for result in shipment.results:
        if result.delivery_failed and result.next_offset is not None:
            result.outcome = Outcome.HANDED_OFF


# --- objects in worker processes (the command's --jobs) -------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What a worker process needs to ship objects: the settings, and where to spool JSON lines
    for stdout (None when shipping to Logstash)."""

    settings: Settings
    spool_dir: str | None
    privacy: PrivacyRules | None = None


@dataclass(slots=True)
class _WorkerState:
    setup: WorkerSetup
    clients: LazyClients
    pool: SocketPool | None


_worker_state: _WorkerState | None = None


def start_worker(setup: WorkerSetup) -> None:
    """Initializer of a worker process: its own S3 client (made on first use) and its own
    Logstash pool, kept for the process's life."""
    global _worker_state  # noqa: PLW0603 - one per process, by design
    pool = SocketPool(setup.settings) if setup.spool_dir is None else None
    _worker_state = _WorkerState(setup, LazyClients(1), pool)


def stop_worker() -> None:
    """Finalizer of a worker process: close its Logstash connections."""
    if _worker_state is not None and _worker_state.pool is not None:
        _worker_state.pool.close()


def ship_in_worker(ref: ObjectRef, context: ItemContext) -> tuple[ObjectResult, str | None]:
    """Ship one object in a worker process; return its result and, for stdout, the spool file
    holding its JSON lines (the parent copies it to stdout in plan order, then deletes it)."""
    state = _worker_state
    if state is None:
        raise RuntimeError("ship_in_worker runs in a worker process started by start_worker")
    s3_client = None if ref.is_local else state.clients.s3()
    notes = ObjectNotes(context.set_note)

    def on_retry_note(note: str | None) -> None:
        notes.s3(note)
        if note is not None:
            context.keep_alive()  # S3 answered: the worker is not hung

    if state.pool is not None:
        # A wait for Logstash says the worker is not hung (``keep_alive``), even with no note:
        # a json_lines input that stops reading (its pipeline blocked) holds a write for as
        # long as it likes, and the command has no deadline.
        def on_wait(
            waiting_for_ack: float | None, retrying: Retrying | None, not_reading: float | None
        ) -> None:
            notes.wait(wait_note(waiting_for_ack, retrying, not_reading))
            context.keep_alive()

        # What Logstash confirmed goes to the parent as each confirmation comes (an ACK read, a
        # connection closed gracefully, on the thread that saw it), so that a worker killed
        # mid-object (the OOM killer, SIGSTOP past the silence bound) costs the lines after
        # it, not the whole object again, nor what was confirmed while this thread read S3.
        # Once the object is done no confirmation of it is posted (a later object's sender
        # may confirm its last batches), and none can land as the next object's checkpoint.
        confirming = threading.Lock()
        live = True

        def on_confirmed(offset: int) -> None:
            with confirming:
                if live:
                    context.set_checkpoint(offset)

        logstash = LogstashSender(
            state.pool,
            on_wait=on_wait,
            should_stop=context.should_stop,
            on_confirmed=on_confirmed,
        )
        try:
            result = _deliver_in_worker(
                ref, logstash, state, s3_client, context, on_retry_note=on_retry_note
            )
        finally:
            with confirming:
                live = False
        return result, None
    spool = tempfile.NamedTemporaryFile(dir=state.setup.spool_dir, delete=False)  # noqa: SIM115
    name = f"the spool folder {state.setup.spool_dir} (TMPDIR)"
    try:
        try:
            # No checkpoint: a spool reaches stdout whole or not at all.
            sender = StdoutSender(spool, name, whole=True)
            result = _deliver_in_worker(
                ref, sender, state, s3_client, context, on_retry_note=on_retry_note
            )
        finally:
            # What a write that failed left in the buffer fails again: that failure is told.
            with contextlib.suppress(OSError):
                spool.close()
    except BaseException:
        _remove(spool.name)
        raise
    if result.delivery_failed:
        # Nobody copies a failed object's lines (a spool cut mid-line, here): its spool would
        # hold the disk (a full TMPDIR then fails every later object) until the run ends. None
        # of it reaches stdout: the object goes on from where it began (``whole``).
        _remove(spool.name)
        return result, None
    return result, spool.name


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _deliver_in_worker(
    ref: ObjectRef,
    sender: ObjectSender,
    state: _WorkerState,
    s3_client: S3Client | None,
    context: ItemContext,
    *,
    on_retry_note: Callable[[str | None], None],
) -> ObjectResult:
    return deliver_object(
        ref,
        sender,
        state.setup.settings,
        s3_client=s3_client,
        should_stop=context.should_stop,
        on_events=context.add_progress,
        privacy=state.setup.privacy,
        on_read=lambda size: context.add_progress(0, size),
        on_retry_note=on_retry_note,
    )
