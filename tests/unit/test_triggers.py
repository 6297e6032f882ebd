"""triggers: every way the function is invoked, turned into the objects to ship."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from hypothesis import given
from hypothesis import strategies as st

from elb_log_shipper.errors import InputError
from elb_log_shipper.objectkey import KeyKind, LoadBalancerType, parse_key
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.triggers import (
    CONTINUATION_MARKER,
    SAMPLE_ETAG,
    RejectedMessage,
    Trigger,
    TriggerError,
    TriggerKind,
    WorkItem,
    classify,
    items_from_sqs_record,
    make_continuation,
    parse_continuation,
    parse_event,
)
from tests.support.lambda_events import dead_letter_record

EVENTS = Path(__file__).resolve().parents[2] / "events"

BUCKET = "elb-logs-example"
DAY = "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/"
ALB_KEY = (
    DAY + "123456789012_elasticloadbalancing_us-east-1_app.my-alb.50dc6c495c0c9188_"
    "20261128T2340Z_2600:1f18:4c1:a800::7_2a3b4c5d.log.gz"
)
CLASSIC_KEY = (
    DAY + "123456789012_elasticloadbalancing_us-east-1_my-classic-lb_20261128T2340Z_"
    "10.0.2.8_5f6g7h8j.log"
)
TEST_FILE_KEY = "AWSLogs/123456789012/ELBAccessLogTestFile"
ALB_VERSION = "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
ALB_ETAG = "b1946ac92492d2347c6235b4d2611184"
# The sample notifications pin nothing: edited to name a user's object, they ship it as it is.
ALB_REF = ObjectRef(BUCKET, ALB_KEY, size=2048)
CLASSIC_REF = ObjectRef(BUCKET, CLASSIC_KEY, size=4096)


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def s3_record(key: str, event_name: str = "ObjectCreated:Put", **obj: Any) -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": event_name,
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, **obj}},
    }


def sqs_record(message_id: str, body: Any) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    return {"messageId": message_id, "body": text, "eventSource": "aws:sqs"}


def refs(trigger: Trigger) -> list[ObjectRef]:
    return [item.ref for item in trigger.items]


# --- the sample events in events/ -------------------------------------------------------------


def test_every_sample_event_is_covered_here() -> None:
    assert {path.name for path in EVENTS.glob("*.json")} == {
        "s3-put.json",
        "sns-s3.json",
        "s3-test-event.json",
        "s3-test-file.json",
        "sqs-s3.json",
        "sqs-continuation.json",
        "eventbridge-object-created.json",
    }


def test_sample_s3_put_names_its_object_with_a_decoded_key_and_no_pin() -> None:
    trigger = parse_event(load("s3-put.json"))
    assert trigger.kind is TriggerKind.S3
    assert refs(trigger) == [ALB_REF]
    assert [item.key_info.lb_type for item in trigger.items] == [LoadBalancerType.ALB]
    assert all(item.ship and item.sqs_message_id is None for item in trigger.items)
    assert trigger.to_ship == trigger.items


def test_sample_sns_s3_reads_the_notification_in_the_message() -> None:
    trigger = parse_event(load("sns-s3.json"))
    assert trigger.kind is TriggerKind.SNS
    assert refs(trigger) == [ALB_REF]
    assert trigger.items[0].sqs_message_id is None


def test_sam_cli_generated_s3_put_event_pins_nothing() -> None:
    # What `sam local generate-event s3 put --bucket B --key K` prints (SAM CLI 1.x): the eTag is
    # AWS's placeholder, which no object has.
    event = {
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "1970-01-01T00:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "testConfigRule",
                    "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                    "object": {
                        "key": "a%20b/c%3Ad.log.gz",
                        "size": 1024,
                        "eTag": SAMPLE_ETAG,
                        "sequencer": "0A1B2C3D4E5F678901",
                    },
                },
            }
        ]
    }
    assert refs(parse_event(event)) == [ObjectRef(BUCKET, "a b/c:d.log.gz", size=1024)]
    assert SAMPLE_ETAG == "0123456789abcdef0123456789abcdef"


def test_an_eventbridge_placeholder_etag_pins_nothing_and_a_real_one_pins() -> None:
    event = load("eventbridge-object-created.json")
    event["detail"]["object"]["etag"] = SAMPLE_ETAG
    assert refs(parse_event(event))[0].etag is None
    event["detail"]["object"]["etag"] = ALB_ETAG
    assert refs(parse_event(event))[0].etag == ALB_ETAG


def test_sample_s3_test_event_is_nothing_to_do() -> None:
    assert parse_event(load("s3-test-event.json")) == Trigger(TriggerKind.S3)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ELBAccessLogTestFile", "ELB access log test file"),
        ("ELBConnectionLogTestFile", "ELB connection log test file"),
        ("ELBHealthCheckLogTestFile", "ELB health check log test file"),
    ],
)
def test_each_elb_test_file_is_skipped_quietly_and_named(name: str, reason: str) -> None:
    # events/s3-test-file.json, edited to name the test file of each kind of log ELB writes.
    event = load("s3-test-file.json")
    event["Records"][0]["s3"]["object"]["key"] = f"logs/AWSLogs/123456789012/{name}"
    (item,) = parse_event(event).items
    assert item.key_info.kind is KeyKind.TEST_FILE
    assert (item.ship, item.quiet, item.skip_reason) == (False, True, reason)


def test_sample_s3_test_file_is_skipped_quietly() -> None:
    trigger = parse_event(load("s3-test-file.json"))
    (item,) = trigger.items
    assert item.ref.key == TEST_FILE_KEY
    assert item.key_info.kind is KeyKind.TEST_FILE
    assert (item.ship, item.quiet) == (False, True)
    assert trigger.to_ship == ()


def test_sample_sqs_s3_reads_plain_and_sns_wrapped_notifications_and_skips_test_events() -> None:
    trigger = parse_event(load("sqs-s3.json"))
    assert trigger.kind is TriggerKind.SQS
    assert trigger.rejected == ()
    assert [(item.ref, item.sqs_message_id) for item in trigger.items] == [
        (ALB_REF, "059f36b4-87a3-44ab-83d2-661975830a7d"),
        (CLASSIC_REF, "2e1424d4-f796-459a-8184-9c92662be6da"),
    ]


def test_sample_sqs_continuation_resumes_at_its_offset() -> None:
    trigger = parse_event(load("sqs-continuation.json"))
    (item,) = trigger.items
    assert item.ref == ObjectRef(
        BUCKET, ALB_KEY, ALB_VERSION, ALB_ETAG, size=2048, start_offset=1024, hop=1
    )
    assert item.sqs_message_id == "8e5b2f3c-1d4a-4e6b-9f70-2a1b3c4d5e6f"


def test_sample_eventbridge_object_created() -> None:
    trigger = parse_event(load("eventbridge-object-created.json"))
    assert trigger.kind is TriggerKind.EVENTBRIDGE
    assert refs(trigger) == [ALB_REF]


# --- S3 notifications -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("plain/key.log", "plain/key.log"),
        ("with+space.log", "with space.log"),
        ("colon%3Ain%3Akey.log", "colon:in:key.log"),
        ("real%2Bplus.log", "real+plus.log"),
        ("per%25cent.log", "per%cent.log"),
        ("caf%C3%A9.log", "café.log"),
        ("slash/stays/as/is.log", "slash/stays/as/is.log"),
    ],
)
def test_s3_notification_keys_are_url_decoded(encoded: str, key: str) -> None:
    trigger = parse_event({"Records": [s3_record(encoded)]})
    assert refs(trigger) == [ObjectRef(BUCKET, key)]


def test_s3_notification_every_record_in_order() -> None:
    keys = [f"k{i}.log" for i in range(5)]
    trigger = parse_event({"Records": [s3_record(key, size=i) for i, key in enumerate(keys)]})
    assert refs(trigger) == [ObjectRef(BUCKET, key, size=i) for i, key in enumerate(keys)]


def test_s3_notification_null_and_empty_version_mean_unversioned() -> None:
    trigger = parse_event(
        {"Records": [s3_record("a.log", versionId=None), s3_record("b.log", versionId="")]}
    )
    assert [ref.version_id for ref in refs(trigger)] == [None, None]


@pytest.mark.parametrize("event_name", ["ObjectRemoved:Delete", "ObjectRestore:Completed"])
def test_s3_events_that_create_nothing_are_skipped_with_a_reason(event_name: str) -> None:
    (item,) = parse_event({"Records": [s3_record("a.log", event_name)]}).items
    assert not item.ship
    assert not item.quiet
    assert item.skip_reason is not None and event_name in item.skip_reason


def test_health_check_log_is_skipped_with_a_reason() -> None:
    key = DAY + "health_check_log_" + ALB_KEY.rsplit("/", 1)[1]
    (item,) = parse_event({"Records": [s3_record(key)]}).items
    assert item.key_info.kind is KeyKind.HEALTH_CHECK
    assert (item.ship, item.quiet) == (False, False)
    assert item.skip_reason is not None and "health check" in item.skip_reason


# --- classify -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind", "ship", "quiet"),
    [
        (ALB_KEY, KeyKind.ACCESS, True, False),
        (CLASSIC_KEY, KeyKind.ACCESS, True, False),
        (DAY + "conn_log_" + ALB_KEY.rsplit("/", 1)[1], KeyKind.CONNECTION, True, False),
        (DAY + "health_check_log_" + ALB_KEY.rsplit("/", 1)[1], KeyKind.HEALTH_CHECK, False, False),
        (TEST_FILE_KEY, KeyKind.TEST_FILE, False, True),
        ("prefix/" + TEST_FILE_KEY, KeyKind.TEST_FILE, False, True),
        ("some/other/file.log", KeyKind.UNKNOWN, True, False),
        # Other services' logs in a central logging bucket, under the same AWSLogs/<account>/.
        (
            "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/"
            "123456789012_CloudTrail_us-east-1_20261128T2340Z_a1.json.gz",
            KeyKind.OTHER_SERVICE,
            False,
            False,
        ),
        (
            "org/AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/28/"
            "123456789012_vpcflowlogs_us-east-1_fl-1_20261128T2340Z_a1.log.gz",
            KeyKind.OTHER_SERVICE,
            False,
            False,
        ),
        (
            "AWSLogs/123456789012/WAFLogs/cloudfront/acl/2026/11/28/23/40/x.log.gz",
            KeyKind.OTHER_SERVICE,
            False,
            False,
        ),
        # ELB's own folder, even when not a key ELB writes, and an ELB key under a prefix that
        # holds another account's folder: shipped.
        (DAY + "sub/extra.log", KeyKind.UNKNOWN, True, False),
        ("AWSLogs/123456789012/CloudTrail/x/" + ALB_KEY, KeyKind.ACCESS, True, False),
    ],
)
def test_classify(key: str, kind: KeyKind, ship: bool, quiet: bool) -> None:
    decision = classify(ObjectRef(BUCKET, key))
    assert decision.key_info.kind is kind
    assert (decision.ship, decision.quiet) == (ship, quiet)
    assert (decision.skip_reason is None) == ship


def test_another_services_logs_are_skipped_with_a_reason_that_says_what_to_change() -> None:
    key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/x.json.gz"
    (item,) = parse_event({"Records": [s3_record(key)]}).items
    assert (item.ship, item.quiet) == (False, False)
    assert item.skip_reason is not None
    assert "another service" in item.skip_reason and "prefix" in item.skip_reason


def test_classify_reads_local_paths_too() -> None:
    assert classify(ObjectRef.local("/tmp/dl/" + TEST_FILE_KEY)).quiet


# --- SQS ----------------------------------------------------------------------------------------


def test_sqs_keeps_each_message_id_for_each_object() -> None:
    event = {
        "Records": [
            sqs_record("m1", {"Records": [s3_record("a.log"), s3_record("b.log")]}),
            sqs_record("m2", {"Records": [s3_record("c.log")]}),
        ]
    }
    trigger = parse_event(event)
    assert [(item.ref.key, item.sqs_message_id) for item in trigger.items] == [
        ("a.log", "m1"),
        ("b.log", "m1"),
        ("c.log", "m2"),
    ]


def test_sqs_sns_envelope_and_eventbridge_and_test_event_bodies() -> None:
    eventbridge = load("eventbridge-object-created.json")
    sns = {"Type": "Notification", "Message": json.dumps({"Records": [s3_record("x+y.log")]})}
    sns_test = {"Type": "Notification", "Message": json.dumps({"Event": "s3:TestEvent"})}
    event = {
        "Records": [
            sqs_record("eb", eventbridge),
            sqs_record("sns", sns),
            sqs_record("sns-test", sns_test),
            sqs_record("test", {"Service": "Amazon S3", "Event": "s3:TestEvent"}),
        ]
    }
    trigger = parse_event(event)
    assert [(item.ref.key, item.sqs_message_id) for item in trigger.items] == [
        (ALB_KEY, "eb"),
        ("x y.log", "sns"),
    ]


BAD_BODIES: list[tuple[str, Any]] = [
    ("not json", "hello"),
    ("json but a list", [1, 2]),
    ("unknown object", {"hello": "world"}),
    ("records not a list", {"Records": "nope"}),
    ("record without key", {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {}}}]}),
    ("sns message not json", {"Type": "Notification", "Message": "plain text"}),
    ("sns message not text", {"Type": "Notification", "Message": {"Records": []}}),
    (
        "sns inside sns",
        {"Type": "Notification", "Message": json.dumps({"Type": "Notification", "Message": "{}"})},
    ),
    ("eventbridge from elsewhere", {"source": "aws.ec2", "detail-type": "x", "detail": {}}),
    ("continuation of version 2", {CONTINUATION_MARKER: 2, "bucket": "b", "key": "k"}),
    ("deeply nested", "[" * 100_000 + "]" * 100_000),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_BODIES], ids=[i for i, _ in BAD_BODIES])
def test_sqs_unreadable_message_is_rejected_alone(body: Any) -> None:
    event = {
        "Records": [
            sqs_record("good-1", {"Records": [s3_record("a.log")]}),
            sqs_record("bad", body),
            sqs_record("good-2", {"Records": [s3_record("b.log")]}),
        ]
    }
    trigger = parse_event(event)
    assert [item.sqs_message_id for item in trigger.items] == ["good-1", "good-2"]
    (rejected,) = trigger.rejected
    assert rejected.sqs_message_id == "bad"
    assert rejected.reason.startswith("SQS message bad")
    with pytest.raises(TriggerError, match="SQS message bad"):
        items_from_sqs_record(event["Records"][1])


def test_sqs_message_without_a_text_body_is_rejected_alone() -> None:
    # A record that an SQS message's shape names but whose body is no text (a hand-written
    # test event): that message is rejected, the others shipped.
    bad = {"messageId": "bad", "body": {"Records": [s3_record("a.log")]}, "eventSource": "aws:sqs"}
    trigger = parse_event({"Records": [bad, sqs_record("good", {"Records": [s3_record("b.log")]})]})
    assert [item.sqs_message_id for item in trigger.items] == ["good"]
    (rejected,) = trigger.rejected
    assert (rejected.sqs_message_id, rejected.reason) == ("bad", "SQS message bad has no text body")


@pytest.mark.parametrize(
    "records", [["b/a.log"], [s3_record("a.log"), 7]], ids=["alone", "after a good one"]
)
def test_an_s3_record_that_is_no_object_is_refused(records: list[Any]) -> None:
    # Refused by _record_source before _s3_record_items reads any record (it asserts as much),
    # in an SQS message and in an event S3 sends the function itself.
    trigger = parse_event({"Records": [sqs_record("bad", {"Records": records})]})
    (rejected,) = trigger.rejected
    assert rejected.reason == "SQS message bad: an event record is not a JSON object"
    with pytest.raises(TriggerError, match=r"^an event record is not a JSON object$"):
        parse_event({"Records": records})


def test_items_from_sqs_record_takes_powertools_sqs_records() -> None:
    # The batch processor hands its record handler an SQSRecord; it is a mapping over the dict.
    for record in SQSEvent(load("sqs-s3.json")).records:
        items = items_from_sqs_record(record)
        assert all(item.sqs_message_id == record.message_id for item in items)
    records = list(SQSEvent(load("sqs-s3.json")).records)
    assert [len(items_from_sqs_record(record)) for record in records] == [1, 1, 0]


def test_sqs_record_without_message_id_is_not_sqs() -> None:
    with pytest.raises(TriggerError, match="messageId"):
        parse_event({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]})


def test_rejected_message_is_a_plain_value() -> None:
    assert RejectedMessage("m", "why") == RejectedMessage("m", "why")


# --- SNS -------------------------------------------------------------------------------------


def sns_record(message: Any, message_id: str = "sns-1") -> dict[str, Any]:
    """A record as SNS invokes a subscribed function (AWS's documented ``aws:sns`` shape)."""
    text = message if isinstance(message, str) else json.dumps(message)
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "Sns": {"Type": "Notification", "MessageId": message_id, "Message": text},
    }


