"""Lambda events in, the objects to ship out. Pure: no AWS client, no socket, no clock.

``parse_event`` recognises every way the function is invoked and returns a ``Trigger``: what
invoked it and one ``WorkItem`` per object named. Each item carries its ``ObjectRef``, what the
key says (``KeyInfo``), whether to skip it and why, whether its age is the pipeline's lag
(``live``), and for SQS the ``messageId`` it came from, so the handler stays a loop: ship the
items with ``ship`` set, log the skip reasons that are not ``quiet``, report failed SQS messages
as ``batchItemFailures``.

Shapes understood:

1. S3 event notification, ``Records[].eventSource == "aws:s3"``: every record. Keys arrive
   URL-encoded (``+`` for a space, ``%3A`` for ``:``) and are decoded with ``unquote_plus``.
2. SQS, ``Records[].eventSource == "aws:sqs"``: each body is an S3 notification (possibly
   ``s3:TestEvent``), an SNS envelope around one, an EventBridge event, a continuation, or a
   replayed dead letter (6).
   ``items_from_sqs_record`` reads one record: the Powertools batch processor's record handler
   can call it with the ``SQSRecord`` it is given.
2a. SNS, ``Records[].EventSource == "aws:sns"`` (a topic that S3 notifies, subscribed by the
   function): each ``Sns.Message`` is an S3 notification (or ``s3:TestEvent``), read as in an
   SQS body.
3. EventBridge, ``source == "aws.s3"``: ``detail.bucket.name`` and ``detail.object.key``, which
   is taken as written, unless it holds a ``%`` and names an ELB log once percent-decoded
   (``_eventbridge_key``). The S3 documentation says notification keys are URL-encoded; its
   EventBridge page (ev-events) says no such thing and shows plain keys.
4. Continuation: the message this function sends itself, through its queue, to carry on
   reading an object from a byte offset (``make_continuation`` / ``parse_continuation``).
5. Direct: the same continuation message as the whole event. ``elb-log-shipper ship
   --via-lambda`` invokes the function once per object with ``make_continuation(ObjectRef(...))``:
   our own shape, so the key needs no encoding and the ETag pin and offset come along.
6. Replay from the dead-letter queue: Lambda's on-failure destination wraps the event it gave up
   on in a record with ``requestContext`` and ``requestPayload``. Such a record, as an SQS body
   (the DLQ redriven to the continuation queue) or as the whole event, is read as its
   ``requestPayload``, so a replay ships the objects the failed event named, whether S3, SNS
   (``aws:sns`` records), EventBridge or a continuation invoked them.

Anything else raises ``TriggerError``. ``s3:TestEvent`` gives no items, quietly.

**Live objects.** An item is ``live`` when a notification announced its object as it was
written: an S3, SNS or EventBridge record, directly or in an SQS body, or the continuation of
such an object (``make_continuation(..., live=True)``). The age of a live object's newest line is
the pipeline's lag. A backfill (a direct invocation), a replayed dead letter and their
continuations are not live: their age says when the object was written, not how far behind the
shipper is. A continuation without the ``live`` key (written before it existed, or by hand) is
not live.

**Log bucket and prefix.** ``parse_event(event, log_bucket=..., log_prefix=...)`` skips, with a
reason, every object in another bucket or whose key does not start with the prefix: the function
may read only keys under it in its one bucket (the template's ``LogBucketName`` and
``LogPrefix``), and a topic or queue may announce others, which S3 would refuse with 403 (or
hand over, to a role granted more than the template's).

The ETag and version an event names pin the object read (``ObjectRef.etag``/``version_id``):
the function ships that object or none. The one exception is ``SAMPLE_ETAG``, the placeholder
in AWS's own sample events, which pins nothing.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, unquote_plus

from elb_log_shipper.config import ENV
from elb_log_shipper.errors import InputError
from elb_log_shipper.objectkey import TEST_FILES, KeyInfo, KeyKind, parse_key
from elb_log_shipper.refs import ObjectRef

__all__ = [
    "CONTINUATION_MARKER",
    "CONTINUATION_VERSION",
    "SAMPLE_ETAG",
    "Decision",
    "RejectedMessage",
    "SqsReceipt",
    "Trigger",
    "TriggerError",
    "TriggerKind",
    "WorkItem",
    "classify",
    "items_from_sqs_record",
    "make_continuation",
    "parse_continuation",
    "parse_event",
]

# The key that marks a continuation message, and the schema version it holds. A reader refuses
# versions it does not know rather than guess at fields.
CONTINUATION_MARKER = "elbLogShipperContinuation"
CONTINUATION_VERSION = 1

# The eTag of AWS's sample S3 events (`sam local generate-event s3 put`, the Lambda console's
# "s3-put" test event): a placeholder. No object has it (that would take an MD5 preimage), so it
# is read as no pin, and such an event ships the object it names as it is now.
SAMPLE_ETAG = "0123456789abcdef0123456789abcdef"

_S3_TEST_EVENT = "s3:TestEvent"
_SNS_SOURCE = "aws:sns"
_OBJECT_CREATED_PREFIX = "ObjectCreated:"
_EVENTBRIDGE_OBJECT_CREATED = "Object Created"
# The two keys of a Lambda destination record (on-failure destination of an asynchronous invoke).
_DESTINATION_CONTEXT = "requestContext"
_DESTINATION_PAYLOAD = "requestPayload"
# The continuation's key for WorkItem.live; absent (older messages, hand-written ones) means False.
_CONTINUATION_LIVE = "live"
# A value an error or a skip reason quotes comes from the event, where a field may be as large as
# the message (SQS takes 1 MiB): enough of it to recognise, so that its log line stays a line.
SHOWN_VALUE_CHARS = 60


class TriggerError(InputError):
    """A Lambda event, or an SQS message in one, is not a shape the shipper understands."""


class TriggerKind(StrEnum):
    """How the function was invoked."""

    S3 = "s3"
    SQS = "sqs"
    SNS = "sns"
    EVENTBRIDGE = "eventbridge"
    DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to ship an object, from what its key says.

    ``skip_reason`` is ``None`` for an object to ship. ``quiet`` marks a skip that is expected
    and not worth a log line (the ELB test file).
    """

    key_info: KeyInfo
    skip_reason: str | None = None
    quiet: bool = False

    @property
    def ship(self) -> bool:
        return self.skip_reason is None


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One object named by a trigger, and what to do with it.

    ``sqs_message_id`` is the SQS message that named it (``None`` outside SQS): if shipping
    fails, that message is the one to report in ``batchItemFailures``. ``live`` says whether the
    object's age is the pipeline's lag (module docstring, Live objects); its continuation carries
    it on.
    """

    ref: ObjectRef
    key_info: KeyInfo
    skip_reason: str | None = None
    quiet: bool = False
    sqs_message_id: str | None = None
    live: bool = False

    @property
    def ship(self) -> bool:
        return self.skip_reason is None


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """An SQS message ``parse_event`` could not read; the rest of the batch still was."""

    sqs_message_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class SqsReceipt:
    """What SQS says of one message of the batch: the queue it came from, its receipt handle and
    how many times it has been received (``ApproximateReceiveCount``): enough to set when a
    failed one comes back (``handler._back_off``)."""

    message_id: str
    queue_arn: str
    receipt_handle: str
    receive_count: int


@dataclass(frozen=True, slots=True)
class Trigger:
    """What invoked the function and the objects it named, in event order.

    ``rejected`` lists SQS messages that could not be read: report them as
    ``batchItemFailures`` so that SQS retries them and, in the end, dead-letters them.
    ``receipts`` has each SQS message's receipt, where its record has one (not a hand-made
    event's), read or not.
    """

    kind: TriggerKind
    items: tuple[WorkItem, ...] = ()
    rejected: tuple[RejectedMessage, ...] = ()
    receipts: tuple[SqsReceipt, ...] = ()

    @property
    def to_ship(self) -> tuple[WorkItem, ...]:
        """The items to ship, skipping the skipped."""
        return tuple(item for item in self.items if item.ship)


def classify(ref: ObjectRef) -> Decision:
    """Decide from its key whether an object is shipped.

    ELB's test files (one per kind of log enabled) are skipped quietly; health-check logs and
    other services' logs beside ELB's (``AWSLogs/<account>/CloudTrail/...``) are skipped with a
    reason (their format is not one we parse); everything else is shipped, unknown keys
    included, whose lines then count as parse failures downstream rather than vanish here.

    >>> decision = classify(ObjectRef("logs", "AWSLogs/123456789012/ELBAccessLogTestFile"))
    >>> decision.skip_reason, decision.quiet
    ('ELB access log test file', True)
    >>> classify(ObjectRef("logs", "some/other/file.log")).ship
    True
    """
    info = parse_key(ref.key)
    if info.kind is KeyKind.TEST_FILE:
        kind = TEST_FILES[ref.key.rpartition("/")[2]]
        return Decision(info, f"ELB {kind} log test file", quiet=True)
    if info.kind is KeyKind.HEALTH_CHECK:
        return Decision(info, "health check logs are not shipped: their format is not supported")
    if info.kind is KeyKind.OTHER_SERVICE:
        return Decision(
            info,
            "another service's logs (AWSLogs/<account>/<service>/ names a service other than "
            "elasticloadbalancing); narrow the notification's or the command's prefix to ELB's "
            "folders",
        )
    return Decision(info)


def parse_event(
    event: Mapping[str, Any], *, log_prefix: str | None = None, log_bucket: str | None = None
) -> Trigger:
    """Turn a Lambda event into the objects it names.

    With ``log_bucket``, an object in another bucket is skipped, with the reason; with
    ``log_prefix``, so is an object whose key does not start with it.
    Raises ``TriggerError`` for an event of no known shape. In an SQS batch, a message that
    cannot be read does not fail the others: it is listed in ``Trigger.rejected``.

    >>> trigger = parse_event({"Records": [{"eventSource": "aws:s3",
    ...     "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "logs"},
    ...     "object": {"key": "my+prefix/x.log", "size": 10, "eTag": "abc"}}}]})
    >>> trigger.kind.value, trigger.items[0].ref.key, trigger.items[0].live
    ('s3', 'my prefix/x.log', True)
    >>> other = {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "logs"},
    ...     "object": {"key": "cloudtrail/x.json.gz"}}}]}
    >>> parse_event(other, log_prefix="AWSLogs/").items[0].skip_reason
    "the key is outside LOG_PREFIX 'AWSLogs/', the only keys this function may read"
    """
    trigger = _parse_event(event)
    if log_prefix is None and log_bucket is None:
        return trigger
    items = tuple(_within_scope(item, log_bucket, log_prefix) for item in trigger.items)
    return replace(trigger, items=items)


def _parse_event(event: Mapping[str, Any]) -> Trigger:
    if not isinstance(event, Mapping):
        raise TriggerError(f"the Lambda event is a {type(event).__name__}, not a JSON object")
    if CONTINUATION_MARKER in event:
        return Trigger(TriggerKind.DIRECT, (_continuation_item(event, None),))
    if _is_destination_record(event):
        replayed = _parse_event(event[_DESTINATION_PAYLOAD])
        return replace(replayed, items=_replayed(replayed.items))
    if "Records" in event:
        return _parse_records(event["Records"])
    if event.get("Event") == _S3_TEST_EVENT:
        return Trigger(TriggerKind.S3)
    if "detail-type" in event and "source" in event:
        return Trigger(TriggerKind.EVENTBRIDGE, tuple(_eventbridge_items(event, None)))
    raise TriggerError(
        f"unrecognised Lambda event with keys {_describe_keys(event)}: invoke the function from "
        "S3 event notifications, an SQS queue or SNS topic of them, EventBridge 'Object Created' "
        "events from S3, or with a message made by make_continuation()"
    )


def items_from_sqs_record(record: Mapping[str, Any]) -> list[WorkItem]:
    """The objects one SQS message names, each tagged with the message's id.

    Accepts the raw record dict or Powertools' ``SQSRecord`` (a mapping over the same dict).
    Raises ``TriggerError`` when the body is not a message we understand; in a batch
    processor's record handler, that marks this one message failed.

    >>> body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})
    >>> items_from_sqs_record({"messageId": "m-1", "body": body})
    []
    """
    message_id = _text(record.get("messageId"), "SQS record messageId")
    body_text = record.get("body")
    if not isinstance(body_text, str):
        raise TriggerError(f"SQS message {message_id} has no text body")
    try:
        body = json.loads(body_text)
    except (ValueError, RecursionError):
        raise TriggerError(
            f"SQS message {message_id}: the body is not JSON; send S3 event notifications, "
            "EventBridge events or continuation messages to this queue"
        ) from None
    try:
        return _message_items(body, message_id, sns_envelope_allowed=True)
    except TriggerError as error:
        raise TriggerError(f"SQS message {message_id}: {error}") from None


def make_continuation(ref: ObjectRef, *, live: bool = False) -> dict[str, Any]:
    """The message that hands the rest of an S3 object to a later invocation.

    Schema (every key always present; ``null`` where unknown)::

        {"elbLogShipperContinuation": 1, "bucket": str, "key": str, "etag": str | null,
         "versionId": str | null, "size": int | null, "offset": int, "hop": int,
         "live": bool}

    ``offset`` is ``ref.start_offset``, a line start in the decompressed stream; ``hop`` is
    ``ref.hop``. The caller sets both: ``dataclasses.replace(ref, start_offset=next_line,
    hop=ref.hop + 1)``. ``live`` is the handed-off item's ``WorkItem.live``: whether the rest of
    the object still reports lag; a backfill or a replay leaves it False. The key is written as
    is, not URL-encoded. Send the message as ``json.dumps(message)``: its default ASCII escaping
    keeps any key within the characters SQS accepts. Raises ``ValueError`` for a local file,
    which another invocation cannot read.

    >>> make_continuation(ObjectRef("logs", "a b.log", etag="e1", start_offset=4096, hop=1))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'elbLogShipperContinuation': 1, 'bucket': 'logs', 'key': 'a b.log', 'etag': 'e1',
     'versionId': None, 'size': None, 'offset': 4096, 'hop': 1, 'live': False}
    """
    if ref.is_local:
        raise ValueError(f"cannot hand off local file {ref.key!r}: only S3 objects continue")
    return {
        CONTINUATION_MARKER: CONTINUATION_VERSION,
        "bucket": ref.bucket,
        "key": ref.key,
        "etag": ref.etag,
        "versionId": ref.version_id,
        "size": ref.size,
        "offset": ref.start_offset,
        "hop": ref.hop,
        _CONTINUATION_LIVE: live,
    }


def parse_continuation(message: Mapping[str, Any]) -> ObjectRef:
    """Read a continuation message back into the ``ObjectRef`` it was made from.

    ``offset`` and ``hop`` may be left out of a hand-written message (they default to 0).
    ``live`` is not part of the reference: ``parse_event`` reads it into ``WorkItem.live``.
    Raises ``TriggerError`` for a message of another version or with invalid fields.

    >>> ref = parse_continuation({"elbLogShipperContinuation": 1, "bucket": "logs",
    ...                           "key": "x.log", "offset": 4096, "hop": 2})
    >>> ref.uri, ref.start_offset, ref.hop
    ('s3://logs/x.log', 4096, 2)
    """
    version = message.get(CONTINUATION_MARKER)
    if type(version) is not int or version != CONTINUATION_VERSION:
        raise TriggerError(
            f"continuation message version {_shown(version)} is not supported (this shipper reads "
            f"version {CONTINUATION_VERSION}): let the version that wrote it drain the queue"
        )
    return ObjectRef(
        bucket=_text(message.get("bucket"), "continuation bucket"),
        key=_text(message.get("key"), "continuation key"),
        version_id=_optional_text(message.get("versionId"), "continuation versionId"),
        etag=_optional_text(message.get("etag"), "continuation etag"),
        size=_optional_count(message.get("size"), "continuation size"),
        start_offset=_count(message.get("offset", 0), "continuation offset"),
        hop=_count(message.get("hop", 0), "continuation hop"),
    )


# --- shapes -------------------------------------------------------------------------------------


def _sqs_receipt(message_id: str, record: Mapping[str, Any]) -> SqsReceipt | None:
    """The receipt of the SQS message of ``record``; None when the record has none (a hand-made
    event: no receipt handle, no receive count, no queue)."""
    arn = record.get("eventSourceARN")
    handle = record.get("receiptHandle")
    attributes = record.get("attributes")
    count = attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
    if (
        not isinstance(arn, str)
        or not isinstance(handle, str)
        or not isinstance(count, str)
        or not count.isdecimal()
    ):
        return None
    return SqsReceipt(message_id, arn, handle, int(count))


def _parse_records(records: object) -> Trigger:
    if not isinstance(records, Sequence) or isinstance(records, str) or not records:
        raise TriggerError("the event's Records is not a non-empty list")
    sources = {_record_source(record) for record in records}
    if sources == {"aws:s3"}:
        s3_items = (item for record in records for item in _s3_record_items(record, None))
        return Trigger(TriggerKind.S3, tuple(s3_items))
    if sources == {"aws:sqs"}:
        items: list[WorkItem] = []
        rejected: list[RejectedMessage] = []
        receipts: list[SqsReceipt] = []
        for record in records:
            message_id = _text(record.get("messageId"), "SQS record messageId")
            try:
                items.extend(items_from_sqs_record(record))
            except TriggerError as error:
                rejected.append(RejectedMessage(message_id, str(error)))
            if (receipt := _sqs_receipt(message_id, record)) is not None:
                receipts.append(receipt)
        return Trigger(TriggerKind.SQS, tuple(items), tuple(rejected), tuple(receipts))
    if sources == {_SNS_SOURCE}:
        sns_items = (item for record in records for item in _sns_record_items(record, None))
        return Trigger(TriggerKind.SNS, tuple(sns_items))
    raise TriggerError(
        f"event records come from {_shown(sorted(sources))}: this function reads records from "
        "aws:s3 (S3 event notifications), aws:sqs or aws:sns (a queue or topic of them), one "
        "source per event"
    )


def _record_source(record: object) -> str:
    if not isinstance(record, Mapping):
        raise TriggerError("an event record is not a JSON object")
    # S3 and SQS spell it eventSource; SNS spells it EventSource.
    source = record.get("eventSource", record.get("EventSource"))
    return source if isinstance(source, str) else _shown(source)


def _message_items(
    body: object, message_id: str | None, *, sns_envelope_allowed: bool
) -> list[WorkItem]:
    """The items in one SQS or SNS message body, already parsed from JSON."""
    if not isinstance(body, Mapping):
        raise TriggerError("the message is not a JSON object")
    if CONTINUATION_MARKER in body:
        return [_continuation_item(body, message_id)]
    if _is_destination_record(body):
        # A replayed dead letter: what failed is the payload, and it may be any shape above.
        payload = _message_items(
            body[_DESTINATION_PAYLOAD], message_id, sns_envelope_allowed=sns_envelope_allowed
        )
        return list(_replayed(payload))
    if "Records" in body:
        records = body["Records"]
        if not isinstance(records, Sequence) or isinstance(records, str):
            raise TriggerError("the S3 notification's Records is not a list")
        if records and {_record_source(record) for record in records} == {_SNS_SOURCE}:
            # The payload of an SNS-invoked event that was dead-lettered: aws:sns records.
            return [item for record in records for item in _sns_record_items(record, message_id)]
        return [item for record in records for item in _s3_record_items(record, message_id)]
    if body.get("Event") == _S3_TEST_EVENT:
        return []
    if sns_envelope_allowed and body.get("Type") == "Notification" and "Message" in body:
        return _sns_message_items(body, message_id)
    if "detail-type" in body and "source" in body:
        return _eventbridge_items(body, message_id)
    raise TriggerError(
        f"unrecognised message with keys {_describe_keys(body)}: expected an S3 event "
        "notification, an SNS notification of one, an EventBridge event or a continuation"
    )


def _sns_record_items(record: Mapping[str, Any], message_id: str | None) -> list[WorkItem]:
    """The items of one ``aws:sns`` record: SNS invoking the function with a topic's message
    (``message_id`` is the SQS message it was replayed in, if any)."""
    notification = _mapping(record.get("Sns"), "Sns")
    try:
        return _sns_message_items(notification, message_id)
    except TriggerError as error:
        message_id = notification.get("MessageId")
        raise TriggerError(f"SNS message {message_id}: {error}") from None


def _sns_message_items(notification: Mapping[str, Any], message_id: str | None) -> list[WorkItem]:
    """The items in an SNS notification's ``Message``: an S3 notification, as SNS relays it."""
    inner = notification.get("Message")
    if not isinstance(inner, str):
        raise TriggerError("the SNS notification's Message is not text")
    try:
        parsed = json.loads(inner)
    except (ValueError, RecursionError):
        raise TriggerError("the SNS notification's Message is not JSON") from None
    return _message_items(parsed, message_id, sns_envelope_allowed=False)


