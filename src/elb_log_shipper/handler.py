"""The Lambda entry point: a thin shell around ``triggers`` and ``pipeline.ship_objects``.

Once per container (at import, ``cold_start``): the settings are read and validated; a
configuration error is logged and then raised, with the same one-sentence message, by every
invocation, so that each failed invocation says what to fix. The S3 and SQS clients and the
Logstash ``SocketPool`` are created on first use and kept for the warm invocations that follow,
and so are the privacy rules (README, Privacy); with ``CLIENT_IP=hash`` each invocation asks
Powertools for the key (from its cache, refreshed from SSM every ``HASH_KEY_MAX_AGE_SECONDS``),
and a key that cannot be read fails the invocation like a configuration error.

Each invocation:

1. ``triggers.parse_event`` says what invoked the function and which objects to ship. The ELB
   test file and ``s3:TestEvent`` are skipped quietly; health-check logs, objects of another
   bucket than ``LOG_BUCKET`` and keys outside ``LOG_PREFIX`` (which the role may not read: S3
   would answer 403, a failure retried until it is dead-lettered) are skipped with a log line;
   every skip counts in ``ObjectsSkipped``. Every other key is shipped (an unknown one's lines
   count as parse failures).
2. ``pipeline.ship_objects`` ships them, stops at the deadline margin, and confirms delivery.
3. After that confirmation, one continuation message per object handed off goes to
   ``CONTINUATION_QUEUE_URL``; the SQS trigger brings it back to this function. It says whether
   the object is live (``WorkItem.live``), so that its later hops report lag as its first did.
4. One structured log line per object (``report.ObjectResult.as_dict``), the metrics (EMF), and
   the result: ``{"objects": [...]}``, plus ``batchItemFailures`` for SQS. ``LagSeconds`` is
   measured over live objects only: a backfill (``ship --via-lambda``), a replayed dead letter
   and their hops are old on purpose, and their age would only set off the lag alarm.

How failures surface, by trigger:

- SQS: never raises for an object. A message fails (``batchItemFailures``, so SQS retries it
  and after ``maxReceiveCount`` dead-letters it) when it could not be read (logged, and counted
  in ``ObjectsFailed``), when one of its objects is ``FAILED`` (S3 or Logstash failing, hop
  budget spent, events not confirmed) or when its continuation could not be sent. The other
  messages of the batch succeed. A failed message of the continuation queue comes back sooner
  than the queue's visibility timeout for its first retries (``retry_after``, ``_back_off``).
- S3 notification, SNS, EventBridge, direct invocation (asynchronous): when any object is
  ``FAILED`` the invocation raises, after confirming what was sent, so that Lambda retries the
  whole event and, after its retries, sends it to the on-failure destination (dead-letter
  queue). No continuation is sent then: the retry starts the event's objects again, and
  ``event.id`` makes the lines shipped twice one document downstream.
- Logstash failing part-way through an object: the part it confirmed counts, and the object is
  ``HANDED_OFF`` from its confirmed offset (a continuation, as at the deadline), so the next
  attempt does not start again from byte 0. Of an asynchronous event, an object of which
  nothing was confirmed, and one not started after Logstash failed, is ``HANDED_OFF`` from
  where it began (``_park_undelivered``): it waits for Logstash in the continuation queue
  (about 2 hours of retries) instead of failing the event, which Lambda would dead-letter
  within minutes. Of an SQS message, or without ``CONTINUATION_QUEUE_URL``, it is ``FAILED``,
  as above.
- Objects ``REJECTED`` (gone, not the object the event names, bad gzip, another compression)
  are logged and counted in ``ObjectsFailed`` and fail nothing: retrying cannot help. Their
  ``error`` in the result says why in one sentence (what ``sam local invoke`` prints).
- An object past ``MAX_HOPS``, or archived in S3 Glacier and not restored, goes straight to
  ``DEAD_LETTER_QUEUE_URL`` when that is set (``DEAD_LETTERED``: logged, counted in
  ``ObjectsFailed``, fails nothing), as a continuation with a fresh hop budget that can be
  replayed after a fix; otherwise, or when its event (SQS: its message) is retried for another
  object anyway, it is ``FAILED``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from elb_log_shipper.awssetup import region
from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.errors import ConfigurationError, ShipperError
from elb_log_shipper.hashkey import fetch_hash_key
from elb_log_shipper.logstash import SocketPool
from elb_log_shipper.pipeline import Shipment, ship_objects
from elb_log_shipper.privacy import ClientAddress, PrivacyRules
from elb_log_shipper.report import ObjectResult, Outcome
from elb_log_shipper.triggers import (
    Trigger,
    TriggerError,
    TriggerKind,
    WorkItem,
    make_continuation,
    parse_event,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

__all__ = ["cold_start", "lambda_handler", "logger", "metrics"]

# Used when POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE are not set (sam local, tests),
# so that metrics always have a namespace to go to. template.yaml sets the same namespace, and the
# stack's name as the service: each stack's metrics are its own.
DEFAULT_SERVICE = "elb-log-shipper"
DEFAULT_METRICS_NAMESPACE = "ElbLogShipper"
METRIC_DIMENSION_ENVIRONMENT = "environment"

# S3: fail a connection in seconds, not botocore's 60 s; a read waits longer, as S3 may pause
# between chunks. Neither holds up the deadline: a read still waiting at the margin is abandoned
# (source.LineReader's should_stop) and the rest of the object handed off.
S3_CONNECT_TIMEOUT = 5.0
S3_READ_TIMEOUT = 20.0
# Attempts of each S3 GET (the first and its retries; the command's: backfill.S3_MAX_ATTEMPTS):
# the back-offs when S3 throttles, at most 1 + 2 + 4 + 8 = 15 s in standard mode, fit in the
# default 30 s deadline margin; a GET still retried at the margin is abandoned, its object handed
# off. botocore's default (3) failed objects that a few more seconds would have shipped.
S3_MAX_ATTEMPTS = 5
# SQS: a hand-off is sent after the hard deadline, within HANDOFF_RESERVE_SECONDS (5 s): two
# attempts of at most 1 + 1.5 s each fit.
SQS_CONNECT_TIMEOUT = 1.0
SQS_READ_TIMEOUT = 1.5
SQS_MAX_ATTEMPTS = 2
# The longest an SQS call takes (SQS_MAX_ATTEMPTS of the two timeouts): a back-off is set only
# with that much of the invocation left.
SQS_CALL_SECONDS = SQS_MAX_ATTEMPTS * (SQS_CONNECT_TIMEOUT + SQS_READ_TIMEOUT)
# When a continuation that failed comes back, after its 1st to 4th receive (`retry_after`): a
# minute (a Logstash restart), five, then the queue's 30 minutes and an hour. With the queue's
# 5 receives (the first at once) that is receives at 0, 1, 6, 36 and 96 minutes and the
# dead-letter queue at about 126: the 2 hours of retries the queue gave at 30 minutes each.
RETRY_AFTER_SECONDS = (60, 300, 1800, 3600)
# The outcomes whose lines were delivered as far as they were read, when no error says otherwise.
_DELIVERED = frozenset({Outcome.SHIPPED, Outcome.HANDED_OFF})


class Metric:
    """Metric names: template.yaml's alarms and dashboard use exactly these."""

    OBJECTS_SHIPPED = "ObjectsShipped"
    OBJECTS_FAILED = "ObjectsFailed"
    OBJECTS_REJECTED = "ObjectsRejected"
    LINES_READ = "LinesRead"
    EVENTS_SENT = "EventsSent"
    PARSE_FAILURES = "ParseFailures"
    EVENTS_DROPPED = "EventsDropped"
    EVENTS_TRUNCATED = "EventsTruncated"
    BYTES_READ = "BytesRead"
    RETRIES = "Retries"
    RECONNECTS = "Reconnects"
    EVENTS_RESENT = "EventsResent"
    SHIP_SECONDS = "ShipSeconds"
    LAG_SECONDS = "LagSeconds"
    HANDOFFS = "Handoffs"
    OBJECTS_SKIPPED = "ObjectsSkipped"
    DELIVERY_FAILURES = "DeliveryFailures"