def test_sns_records_each_carry_a_notification() -> None:
    event = {
        "Records": [
            sns_record({"Records": [s3_record("a+b.log"), s3_record("c.log")]}),
            sns_record({"Event": "s3:TestEvent"}, "sns-2"),
        ]
    }
    trigger = parse_event(event)
    assert trigger.kind is TriggerKind.SNS
    assert refs(trigger) == [ObjectRef(BUCKET, "a b.log"), ObjectRef(BUCKET, "c.log")]


@pytest.mark.parametrize(
    "message", ["plain text", {"hello": "world"}, {"Type": "Notification", "Message": "{}"}]
)
def test_sns_message_not_understood_names_the_message(message: Any) -> None:
    with pytest.raises(TriggerError, match="SNS message sns-9"):
        parse_event({"Records": [sns_record(message, "sns-9")]})


def test_sns_and_s3_records_in_one_event_are_refused() -> None:
    event = {"Records": [sns_record({"Records": [s3_record("a.log")]}), s3_record("b.log")]}
    with pytest.raises(TriggerError, match="one source per event"):
        parse_event(event)


# --- EventBridge --------------------------------------------------------------------------------


def test_eventbridge_key_is_taken_as_written() -> None:
    event = load("eventbridge-object-created.json")
    event["detail"]["object"]["key"] = "a+b%3Ac d.log"
    assert refs(parse_event(event))[0].key == "a+b%3Ac d.log"