def _s3_record_items(record: object, message_id: str | None) -> list[WorkItem]:
    # Both callers have read every record's eventSource first (_record_source), which refuses
    # a record that is no JSON object.
    assert isinstance(record, Mapping)
    s3 = _mapping(record.get("s3"), "s3")
    bucket = _text(_mapping(s3.get("bucket"), "s3.bucket").get("name"), "s3.bucket.name")
    obj = _mapping(s3.get("object"), "s3.object")
    ref = ObjectRef(
        bucket=bucket,
        key=unquote_plus(_text(obj.get("key"), "s3.object.key")),
        version_id=_optional_text(obj.get("versionId"), "s3.object.versionId"),
        etag=_etag(obj.get("eTag"), "s3.object.eTag"),
        size=_optional_count(obj.get("size"), "s3.object.size"),
    )
    event_name = record.get("eventName")
    # A hand-written event may leave eventName out; S3 itself always sets it.
    if isinstance(event_name, str) and not event_name.startswith(_OBJECT_CREATED_PREFIX):
        return [
            _item(ref, message_id, f"S3 event {_shown(event_name)[1:-1]} does not create an object")
        ]
    return [_item(ref, message_id, live=True)]


def _eventbridge_items(event: Mapping[str, Any], message_id: str | None) -> list[WorkItem]:
    source = event.get("source")
    if source != "aws.s3":
        raise TriggerError(
            f"EventBridge event from {_shown(source)}: route only S3 'Object Created' events "
            "(source aws.s3) to this function"
        )
    detail = _mapping(event.get("detail"), "detail")
    detail_type = event.get("detail-type")
    if detail_type != _EVENTBRIDGE_OBJECT_CREATED and "object" not in detail:
        # Not one of the bucket's EventBridge notifications (CloudTrail's "AWS API Call via
        # CloudTrail" has source aws.s3 too): there is no object to skip, and a missing field
        # would read as a damaged Object Created event.
        raise TriggerError(
            f"EventBridge event {_shown(detail_type)} from aws.s3 names no object: route only the "
            "bucket's 'Object Created' events (S3's EventBridge notifications) to this function"
        )
    obj = _mapping(detail.get("object"), "detail.object")
    ref = ObjectRef(
        bucket=_text(_mapping(detail.get("bucket"), "detail.bucket").get("name"), "bucket name"),
        key=_eventbridge_key(_text(obj.get("key"), "detail.object.key")),
        version_id=_optional_text(obj.get("version-id"), "detail.object.version-id"),
        etag=_etag(obj.get("etag"), "detail.object.etag"),
        size=_optional_count(obj.get("size"), "detail.object.size"),
    )
    if detail_type != _EVENTBRIDGE_OBJECT_CREATED:
        return [
            _item(ref, message_id, f"EventBridge event {_shown(detail_type)} is not Object Created")
        ]
    return [_item(ref, message_id, live=True)]