logger = Logger()
metrics = Metrics()


@dataclass(slots=True)
class _Container:
    """What one Lambda container keeps between invocations."""

    settings: Settings | None
    error: ConfigurationError | None
    pool: SocketPool | None = None
    s3: S3Client | None = None
    sqs: SQSClient | None = None
    privacy: PrivacyRules | None = None
    # The HMAC key: never in a repr (a log line or a traceback's locals), as PrivacyRules'.
    privacy_key: bytes | None = field(default=None, repr=False)
    privacy_built: bool = False

    def privacy_rules(self, settings: Settings) -> PrivacyRules | None:
        """The privacy rules, built once per container and again when the hash key changed
        (Powertools refetches it after ``HASH_KEY_MAX_AGE_SECONDS``)."""
        key = None
        if settings.client_ip is ClientAddress.HASH and settings.client_ip_hash_key_parameter:
            key = fetch_hash_key(settings.client_ip_hash_key_parameter)
        if not self.privacy_built or key != self.privacy_key:
            # Kept between invocations: the rules memoise anonymised addresses.
            self.privacy = settings.privacy_rules(key)
            self.privacy_key, self.privacy_built = key, True
        return self.privacy

    def require_settings(self) -> Settings:
        if self.settings is None:
            assert self.error is not None
            raise ConfigurationError(str(self.error))
        return self.settings

    def socket_pool(self, settings: Settings) -> SocketPool:
        if self.pool is None:
            self.pool = SocketPool(settings)
        return self.pool

    def s3_client(self) -> S3Client:
        if self.s3 is None:
            self.s3 = boto3.client(
                "s3",
                region_name=region(),
                config=Config(
                    connect_timeout=S3_CONNECT_TIMEOUT,
                    read_timeout=S3_READ_TIMEOUT,
                    retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
                ),
            )
        return self.s3

    def sqs_client(self) -> SQSClient:
        if self.sqs is None:
            self.sqs = boto3.client(
                "sqs",
                region_name=region(),
                config=Config(
                    connect_timeout=SQS_CONNECT_TIMEOUT,
                    read_timeout=SQS_READ_TIMEOUT,
                    # total_max_attempts counts the first attempt; botocore's max_attempts counts
                    # retries (with it, three attempts did not fit the reserve).
                    retries={"total_max_attempts": SQS_MAX_ATTEMPTS, "mode": "standard"},
                ),
            )
        return self.sqs


