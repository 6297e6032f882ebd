"""What a stack deployed from an earlier version meets when it is updated to this one (CHANGELOG.md,
"Upgrading"): its stateful resources are updated in place, never replaced; the overrides it was
deployed with are still taken; and a line shipped again keeps the ``event.id`` it had, so that
Elasticsearch refuses the second copy of a replay across the upgrade.

The pinned values are those of commit ded5670 (2026-11-28), the release before CHANGELOG.md's
first section. A change here must be deliberate, and said in CHANGELOG.md.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from elb_log_shipper.formats import EventBuilder
from elb_log_shipper.samples import ALB_LINES, CLASSIC_LINES, SAMPLE_OBJECTS
from tests.functional.test_deployable import (
    override_value_problems,
    refused_by_rules,
    template,
)
from tests.support.cli_runner import run_command
from tests.support.s3server import MotoServer

# --- the template ---------------------------------------------------------------------------

# Each resource that holds state or a name someone refers to, with the properties whose change
# makes CloudFormation replace it (a new queue: the messages of the old one are lost with it).
# None: the property must stay absent (a queue named by CloudFormation keeps its generated name).
STATEFUL: dict[str, tuple[str, dict[str, Any]]] = {
    "ShipperFunction": (
        "AWS::Serverless::Function",
        {"FunctionName": {"Ref": "AWS::StackName"}, "PackageType": None},
    ),
    "ShipperLogGroup": (
        "AWS::Logs::LogGroup",
        {"LogGroupName": {"Fn::Sub": "/aws/lambda/${AWS::StackName}"}},
    ),
    "ShipperRole": ("AWS::IAM::Role", {"RoleName": None, "Path": None}),
    "ContinuationQueue": ("AWS::SQS::Queue", {"QueueName": None, "FifoQueue": None}),
    "DeadLetterQueue": ("AWS::SQS::Queue", {"QueueName": None, "FifoQueue": None}),
    "LogBucket": ("AWS::S3::Bucket", {"BucketName": {"Ref": "LogBucketName"}}),
    # Replaced once since ded5670 (it was named `<stack>`): a dashboard holds no data.
    "Dashboard": (
        "AWS::CloudWatch::Dashboard",
        {"DashboardName": {"Fn::Sub": "${AWS::StackName}-${AWS::Region}"}},
    ),
}

# The alarms' names, which the operator's notifications, composite alarms and runbooks use.
ALARM_NAMES = {
    "FunctionErrorsAlarm": "function-errors",
    "DeadLetterQueueAlarm": "dead-letters",
    "ParseFailureRateAlarm": "parse-failure-rate",
    "DeliveryFailuresAlarm": "delivery-failures",
    "LagAlarm": "lag",
}
STATEFUL.update(
    (alarm, ("AWS::CloudWatch::Alarm", {"AlarmName": {"Fn::Sub": f"${{AWS::StackName}}-{name}"}}))
    for alarm, name in ALARM_NAMES.items()
)

# The function's events: SAM names the resources it makes after them (the EventBridge rule
# ShipperFunctionLogObjectCreated, the continuation queue's mapping ShipperFunctionContinuation).
FUNCTION_EVENTS = {"LogObjectCreated": "EventBridgeRule", "Continuation": "SQS"}

# ded5670's resources. FunctionThrottlesAlarm was removed on purpose (CHANGELOG.md, Removed).
DED5670_RESOURCES = {
    "ShipperFunction", "ShipperLogGroup", "ShipperRole", "ContinuationQueue", "DeadLetterQueue",
    "DeadLetterQueuePolicy", "LogBucket", "LogBucketPolicy", "FunctionErrorsAlarm",
    "DeadLetterQueueAlarm", "ParseFailureRateAlarm", "DeliveryFailuresAlarm", "LagAlarm",
    "Dashboard",
}  # fmt: skip


def test_every_resource_of_a_deployed_stack_is_kept_under_its_logical_id() -> None:
    """A logical id that disappears deletes the resource on update (a renamed one replaces it)."""
    assert DED5670_RESOURCES - set(template()["Resources"]) == set()


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_a_stateful_resource_is_updated_in_place_not_replaced(name: str) -> None:
    kind, pinned = STATEFUL[name]
    resource = template()["Resources"][name]
    properties = resource["Properties"]
    assert resource["Type"] == kind
    assert {prop: properties.get(prop) for prop in pinned} == pinned


def test_the_queues_and_bucket_survive_a_replacement_or_deletion_as_they_did() -> None:
    resources = template()["Resources"]
    # A queue has neither policy: deleting the stack deletes it, as before (docs/deploy.md,
    # Blue/green, step 4, drains it first).
    for queue in ("ContinuationQueue", "DeadLetterQueue"):
        assert "DeletionPolicy" not in resources[queue]
    for kept in ("LogBucket", "LogBucketPolicy"):
        assert resources[kept]["UpdateReplacePolicy"] == "Retain"
        assert resources[kept]["DeletionPolicy"] in {"Retain", "RetainExceptOnCreate"}


def test_the_function_events_keep_the_names_sam_derives_resource_ids_from() -> None:
    events = template()["Resources"]["ShipperFunction"]["Properties"]["Events"]
    assert {name: event["Type"] for name, event in events.items()} == FUNCTION_EVENTS


# The parameter_overrides of ded5670's samconfig.toml, as operators copied and kept them.
DED5670_OVERRIDES = {
    "default": [
        "Environment=blue", "Architecture=arm64", "CreateLogBucket=true",
        "LogBucketName=example-elb-logs-123456789012", "LogPrefix=AWSLogs/",
        "LogstashHost=logstash.example.internal", "LogstashPort=5044", "LogstashTls=false",
    ],
    "blue": [
        "Environment=blue", "Architecture=arm64", "CreateLogBucket=false",
        "LogBucketName=example-elb-logs-123456789012", "LogPrefix=AWSLogs/",
        "LogstashHost=logstash.example.internal", "LogstashPort=5044", "LogstashTls=true",
        "ReservedConcurrency=10",
    ],
}  # fmt: skip


@pytest.mark.parametrize("environment", sorted(DED5670_OVERRIDES))
def test_the_overrides_a_stack_was_deployed_with_are_still_taken(environment: str) -> None:
    """`sam deploy` with an unchanged samconfig.toml: a removed or renamed parameter, or a
    narrower constraint, would fail the deploy."""
    parameters = template()["Parameters"]
    given = dict(override.partition("=")[::2] for override in DED5670_OVERRIDES[environment])
    problems = [name for name in given if name not in parameters]
    for name, value in given.items():
        if name in parameters:
            problems += override_value_problems(name, value, parameters[name])
    required = {name for name, spec in parameters.items() if "Default" not in spec}
    problems += [f"{name} (no default) not set" for name in required - given.keys()]
    values = {name: str(spec.get("Default", "")) for name, spec in parameters.items()}
    problems += refused_by_rules({**values, **given})
    assert problems == []


# --- events ---------------------------------------------------------------------------------

BUCKET = "elb-logs-upgrade-pin"
ALB_KEY = SAMPLE_OBJECTS[0].key.removesuffix(".gz")
CLASSIC_KEY = SAMPLE_OBJECTS[1].key

# event.id as ded5670 gave it, by (object, version or ETag, offset): the version is the object's
# VersionId, or its ETag in an unversioned bucket.
PINNED_BUILDER_IDS = {
    (BUCKET, ALB_KEY, "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nrjfkd", 0): (
        "992fe618432e4fb3254e02b6-0"
    ),
    (BUCKET, CLASSIC_KEY, "b1946ac92492d2347c6235b4d2611184", 4096): (
        "6607815b5889b6b25dafc5ba-4096"
    ),
    (BUCKET, CLASSIC_KEY, None, 0): "74b7be9a36d15625d66d6c0d-0",
    # A local file: no bucket, no version.
    ("", "logs/elb.log", None, 17): "8251544702d09a881652f032-17",
}


@pytest.mark.parametrize(
    ("bucket", "key", "version", "offset"), sorted(PINNED_BUILDER_IDS, key=str)
)
def test_a_line_keeps_the_event_id_it_had(
    bucket: str, key: str, version: str | None, offset: int
) -> None:
    builder = EventBuilder(bucket=bucket, key=key, version=version)
    event = builder.build(ALB_LINES[0].encode(), offset)
    assert event is not None
    assert event["event"]["id"] == PINNED_BUILDER_IDS[bucket, key, version, offset]


# What ded5670's `elb-log-shipper ship s3://... --to -` printed for the Classic sample object in
# an unversioned bucket, by offset: the ETag, the MD5 of the bytes stored, is fixed by the lines.
CLASSIC_ETAG = "f3063b171439cc7b38a910b04769cf08"
PINNED_SHIPPED_IDS = {offset: f"2cb4dbb4cde4c91cece34119-{offset}" for offset in (0, 203, 366, 530)}


@pytest.mark.usefixtures("user_environment")
def test_a_line_shipped_from_s3_keeps_the_event_id_it_had(
    moto: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)
    body = "".join(f"{line}\n" for line in CLASSIC_LINES).encode()
    stored = s3.put_object(Bucket=BUCKET, Key=CLASSIC_KEY, Body=body)
    assert stored["ETag"].strip('"') == CLASSIC_ETAG, "the sample lines changed: pin other lines"
    run = run_command(capsys, "ship", f"s3://{BUCKET}/{CLASSIC_KEY}", "--to", "-")
    assert run.status == 0, run.err
    events = [json.loads(line) for line in run.out.splitlines()]
    assert {event["log"]["offset"]: event["event"]["id"] for event in events} == PINNED_SHIPPED_IDS