IPV6_NODE_KEY = ALB_KEY  # its node's address holds colons


@pytest.mark.parametrize(
    "written", [IPV6_NODE_KEY, IPV6_NODE_KEY.replace(":", "%3A")], ids=["as-is", "encoded"]
)
def test_eventbridge_key_of_an_ipv6_node_is_read_encoded_or_not(written: str) -> None:
    # AWS documents no encoding of EventBridge keys, and S3's notifications encode the colons of
    # an IPv6 node's address: a key that names an ELB log once decoded was encoded.
    assert ":" in IPV6_NODE_KEY and parse_key(IPV6_NODE_KEY).is_log
    event = load("eventbridge-object-created.json")
    event["detail"]["object"]["key"] = written
    assert refs(parse_event(event))[0].key == IPV6_NODE_KEY


def test_eventbridge_key_whose_prefix_holds_a_percent_is_taken_as_written() -> None:
    # A prefix of the user's may hold a `%`: a key that names an ELB log as written is one.
    key = "team%41/" + CLASSIC_KEY
    event = load("eventbridge-object-created.json")
    event["detail"]["object"]["key"] = key
    assert refs(parse_event(event))[0].key == key


def test_eventbridge_with_version_and_etag_pins_them() -> None:
    event = load("eventbridge-object-created.json")
    event["detail"]["object"].update({"version-id": ALB_VERSION, "etag": ALB_ETAG})
    del event["detail"]["object"]["size"]
    assert refs(parse_event(event)) == [ObjectRef(BUCKET, ALB_KEY, ALB_VERSION, ALB_ETAG)]