def cold_start(environ: Mapping[str, str] | None = None) -> None:
    """Read and validate the settings, as the module does once at import; forget the clients.

    A ConfigurationError is logged here and raised by every invocation. Tests call this again
    to start a new container with other settings.

    >>> cold_start({"LOGSTASH_HOST": "127.0.0.1", "LOGSTASH_PORT": "5044"})  # doctest: +SKIP
    """
    global _container  # noqa: PLW0603 - the container's state is this module's state
    previous = globals().get("_container")
    if isinstance(previous, _Container) and previous.pool is not None:
        previous.pool.close()
    if not metrics.namespace:
        metrics.namespace = DEFAULT_METRICS_NAMESPACE
    if not metrics.service:
        metrics.service = DEFAULT_SERVICE
    try:
        settings = Settings.from_env(environ).require_destination()
    except ConfigurationError as error:
        logger.error("invalid configuration", extra={"error": str(error)})
        _container = _Container(None, error)
        return
    _container = _Container(settings, None)
    metrics.clear_default_dimensions()
    if settings.environment:
        metrics.set_default_dimensions(**{METRIC_DIMENSION_ENVIRONMENT: settings.environment})


_container: _Container
cold_start()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Ship the objects an S3, SQS, SNS, EventBridge or direct (continuation) event names.

    Returns ``{"objects": [ledger, ...]}`` and, for SQS, ``"batchItemFailures"``. Raises
    ConfigurationError for invalid settings, TriggerError for an event of no known shape, and
    ShipperError (DeliveryError when Logstash failed) when an object of an asynchronous event
    must be retried.

    >>> lambda_handler(json.load(open("events/s3-put.json")), context)  # doctest: +SKIP
    {'objects': [{'bucket': 'elb-logs-example', 'outcome': 'shipped', ...}, ...]}
    """
    container = _container
    # Read first: the time this invocation has is the function's timeout.
    started_with = context.get_remaining_time_in_millis() / 1000
    try:
        settings = container.require_settings()
        _require_time(settings, started_with)
        privacy = container.privacy_rules(settings)
        # Loads the TLS files (LOGSTASH_CA_FILE, the client certificate): one that is no PEM is
        # found here, on every invocation, and said as the settings' errors are.
        pool = container.socket_pool(settings)
    except ConfigurationError as error:
        logger.error("invalid configuration", extra={"error": str(error)})
        raise
    try:
        trigger = parse_event(event, log_prefix=settings.log_prefix, log_bucket=settings.log_bucket)
    except TriggerError as error:
        logger.error("unrecognised event", extra={"error": str(error)})
        raise
    _log_skips(trigger)
    to_ship = trigger.to_ship
    shipment = ship_objects(
        [item.ref for item in to_ship],
        pool,
        settings,
        remaining=lambda: context.get_remaining_time_in_millis() / 1000,
        s3_client=container.s3_client() if to_ship else None,
        privacy=privacy,
    )
    if trigger.kind is not TriggerKind.SQS:
        _park_undelivered(shipment, settings)
    _dead_letter(to_ship, shipment.results, settings, container)
    retry_event = trigger.kind is not TriggerKind.SQS and any(
        ledger.outcome is Outcome.FAILED for ledger in shipment.results
    )
    if trigger.kind is TriggerKind.SQS:
        _hold_with_failed_messages(to_ship, shipment.results)
    handoffs = 0
    if not retry_event:
        handoffs = _hand_off(to_ship, shipment.results, settings, container)
        retry_event = trigger.kind is not TriggerKind.SQS and any(
            ledger.outcome is Outcome.FAILED for ledger in shipment.results
        )
    _log_objects(to_ship, shipment.results, retry_event)
    _add_metrics(trigger, shipment, handoffs)
    result: dict[str, Any] = {"objects": [ledger.as_dict() for ledger in shipment.results]}
    if trigger.kind is TriggerKind.SQS:
        failures = _batch_item_failures(trigger, to_ship, shipment.results)
        result["batchItemFailures"] = failures
        _back_off(trigger, failures, settings, container, context)
        return result
    if retry_event:
        if shipment.delivery_error is not None:
            raise shipment.delivery_error
        failed = [ledger for ledger in shipment.results if ledger.outcome is Outcome.FAILED]
        first = failed[0]
        # Most errors (every one from reading S3) name the object already: once is enough.
        said = first.error or "failed"
        if first.ref.uri not in said:
            said = f"{first.ref.uri}: {said}"
        raise ShipperError(
            f"{len(failed)} of {len(shipment.results)} objects failed and the event is retried; "
            f"first: {said}"
        )
    return result


def _hold_with_failed_messages(items: Sequence[WorkItem], ledgers: Sequence[ObjectResult]) -> None:
    """An object handed off whose SQS message names another object that FAILED is not handed
    off: the message is retried whole (``batchItemFailures``), and each retry would start one
    more chain of continuations for it. It fails with its message instead, as an asynchronous
    event that is retried sends no continuation."""
    failed = {
        item.sqs_message_id
        for item, ledger in zip(items, ledgers, strict=True)
        if ledger.outcome is Outcome.FAILED
    }
    for item, ledger in zip(items, ledgers, strict=True):
        if ledger.outcome is Outcome.HANDED_OFF and item.sqs_message_id in failed:
            ledger.outcome = Outcome.FAILED
            ledger.error = (
                "not handed off: another object of its SQS message failed, and the message is "
                "retried whole"
            )


def _hand_off(
    items: Sequence[WorkItem],
    ledgers: Sequence[ObjectResult],
    settings: Settings,
    container: _Container,
) -> int:
    """Send the continuation of each object handed off, live if its item is; an object whose
    message could not be sent becomes FAILED (its message or event is retried: nothing is
    dropped)."""
    sent = 0
    for item, ledger in zip(items, ledgers, strict=True):
        if ledger.outcome is not Outcome.HANDED_OFF or ledger.handoff is None:
            continue
        queue_url = settings.continuation_queue_url
        if queue_url is None:
            ledger.outcome = Outcome.FAILED
            ledger.error = (
                f"{ENV.CONTINUATION_QUEUE_URL} is not set, so the rest of the object from byte "
                f"{ledger.handoff.start_offset} cannot be handed off: set it to the "
                "continuation queue"
            )
            continue
        error = _send(container, queue_url, make_continuation(ledger.handoff, live=item.live))
        if error is not None:
            ledger.outcome = Outcome.FAILED
            ledger.error = f"the continuation could not be sent to {queue_url}: {error}"
            continue
        sent += 1
    return sent


def _require_time(settings: Settings, seconds: float) -> None:
    """Raise ConfigurationError when an invocation that starts with ``seconds`` left (the
    function's timeout) is inside ``DEADLINE_MARGIN_SECONDS`` already: it would hand every
    object off unread, and each hop would do the same until ``MAX_HOPS`` dead-lettered it.
    Lambda's default timeout of 3 s, for one, is less than the default margin of 30 s."""
    if seconds <= settings.deadline_margin:
        raise ConfigurationError(
            f"the invocation started with {seconds:.1f}s left, within "
            f"{ENV.DEADLINE_MARGIN_SECONDS}={settings.deadline_margin:g}, so nothing could be "
            "shipped: set the function's timeout well above it (the template sets 300 s)"
        )


def _park_undelivered(shipment: Shipment, settings: Settings) -> None:
    """Hand each object of an asynchronous event that failed only because Logstash did (nothing
    of it confirmed, or not started) to the continuation queue from where it began, instead of
    failing the event.

    Lambda retries an asynchronous event twice, one and two minutes apart, and then sends it to
    the dead-letter queue: a Logstash down for a few minutes (an upgrade, a blocked pipeline)
    would dead-letter every object written meanwhile, for an operator to replay. A continuation
    that fails is retried by SQS 1, 5, 30 and 60 minutes after its first four failed receives
    (``_back_off``), up to the queue's ``maxReceiveCount`` (the template's 5: about 2 hours),
    and the objects ship by themselves once Logstash is back. Without ``CONTINUATION_QUEUE_URL`` the
    event fails, as before.
    """
    if shipment.delivery_error is None or settings.continuation_queue_url is None:
        return
    for ledger in shipment.results:
        if ledger.outcome is Outcome.FAILED and ledger.delivery_failed and not ledger.hops_spent:
            ledger.outcome = Outcome.HANDED_OFF
            ledger.next_offset = ledger.ref.start_offset
            ledger.error = f"{ledger.error}; retried from the continuation queue"


def _send(container: _Container, queue_url: str, message: Mapping[str, Any]) -> Exception | None:
    """Send ``message`` (JSON) to the SQS queue at ``queue_url``; the error when it failed."""
    try:
        container.sqs_client().send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
    except (BotoCoreError, ClientError) as error:
        return error
    return None


def _dead_letter(
    items: Sequence[WorkItem],
    ledgers: Sequence[ObjectResult],
    settings: Settings,
    container: _Container,
) -> None:
    """Send each object past its hop budget, and each archived one (S3 Glacier, not restored),
    to ``DEAD_LETTER_QUEUE_URL`` at once: retrying them cannot help (a restore takes hours; the
    retries would come within minutes, or SQS's five receives within about two hours).

    But not an object whose event (SQS: its message) is retried anyway, for another object that
    failed (after ``_park_undelivered``): each retry would read it and dead-letter it again, and
    a replay of the queue ship it as many times. It stays FAILED, and goes with its event or
    message. (A continuation that cannot be sent later, ``_hand_off``, can still make its
    message retried: a rarer case, left.)

    The message is the object's continuation with ``hop`` back at 0 (so that replaying it to the
    continuation queue after a fix starts a fresh budget), not live (a replay is not lag), and
    the reason in ``error``. Without the setting, or when the message cannot be sent, the object
    stays FAILED: its message or event is retried and dead-lettered by SQS or Lambda, as for any
    failure.
    """
    queue_url = settings.dead_letter_queue_url
    if queue_url is None:
        return
    at_once = [
        ledger.outcome is Outcome.FAILED and (ledger.hops_spent or ledger.archived)
        for ledger in ledgers
    ]
    # The events or messages retried for another object (an event outside SQS is one unit).
    retried = {
        item.sqs_message_id
        for item, ledger, goes in zip(items, ledgers, at_once, strict=True)
        if ledger.outcome is Outcome.FAILED and not goes
    }
    for item, ledger, goes in zip(items, ledgers, at_once, strict=True):
        if not goes or item.sqs_message_id in retried:
            continue
        body = {**make_continuation(replace(ledger.ref, hop=0)), "error": ledger.error}
        error = _send(container, queue_url, body)
        if error is not None:
            ledger.error = f"{ledger.error}; and it could not be sent to {queue_url}: {error}"
            continue
        ledger.outcome = Outcome.DEAD_LETTERED


def _batch_item_failures(
    trigger: Trigger, shipped: Sequence[WorkItem], ledgers: Sequence[ObjectResult]
) -> list[dict[str, str]]:
    """The SQS messages to retry: unreadable ones and those with an object FAILED."""
    failed = [rejected.sqs_message_id for rejected in trigger.rejected]
    for item, ledger in zip(shipped, ledgers, strict=True):
        if ledger.outcome is Outcome.FAILED and item.sqs_message_id is not None:
            failed.append(item.sqs_message_id)
    unique = dict.fromkeys(failed)
    return [{"itemIdentifier": message_id} for message_id in unique]


def retry_after(receive_count: int) -> int | None:
    """Seconds until the continuation queue hands back a message that failed on its
    ``receive_count``-th receive (``RETRY_AFTER_SECONDS``); None past those: the queue's own
    visibility timeout (30 minutes).

    >>> [retry_after(count) for count in range(1, 7)]
    [60, 300, 1800, 3600, None, None]
    """
    if 1 <= receive_count <= len(RETRY_AFTER_SECONDS):
        return RETRY_AFTER_SECONDS[receive_count - 1]
    return None


def _back_off(
    trigger: Trigger,
    failures: Sequence[Mapping[str, str]],
    settings: Settings,
    container: _Container,
    context: LambdaContext,
) -> None:
    """Set when each failed message of the continuation queue comes back (``retry_after``):
    SQS would hand it back after the queue's visibility timeout, 30 minutes after each receive,
    so a Logstash restarted in two minutes held the objects it failed for half an hour.

    Best effort: a message of another queue, a record without its receipt handle or receive
    count (a hand-made event), an invocation too near its end for one SQS call, or a call that
    fails leaves the queue's timeout, as before (the call is logged)."""
    queue_url = settings.continuation_queue_url
    if not failures or queue_url is None:
        return
    failed = {failure["itemIdentifier"] for failure in failures}
    for receipt in trigger.receipts:
        if (
            receipt.message_id not in failed
            or not _is_queue(receipt.queue_arn, queue_url)
            or (seconds := retry_after(receipt.receive_count)) is None
        ):
            continue
        extra = {"message_id": receipt.message_id, "receive_count": receipt.receive_count}
        if context.get_remaining_time_in_millis() / 1000 < SQS_CALL_SECONDS:
            logger.warning("no time left to set when the message is retried", extra=extra)
            return
        try:
            container.sqs_client().change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt.receipt_handle, VisibilityTimeout=seconds
            )
        except (BotoCoreError, ClientError) as error:
            logger.warning(
                "could not set when the message is retried", extra={**extra, "error": str(error)}
            )
            continue
        logger.info("message retried later", extra={**extra, "retry_after_seconds": seconds})