def _eventbridge_key(key: str) -> str:
    """An EventBridge event's key, as written, or percent-decoded when it holds a ``%`` and
    decodes to an ELB log's key.

    AWS documents no encoding here, and Powertools' S3EventBridgeNotificationObject.key applies
    ``unquote_plus`` (a literal ``+`` would become a space). ELB writes no ``%`` in its file
    names, but an IPv6 node's address in one holds colons, which S3's notifications encode
    (``%3A``): a key that names no ELB log as written, and one once decoded, was encoded, and is
    decoded without reading ``+`` as a space. Any other key is used as written (a prefix of the
    user's may hold a ``%``).

    >>> _eventbridge_key("AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/"
    ...     "123456789012_elasticloadbalancing_us-east-1_app.a.b1_20261128T2340Z_2600%3A1f18%3A%3A1"
    ...     "_x.log.gz")[-28:]
    'T2340Z_2600:1f18::1_x.log.gz'
    >>> _eventbridge_key("a/100%25 b+c.log")
    'a/100%25 b+c.log'
    >>> _eventbridge_key("team%41/AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/"
    ...     "28/123456789012_elasticloadbalancing_us-east-1_app.a.b1_20261128T2340Z_10.0.0.1_x.log"
    ...     )[:9]
    'team%41/A'
    """
    if "%" in key and not parse_key(key).is_log:
        decoded = unquote(key)
        if parse_key(decoded).is_log:
            return decoded
    return key