def cloudtrail_put_object() -> dict[str, Any]:
    """S3's PutObject as CloudTrail sends it to EventBridge (source aws.s3 too), what rules of
    the pattern ``detail-type: [AWS API Call via CloudTrail], detail.eventName: [PutObject]``
    matched before S3 had EventBridge notifications; the detail is a CloudTrail record (AWS,
    "Amazon S3 CloudTrail events")."""
    return {
        "version": "0",
        "id": "5c3b7d22-6f2a-4d17-9a0e-0e3c1b2a9f10",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-28T23:40:12Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "eventSource": "s3.amazonaws.com",
            "eventName": "PutObject",
            "awsRegion": "us-east-1",
            "requestParameters": {"bucketName": BUCKET, "key": ALB_KEY},
            "responseElements": None,
            "readOnly": False,
            "eventType": "AwsApiCall",
            "managementEvent": False,
            "eventCategory": "Data",
        },
    }


def test_an_eventbridge_event_of_s3_that_names_no_object_says_its_detail_type() -> None:
    # Before: "detail.object is missing or not a JSON object", as if an Object Created event
    # had lost a field.
    with pytest.raises(TriggerError) as caught:
        parse_event(cloudtrail_put_object())
    (rejected,) = parse_event({"Records": [sqs_record("m", cloudtrail_put_object())]}).rejected
    for message in (str(caught.value), rejected.reason):
        assert "'AWS API Call via CloudTrail'" in message
        assert "Object Created" in message and "detail.object" not in message