def _is_queue(arn: object, queue_url: str) -> bool:
    """Whether ``arn`` (an SQS record's ``eventSourceARN``) is the queue at ``queue_url``: the
    same account and name (``arn:aws:sqs:REGION:ACCOUNT:NAME``, ``https://HOST/ACCOUNT/NAME``).

    >>> _is_queue("arn:aws:sqs:eu-west-1:123456789012:c", "https://sqs.eu-west-1.amazonaws.com/123456789012/c")
    True
    """
    if not isinstance(arn, str):
        return False
    parts = arn.split(":")
    path = urlsplit(queue_url).path.strip("/").split("/")
    return len(parts) == 6 and parts[2] == "sqs" and len(path) == 2 and path == parts[4:]


def _abandoned(trigger: Trigger) -> list[WorkItem]:
    """The continuations this version skips: an object part-shipped under another scope (a
    deploy that changed LOG_PREFIX or LOG_BUCKET meanwhile) whose rest would be dropped. Counted
    as rejected objects (their alarm), not as the skips that new notifications make."""
    return [
        item
        for item in trigger.items
        if not item.ship and (item.ref.start_offset > 0 or item.ref.hop > 0)
    ]


def _log_skips(trigger: Trigger) -> None:
    abandoned = {id(item) for item in _abandoned(trigger)}
    for item in trigger.items:
        if item.ship:
            continue
        extra: dict[str, object] = {
            "bucket": item.ref.bucket,
            "key": item.ref.key,
            "reason": item.skip_reason,
        }
        if id(item) in abandoned:
            extra["offset"] = item.ref.start_offset
            logger.error("continuation not shipped: the rest of the object is lost", extra=extra)
        elif item.quiet:
            logger.debug("object skipped", extra=extra)
        else:
            logger.info("object skipped", extra=extra)
    for rejected in trigger.rejected:
        logger.error(
            "SQS message not understood",
            extra={"message_id": rejected.sqs_message_id, "error": rejected.reason},
        )