def _continuation_item(message: Mapping[str, Any], message_id: str | None) -> WorkItem:
    live = message.get(_CONTINUATION_LIVE, False)
    if type(live) is not bool:
        raise TriggerError(f"continuation live is {_shown(live)}, not true or false")
    return _item(parse_continuation(message), message_id, live=live)


def _item(
    ref: ObjectRef, message_id: str | None = None, skip: str | None = None, *, live: bool = False
) -> WorkItem:
    decision = classify(ref)
    if skip is not None:
        return WorkItem(ref, decision.key_info, skip, sqs_message_id=message_id, live=live)
    return WorkItem(ref, decision.key_info, decision.skip_reason, decision.quiet, message_id, live)


def _replayed(items: Sequence[WorkItem]) -> tuple[WorkItem, ...]:
    """The items of a replayed dead letter: shipped as named, but no longer live."""
    return tuple(replace(item, live=False) for item in items)


def _within_scope(item: WorkItem, log_bucket: str | None, log_prefix: str | None) -> WorkItem:
    # Another service's logs outside the scope: the scope, which the deployment sets, says why.
    if not item.ship and item.key_info.kind is not KeyKind.OTHER_SERVICE:
        return item
    if log_bucket is not None and item.ref.bucket != log_bucket:
        reason = (
            f"the bucket is not {ENV.LOG_BUCKET} {log_bucket!r}, the only bucket this function "
            "may read"
        )
    elif log_prefix is not None and not item.ref.key.startswith(log_prefix):
        reason = (
            f"the key is outside {ENV.LOG_PREFIX} {log_prefix!r}, the only keys this function "
            "may read"
        )
    else:
        return item
    return replace(item, skip_reason=reason, quiet=False)