def test_eventbridge_other_s3_events_are_skipped_with_a_reason() -> None:
    event = load("eventbridge-object-created.json")
    event["detail-type"] = "Object Deleted"
    (item,) = parse_event(event).items
    assert not item.ship and not item.quiet
    assert item.skip_reason is not None and "Object Deleted" in item.skip_reason


# --- continuation and direct invocation -------------------------------------------------------


def test_direct_invocation_is_a_bare_continuation_message() -> None:
    ref = ObjectRef(BUCKET, CLASSIC_KEY, etag="e", size=10)
    trigger = parse_event(make_continuation(ref))
    assert trigger.kind is TriggerKind.DIRECT
    assert trigger.items == (WorkItem(ref, classify(ref).key_info),)


def test_continuation_schema() -> None:
    ref = ObjectRef(BUCKET, "k", version_id="v", etag="e", size=9, start_offset=5, hop=2)
    assert make_continuation(ref) == {
        "elbLogShipperContinuation": 1,
        "bucket": BUCKET,
        "key": "k",
        "etag": "e",
        "versionId": "v",
        "size": 9,
        "offset": 5,
        "hop": 2,
        "live": False,
    }
    assert make_continuation(ref, live=True)["live"] is True


def test_continuation_of_a_local_file_is_refused() -> None:
    with pytest.raises(ValueError, match="local file"):
        make_continuation(ObjectRef.local("/tmp/x.log"))