def _log_objects(
    items: Sequence[WorkItem], ledgers: Sequence[ObjectResult], retry_event: bool
) -> None:
    """One structured line per object: its ledger, never its log lines."""
    for item, ledger in zip(items, ledgers, strict=True):
        extra = ledger.as_dict()
        if item.sqs_message_id is not None:
            extra["message_id"] = item.sqs_message_id
        if ledger.outcome is Outcome.HANDED_OFF and retry_event:
            # No continuation was sent: the retry of the event starts the object again.
            extra["error"] = "not handed off: the whole event is retried"
            logger.info("object not handed off", extra=extra)
        elif ledger.outcome is Outcome.HANDED_OFF and ledger.error is not None:
            # Parked after a failure (Logstash down): a filter on warnings and errors sees it.
            logger.warning("object handed off", extra=extra)
        elif ledger.outcome is Outcome.FAILED:
            logger.error("object failed", extra=extra)
        elif ledger.outcome is Outcome.DEAD_LETTERED:
            logger.error("object dead-lettered", extra=extra)
        elif ledger.outcome is Outcome.REJECTED:
            logger.warning("object rejected", extra=extra)
        else:
            logger.info(f"object {ledger.outcome.value.replace('_', ' ')}", extra=extra)


def _add_metrics(trigger: Trigger, shipment: Shipment, handoffs: int) -> None:
    """The invocation's metrics (README, Metrics and alarms): every one on every invocation that
    got this far, zeros included, so that a sum over a period is a sum over invocations and a
    rate has its denominator; counts are per attempt (a retry reads and counts again)."""
    ledgers = shipment.results
    count = MetricUnit.Count
    outcomes = [ledger.outcome for ledger in ledgers]
    metrics.add_metric(Metric.OBJECTS_SHIPPED, count, outcomes.count(Outcome.SHIPPED))
    failed = sum(map(outcomes.count, (Outcome.FAILED, Outcome.REJECTED, Outcome.DEAD_LETTERED)))
    # An SQS message that could not be read names objects that will not ship until someone
    # looks: counted with them, not left to the dead-letter alarm after five receives.
    failed += len(trigger.rejected)
    abandoned = len(_abandoned(trigger))
    metrics.add_metric(Metric.OBJECTS_FAILED, count, failed + abandoned)
    # Of those, the ones no retry will ship: their lines after the fault are lost unless someone
    # acts (a truncated or corrupt gzip, an object deleted or overwritten before it was read, a
    # continuation that a deploy put outside the function's scope).
    rejected = outcomes.count(Outcome.REJECTED) + abandoned
    metrics.add_metric(Metric.OBJECTS_REJECTED, count, rejected)
    metrics.add_metric(Metric.LINES_READ, count, sum(ledger.lines for ledger in ledgers))
    metrics.add_metric(Metric.EVENTS_SENT, count, shipment.events_confirmed)
    parse_failures = sum(ledger.parse_failures for ledger in ledgers)
    metrics.add_metric(Metric.PARSE_FAILURES, count, parse_failures)
    dropped = sum(ledger.dropped for ledger in ledgers)
    metrics.add_metric(Metric.EVENTS_DROPPED, count, dropped)
    truncated = sum(ledger.oversized_events for ledger in ledgers)
    metrics.add_metric(Metric.EVENTS_TRUNCATED, count, truncated)
    bytes_read = sum(ledger.bytes_read for ledger in ledgers)
    metrics.add_metric(Metric.BYTES_READ, MetricUnit.Bytes, bytes_read)
    # The shared confirmation's resends belong to no one object: counted here, not per object.
    confirmation = shipment.confirmation
    retries = confirmation.retries + sum(ledger.retries + ledger.s3_retries for ledger in ledgers)
    metrics.add_metric(Metric.RETRIES, count, retries)
    reconnects = confirmation.reconnects + sum(ledger.reconnects for ledger in ledgers)
    metrics.add_metric(Metric.RECONNECTS, count, reconnects)
    resent = confirmation.events_resent + sum(ledger.events_resent for ledger in ledgers)
    metrics.add_metric(Metric.EVENTS_RESENT, count, resent)
    metrics.add_metric(Metric.SHIP_SECONDS, MetricUnit.Seconds, round(shipment.seconds, 3))
    metrics.add_metric(Metric.HANDOFFS, count, handoffs)
    skipped = len(trigger.items) - len(trigger.to_ship) - abandoned
    metrics.add_metric(Metric.OBJECTS_SKIPPED, count, skipped)
    delivery_failures = 0 if shipment.delivery_error is None else 1
    metrics.add_metric(Metric.DELIVERY_FAILURES, count, delivery_failures)
    # Lag is of lines delivered: an object Logstash did not confirm (its hand-off or failure
    # carries the error) read lines that did not arrive, and during an outage the graph would
    # show the usual delay while nothing arrives.
    live = (
        ledger.newest_timestamp
        for item, ledger in zip(trigger.to_ship, ledgers, strict=True)
        if item.live and ledger.error is None and ledger.outcome in _DELIVERED
    )
    lag = lag_seconds(list(live))
    if lag is not None:
        metrics.add_metric(Metric.LAG_SECONDS, MetricUnit.Seconds, lag)


def lag_seconds(timestamps: Sequence[str | None], now: dt.datetime | None = None) -> float | None:
    """Seconds from the newest event ``@timestamp`` to ``now``; None when there is none.

    >>> lag_seconds(["2026-11-28T23:39:00.5Z", None],
    ...             now=dt.datetime(2026, 11, 28, 23, 40, tzinfo=dt.UTC))
    59.5
    """
    newest: dt.datetime | None = None
    for text in timestamps:
        if not text:
            continue
        try:
            stamp = dt.datetime.fromisoformat(text)
        except ValueError:
            continue
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        if newest is None or stamp > newest:
            newest = stamp
    if newest is None:
        return None
    return round(((now or dt.datetime.now(dt.UTC)) - newest).total_seconds(), 3)