def _is_destination_record(value: Mapping[str, Any]) -> bool:
    return _DESTINATION_CONTEXT in value and isinstance(value.get(_DESTINATION_PAYLOAD), Mapping)


# --- field checks -------------------------------------------------------------------------------


def _mapping(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TriggerError(f"{name} is missing or not a JSON object")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise TriggerError(f"{name} is missing or not a non-empty string")
    return value


def _optional_text(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TriggerError(f"{name} is not a string")
    return value


def _etag(value: object, name: str) -> str | None:
    etag = _optional_text(value, name)
    return None if etag == SAMPLE_ETAG else etag


def _count(value: object, name: str) -> int:
    # bool is an int to Python, never to JSON's writers.
    if type(value) is not int or value < 0:
        raise TriggerError(f"{name} is {_shown(value)}, not a whole number of bytes or hops")
    return value


def _optional_count(value: object, name: str) -> int | None:
    return None if value is None else _count(value, name)


def _shown(value: object) -> str:
    """``repr(value)``, its strings and containers cut to about ``SHOWN_VALUE_CHARS``.

    >>> _shown("Object Created"), _shown(7), len(_shown("x" * 100_000)) <= SHOWN_VALUE_CHARS
    ("'Object Created'", '7', True)
    """
    return _SHORT_REPR.repr(value)


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _SHORT_REPR.maxlong = SHOWN_VALUE_CHARS
_SHORT_REPR.maxlist = _SHORT_REPR.maxdict = _SHORT_REPR.maxtuple = 4
_SHORT_REPR.maxlevel = 2


def _describe_keys(mapping: Mapping[Any, Any]) -> str:
    # Enough to recognise a shape in a log line, never the whole (possibly large) event.
    keys = sorted(str(key)[:40] for key in list(mapping)[:10])
    return "[" + ", ".join(keys) + ("" if len(mapping) <= 10 else ", ...") + "]"