def test_hand_written_continuation_defaults_offset_and_hop() -> None:
    ref = parse_continuation({CONTINUATION_MARKER: 1, "bucket": "b", "key": "k"})
    assert ref == ObjectRef("b", "k")


_s3_refs = st.builds(
    ObjectRef,
    bucket=st.text(min_size=1, max_size=63),
    key=st.text(min_size=1, max_size=1024),
    version_id=st.none() | st.text(min_size=1, max_size=40),
    etag=st.none() | st.text(min_size=1, max_size=40),
    size=st.none() | st.integers(min_value=0, max_value=5 * 2**40),
    start_offset=st.integers(min_value=0, max_value=2**53),
    hop=st.integers(min_value=0, max_value=10_000),
)


@given(_s3_refs)
def test_continuation_round_trips_through_json(ref: ObjectRef) -> None:
    body = json.dumps(make_continuation(ref))
    assert body.isascii()  # SQS refuses some characters; escaped JSON has none of them
    assert parse_continuation(json.loads(body)) == ref
    (item,) = items_from_sqs_record({"messageId": "m", "body": body})
    assert (item.ref, item.sqs_message_id) == (ref, "m")


BAD_CONTINUATIONS: list[tuple[str, dict[str, Any]]] = [
    ("no version", {CONTINUATION_MARKER: None, "bucket": "b", "key": "k"}),
    ("version as text", {CONTINUATION_MARKER: "1", "bucket": "b", "key": "k"}),
    ("version as bool", {CONTINUATION_MARKER: True, "bucket": "b", "key": "k"}),
    ("no bucket", {CONTINUATION_MARKER: 1, "key": "k"}),
    ("empty key", {CONTINUATION_MARKER: 1, "bucket": "b", "key": ""}),
    ("negative offset", {CONTINUATION_MARKER: 1, "bucket": "b", "key": "k", "offset": -1}),
    ("float offset", {CONTINUATION_MARKER: 1, "bucket": "b", "key": "k", "offset": 1.5}),
    ("bool hop", {CONTINUATION_MARKER: 1, "bucket": "b", "key": "k", "hop": True}),
    ("text size", {CONTINUATION_MARKER: 1, "bucket": "b", "key": "k", "size": "10"}),
    ("numeric etag", {CONTINUATION_MARKER: 1, "bucket": "b", "key": "k", "etag": 5}),
    ("text live", {CONTINUATION_MARKER: 1, "bucket": "b", "key": "k", "live": "yes"}),
]


@pytest.mark.parametrize(
    "message", [m for _, m in BAD_CONTINUATIONS], ids=[i for i, _ in BAD_CONTINUATIONS]
)
def test_bad_continuations_are_refused(message: dict[str, Any]) -> None:
    if "live" not in message:  # live is read by parse_event, not part of the reference
        with pytest.raises(TriggerError):
            parse_continuation(message)
    with pytest.raises(TriggerError):
        parse_event(message)


# --- live objects: the ones whose age is the pipeline's lag -------------------------------------


def live_flags(trigger: Trigger) -> list[tuple[str, bool]]:
    return [(item.ref.key, item.live) for item in trigger.items]


def test_objects_announced_by_a_notification_are_live() -> None:
    for name in ("s3-put.json", "sns-s3.json", "eventbridge-object-created.json", "sqs-s3.json"):
        items = parse_event(load(name)).items
        assert items and all(item.live for item in items), name


def test_a_backfill_and_an_old_continuation_are_not_live() -> None:
    ref = ObjectRef(BUCKET, ALB_KEY)
    assert not parse_event(make_continuation(ref)).items[0].live
    # Written before the live key existed: readable, and not live.
    (old,) = parse_event(load("sqs-continuation.json")).items
    assert old.ref.hop == 1 and not old.live


def test_a_continuation_carries_live_on() -> None:
    ref = ObjectRef(BUCKET, ALB_KEY, start_offset=4096, hop=1)
    direct = parse_event(make_continuation(ref, live=True))
    queued = parse_event({"Records": [sqs_record("m", make_continuation(ref, live=True))]})
    assert live_flags(direct) == live_flags(queued) == [(ALB_KEY, True)]
    assert queued.items[0].ref == ref


def test_a_replayed_dead_letter_is_not_live_whatever_it_holds() -> None:
    live_continuation = make_continuation(ObjectRef(BUCKET, "c.log", hop=3), live=True)
    for payload in (
        {"Records": [s3_record("a.log")]},
        {"Records": [sns_record({"Records": [s3_record("b.log")]})]},
        load("eventbridge-object-created.json"),
        live_continuation,
    ):
        record = dead_letter_record(payload)
        direct = parse_event(record)
        queued = parse_event({"Records": [sqs_record("m-dlq", record)]})
        assert direct.items and not any(item.live for item in direct.items), payload
        assert queued.items and not any(item.live for item in queued.items), payload
        assert refs(direct) == refs(queued)


# --- dead letters of SNS invocations, redriven through the queue ---------------------------------


def test_a_dead_letter_of_an_sns_invocation_replays_through_the_queue() -> None:
    """The move task puts every DLQ message on the continuation queue, SNS ones included."""
    record = dead_letter_record(load("sns-s3.json"))
    trigger = parse_event({"Records": [sqs_record("m-dlq", record)]})
    assert trigger.rejected == ()
    assert [(item.ref, item.sqs_message_id) for item in trigger.items] == [(ALB_REF, "m-dlq")]
    assert refs(trigger) == refs(parse_event(record))


def test_an_unreadable_sns_dead_letter_is_rejected_naming_the_sns_message() -> None:
    record = dead_letter_record({"Records": [sns_record("plain text", "sns-7")]})
    trigger = parse_event({"Records": [sqs_record("m-dlq", record)]})
    assert trigger.items == ()
    assert [r.sqs_message_id for r in trigger.rejected] == ["m-dlq"]
    assert "SNS message sns-7" in trigger.rejected[0].reason


# --- the log prefix: keys the function may read ------------------------------------------------


def test_keys_outside_the_log_prefix_are_skipped_with_the_reason() -> None:
    message = {"Records": [s3_record("AWSLogs/1/a.log.gz"), s3_record("cloudtrail/b.json.gz")]}
    for event in (
        {"Records": [sns_record(message)]},
        {"Records": [sqs_record("m", message)]},
        message,
        make_continuation(ObjectRef(BUCKET, "cloudtrail/b.json.gz")),
    ):
        trigger = parse_event(event, log_prefix="AWSLogs/")
        inside = [item.ref.key for item in trigger.to_ship]
        outside = [item for item in trigger.items if not item.ship]
        assert inside == [k for k in ("AWSLogs/1/a.log.gz",) if k in json.dumps(event)]
        assert [item.ref.key for item in outside] == ["cloudtrail/b.json.gz"]
        assert not outside[0].quiet
        assert outside[0].skip_reason == (
            "the key is outside LOG_PREFIX 'AWSLogs/', the only keys this function may read"
        )
    # Without a prefix, every key is shipped, as before.
    assert len(parse_event(message).to_ship) == 2


def test_objects_of_another_bucket_are_skipped_with_the_reason() -> None:
    theirs = s3_record("AWSLogs/1/b.log.gz")
    theirs["s3"]["bucket"] = {"name": "someone-elses-logs"}
    message = {"Records": [s3_record("AWSLogs/1/a.log.gz"), theirs]}
    for event in (
        {"Records": [sns_record(message)]},
        {"Records": [sqs_record("m", message)]},
        message,
        make_continuation(ObjectRef("someone-elses-logs", "AWSLogs/1/b.log.gz")),
    ):
        trigger = parse_event(event, log_bucket=BUCKET, log_prefix="AWSLogs/")
        assert all(item.ref.bucket == BUCKET for item in trigger.to_ship)
        (outside,) = [item for item in trigger.items if not item.ship]
        assert outside.ref.bucket == "someone-elses-logs"
        assert not outside.quiet
        assert outside.skip_reason == (
            f"the bucket is not LOG_BUCKET {BUCKET!r}, the only bucket this function may read"
        )
    # Without a bucket, every bucket's objects are shipped, as before.
    assert len(parse_event(message, log_prefix="AWSLogs/").to_ship) == 2


def test_the_log_prefix_keeps_an_earlier_skip_reason() -> None:
    event = {"Records": [s3_record("other/x.log", "ObjectRemoved:Delete")]}
    (item,) = parse_event(event, log_prefix="AWSLogs/").items
    assert item.skip_reason == "S3 event ObjectRemoved:Delete does not create an object"


# --- shapes we do not understand --------------------------------------------------------------

UNKNOWN_EVENTS: list[tuple[str, Any]] = [
    ("empty", {}),
    ("not an object", ["Records"]),
    ("something else", {"hello": "world"}),
    ("empty records", {"Records": []}),
    ("records not a list", {"Records": {"eventSource": "aws:s3"}}),
    ("record not an object", {"Records": ["aws:s3"]}),
    ("sns to lambda", {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{}"}}]}),
    ("kinesis", {"Records": [{"eventSource": "aws:kinesis"}]}),
    (
        "mixed sources",
        {"Records": [s3_record("a.log"), sqs_record("m", {"Records": [s3_record("b.log")]})]},
    ),
    ("s3 record without s3", {"Records": [{"eventSource": "aws:s3"}]}),
    ("s3 record without bucket", {"Records": [{"eventSource": "aws:s3", "s3": {"object": {}}}]}),
    ("s3 key not text", {"Records": [s3_record(7)]}),  # type: ignore[arg-type]
    ("s3 size negative", {"Records": [s3_record("a.log", size=-1)]}),
    ("s3 size as text", {"Records": [s3_record("a.log", size="10")]}),
    ("eventbridge from ec2", {"source": "aws.ec2", "detail-type": "EC2 Instance State"}),
    ("eventbridge without detail", {"source": "aws.s3", "detail-type": "Object Created"}),
    (
        "eventbridge without key",
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}},
    ),
]


@pytest.mark.parametrize(
    "event", [e for _, e in UNKNOWN_EVENTS], ids=[i for i, _ in UNKNOWN_EVENTS]
)
def test_unrecognised_events_raise_trigger_error(event: Any) -> None:
    with pytest.raises(TriggerError) as caught:
        parse_event(event)
    assert isinstance(caught.value, InputError)
    assert str(caught.value)


def test_unrecognised_event_message_names_its_keys_and_what_to_do() -> None:
    with pytest.raises(TriggerError, match=r"keys \[hello\].*invoke the function from"):
        parse_event({"hello": "world"})


def test_parse_event_does_not_modify_the_event() -> None:
    event = load("sqs-s3.json")
    before = copy.deepcopy(event)
    parse_event(event)
    assert event == before


# --- Found by mutation testing (mutmut, session 24): what no test held to. ----------------------


def test_an_s3_notification_pins_the_version_and_etag_it_names() -> None:
    record = s3_record("a.log", versionId="v3", eTag="9b2cf535f27731c974343645a3985328", size=7)
    (ref,) = refs(parse_event({"Records": [record]}))
    assert (ref.version_id, ref.etag) == ("v3", "9b2cf535f27731c974343645a3985328")


def test_the_hop_of_a_replayed_dead_letter_reads_back_as_not_live() -> None:
    """The continuation a replayed item hands off must parse again: a ``live`` of anything but
    true or false fails the next hop (the rest of the object lost)."""
    record = dead_letter_record({"Records": [s3_record("a.log")]})
    (item,) = parse_event(record).items
    continuation = json.loads(json.dumps(make_continuation(item.ref, live=item.live)))
    (hop,) = parse_event(continuation).items
    assert hop.live is False
    assert hop.ref.key == "a.log"


@pytest.mark.parametrize("event_name", ["ObjectRemoved:Delete", "ObjectRestore:Completed"])
def test_a_skipped_record_keeps_its_object_for_the_log(event_name: str) -> None:
    (item,) = parse_event({"Records": [s3_record("a.log", event_name)]}).items
    assert item.ref == ObjectRef(BUCKET, "a.log")


def test_a_log_bucket_alone_skips_objects_of_other_buckets() -> None:
    event = {"Records": [s3_record("a.log")]}
    (item,) = parse_event(event, log_bucket="other-bucket").items
    assert not item.ship
    assert item.skip_reason is not None and "other-bucket" in item.skip_reason
    (kept,) = parse_event(event, log_bucket=BUCKET).items
    assert kept.ship
