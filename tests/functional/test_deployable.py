"""The deployable: template.yaml lints and validates offline, ``sam build`` makes a small package
without boto3, and that package, imported by python3.13 the way the Lambda runtime imports it,
ships an S3 object (moto on 127.0.0.1) to a json_lines receiver.

The SAM CLI lives in its own virtualenv (``make tools``). Without it these tests skip on a
developer's machine and fail in CI (``CI=true``), where a skipped deployable would hide a broken
one.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore import xform_name
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.formats import PARSE_FAILURE_TAG
from tests.support.docs import table_names
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import REGION, MotoServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
# The pyenv versions that put python3.13 on PATH for `sam build` (as SAM_PYENV in the Makefile).
ACCOUNT = "123456789012"
SAM_PYENV = os.environ.get("SAM_PYENV", "3.11.7:3.13.0")
FUNCTION = "ShipperFunction"
# Powertools, orjson, isal and our code unpack to about 5.9 MB; 15 MB (6 % of Lambda's 250 MB)
# leaves room, and a jump past it means something heavy (boto3, a test tool) slipped in.
MAX_PACKAGE_BYTES = 15 * 1024 * 1024
# What the python3.13 Lambda runtime provides and the package must not carry.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six")

# The metric names the function emits (Powertools EMF); alarms and dashboard may use only these.
SHIPPER_METRICS = frozenset(
    {
        "ObjectsShipped",
        "ObjectsFailed",
        "ObjectsRejected",
        "LinesRead",
        "EventsSent",
        "ParseFailures",
        "EventsTruncated",
        "BytesRead",
        "Retries",
        "Reconnects",
        "EventsResent",
        "ShipSeconds",
        "LagSeconds",
        "Handoffs",
        "DeliveryFailures",
        "EventsDropped",
        "ObjectsSkipped",
    }
)
# Environment variables the template may set besides the shipper's own (config.ENV).
EXTRA_VARIABLES = frozenset(
    {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "DEPLOYMENT_ENVIRONMENT"}
)

KEY = (
    "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/"
    "123456789012_elasticloadbalancing_us-east-1_app.my-alb.50dc6c495c0c9188_"
    "20261128T2340Z_10.0.0.1_2a3b4c5d.log.gz"
)
# Application Load Balancer entries in the documented format (HTTP, HTTPS, HTTP/2).
ALB_LINES = [
    b"http 2026-11-28T23:39:00.186641Z app/my-alb/50dc6c495c0c9188 192.168.131.39:2817 "
    b'10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "GET http://www.example.com:80/ HTTP/1.1" '
    b'"curl/7.46.0" - - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/'
    b'my-targets/73e2d6bc24d8a067 "Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" 0 '
    b'2026-11-28T23:38:48.364000Z "forward" "-" "-" "10.0.0.1:80" "200" "-" "-" TID_1',
    b"https 2026-11-28T23:39:01.186641Z app/my-alb/50dc6c495c0c9188 192.168.131.40:2818 "
    b'10.0.0.1:443 0.000 0.002 0.000 200 200 40 1024 "GET https://www.example.com:443/a?b=c '
    b'HTTP/1.1" "Mozilla/5.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
    b"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-targets/"
    b'73e2d6bc24d8a067 "Root=1-58337262-36d228ad5d99923122bbe355" "www.example.com" '
    b'"arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012" 1 '
    b'2026-11-28T23:38:49.364000Z "forward" "-" "-" "10.0.0.1:443" "200" "-" "-" TID_2',
    b"h2 2026-11-28T23:39:02.186641Z app/my-alb/50dc6c495c0c9188 10.0.1.252:48160 "
    b'10.0.0.66:9000 0.000 0.002 0.000 404 404 5 257 "GET https://10.0.2.105:773/ HTTP/2.0" '
    b'"curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
    b"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-targets/"
    b'73e2d6bc24d8a067 "Root=1-58337327-72bd00b0343d75b906739c42" "-" "-" 1 '
    b'2026-11-28T23:38:50.364000Z "redirect" "https://example.com:80/" "-" "10.0.0.66:9000" '
    b'"404" "-" "-" TID_3',
]

# Runs under python3.13 -I -S: nothing but the standard library, the built package (first, as
# /var/task is) and the runtime's boto3 (last, as the runtime's own site-packages are).
INVOKE = textwrap.dedent(
    """
    import json, sys, time

    package, runtime, event_file = sys.argv[1:4]
    sys.path.insert(0, package)
    sys.path.append(runtime)


    class Context:
        function_name = "elb-log-shipper-test"
        function_version = "$LATEST"
        invoked_function_arn = (
            "arn:aws:lambda:us-east-1:123456789012:function:elb-log-shipper-test"
        )
        memory_limit_in_mb = 512
        aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
        log_group_name = "/aws/lambda/elb-log-shipper-test"
        log_stream_name = "2026/11/28/[$LATEST]0123456789abcdef"

        def __init__(self):
            self.deadline = time.monotonic() + 300

        def get_remaining_time_in_millis(self):
            return int((self.deadline - time.monotonic()) * 1000)


    import elb_log_shipper
    from elb_log_shipper.handler import lambda_handler

    assert elb_log_shipper.__file__.startswith(package), elb_log_shipper.__file__
    with open(event_file) as f:
        event = json.load(f)
    result = lambda_handler(event, Context())
    print("HANDLER-RESULT " + json.dumps(result, default=str))
    """
)


# ------------------------------------------------------------------------------------ helpers


def require_tool(path: Path | str | None, what: str) -> str:
    """The tool's path; a skip on a developer's machine, a failure in CI, when it is missing."""
    if path is not None and Path(path).exists():
        return str(path)
    message = f"{what} is missing: run `make tools` (see docs/deploy.md)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def sam_environ() -> dict[str, str]:
    """Environment for the SAM CLI: no telemetry, a region, python3.13 on PATH, no AWS account."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name != "PYENV_VERSION"
    }
    env.update(
        SAM_CLI_TELEMETRY="0",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        PYENV_VERSION=SAM_PYENV,
    )
    return env


def run(command: list[str], env: Mapping[str, str] | None = None) -> str:
    """Run a command from the project root; fail with its output when it fails."""
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output}"
    return output


def lambda_architecture() -> str:
    """The Lambda architecture whose native wheels run on this machine."""
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[
        platform.machine().lower()
    ]


@functools.cache
def template() -> dict[str, Any]:
    """template.yaml, read once: the tests only read it (the rules test reads it 600 times)."""
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return loaded


def metric_names(node: Any) -> Iterator[str]:
    """Every ElbLogShipper metric name that alarms and dashboard widgets refer to."""
    if isinstance(node, dict):
        if node.get("Namespace") == "ElbLogShipper" and "MetricName" in node:
            yield str(node["MetricName"])
        for value in node.values():
            yield from metric_names(value)
    elif isinstance(node, list):
        if node[:1] == ["ElbLogShipper"] and len(node) > 1:
            yield str(node[1])
        for value in node:
            yield from metric_names(value)


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def zipped_size(path: Path) -> int:
    """Size of the deployment zip, deflated as `sam deploy` uploads it."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(path))
    return len(buffer.getvalue())


def runtime_boto3(directory: Path) -> Path:
    """A directory with what the Lambda runtime adds to the path (boto3 and its dependencies,
    all pure Python), linked from this interpreter's site-packages."""
    directory.mkdir()
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{name} is not installed in the test environment"
        if spec.submodule_search_locations:
            source = Path(next(iter(spec.submodule_search_locations)))
        else:
            assert spec.origin is not None
            source = Path(spec.origin)
        (directory / source.name).symlink_to(source)
    return directory


# ------------------------------------------------------------------------------------ template


def test_cfn_lint_is_clean() -> None:
    run([str(CFN_LINT), str(TEMPLATE)])


def test_sam_validate_lint_needs_no_credentials() -> None:
    sam = require_tool(SAM, "the SAM CLI (.venv-sam)")
    output = run([sam, "validate", "--lint", "--template-file", str(TEMPLATE)], sam_environ())
    assert "is a valid SAM Template" in output


@pytest.mark.parametrize(
    ("topic", "valid"),
    [
        ("", True),
        ("arn:aws:sns:us-east-1:123456789012:elb-logs-created", True),
        ("arn:aws-cn:sns:cn-north-1:123456789012:elb_logs", True),
        ("elb-logs-created", False),
        ("arn:aws:sqs:us-east-1:123456789012:queue", False),
    ],
)
def test_an_sns_subscription_is_optional_and_only_its_topic_may_invoke(
    topic: str, valid: bool
) -> None:
    resources = template()["Resources"]
    for name in ("NotificationTopicArn", "AlarmTopicArn"):
        parameter = template()["Parameters"][name]
        assert (re.fullmatch(parameter["AllowedPattern"], topic) is not None) is valid
    subscription = resources["NotificationSubscription"]
    permission = resources["NotificationPermission"]
    assert subscription["Condition"] == permission["Condition"] == "HasNotificationTopic"
    assert subscription["Properties"]["Protocol"] == "lambda"
    assert permission["Properties"]["Principal"] == "sns.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == {"Ref": "NotificationTopicArn"}


def statements(policy_document: Mapping[str, Any]) -> dict[str, Any]:
    """A policy's statements by Sid, each ``Fn::If`` resolved to its statement."""
    found = {}
    for listed in policy_document["Statement"]:
        statement = listed["Fn::If"][1] if "Fn::If" in listed else listed
        found[statement["Sid"]] = statement
    return found


# Each customer managed KMS key the role may decrypt with: its parameter -> the condition that
# grants it and the one service through which it may be used.
KMS_KEY_GRANTS = {
    # An SSE-KMS bucket of NLB logs.
    "LogBucketKmsKeyArn": ("HasLogBucketKmsKey", "s3"),
    # The SecureString of ClientIp=hash.
    "ClientIpHashKeyKmsKeyArn": ("HasClientIpHashKmsKey", "ssm"),
}


@pytest.mark.parametrize("name", KMS_KEY_GRANTS)
@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("", True),
        ("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", True),
        ("arn:aws-cn:kms:cn-north-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab", True),
        ("arn:aws:kms:us-east-1:123456789012:alias/elb-logs", False),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", False),
    ],
)
def test_a_customer_managed_key_is_used_through_its_service_only(
    name: str, key: str, valid: bool
) -> None:
    loaded = template()
    parameter = loaded["Parameters"][name]
    assert (re.fullmatch(parameter["AllowedPattern"], key) is not None) is valid
    assert parameter["Default"] == ""
    policy = loaded["Resources"]["ShipperRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    granting, service = KMS_KEY_GRANTS[name]
    (granted,) = [s for s in policy["Statement"] if s.get("Fn::If", [None])[0] == granting]
    condition, decrypt, otherwise = granted["Fn::If"]
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == {"Ref": name}
    hashing = parameter_values(ClientIp="hash", ClientIpHashKeyParameter="/elb/key")
    assert deployed(decrypt["Condition"], hashing) == {
        "StringEquals": {"kms:ViaService": f"{service}.{REGION}.amazonaws.com"}
    }
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": name}, ""]}]} in (
        loaded["Conditions"][condition].get("Fn::And", [loaded["Conditions"][condition]])
    )


def test_the_hash_keys_kms_grant_comes_only_with_hashing() -> None:
    # A key ARN left set after a switch from hash to keep or truncate grants nothing.
    conditions = template()["Conditions"]
    assert {"Condition": "HasClientIpHashKey"} in conditions["HasClientIpHashKmsKey"]["Fn::And"]


def test_every_grant_of_the_role_is_in_the_deploy_guide() -> None:
    """docs/deploy.md, "IAM: an explicit role", is what a security review reads: each action and
    managed policy the role may get is named there (``sqs:ReceiveMessage``, or ``DeleteMessage``
    after it in a list)."""
    section = DEPLOY_DOC.read_text(encoding="utf-8").split("\n### IAM: an explicit role\n", 1)[1]
    named = set(re.findall(r"`([\w:*]+)", section.split("\n### ", 1)[0]))
    role = template()["Resources"]["ShipperRole"]["Properties"]
    granted: set[str] = set()
    for statement in statements(role["Policies"][0]["PolicyDocument"]).values():
        actions = statement["Action"]
        granted.update([actions] if isinstance(actions, str) else actions)
    missing = {action for action in granted if not {action, action.split(":")[1]} & named}
    assert missing == set()
    (managed,) = [arn["Fn::Sub"] for arn in role["ManagedPolicyArns"]["Fn::If"][1]]
    assert managed.rsplit("/", 1)[1] in named


def test_the_role_may_list_the_whole_bucket_to_tell_a_missing_object_from_a_denied_one() -> None:
    """S3 answers 404 NoSuchKey (rejected at once) rather than 403 AccessDenied (retried, then
    dead-lettered as a missing grant) for an expired or deleted object only to a caller that may
    list the bucket. An s3:prefix condition would not count: the GetObject that S3 authorises
    has no s3:prefix (docs/deploy.md, IAM). Reading stays limited to LogPrefix."""
    policy = template()["Resources"]["ShipperRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    by_sid = statements(policy)
    assert by_sid["TellMissingFromForbidden"] == {
        "Sid": "TellMissingFromForbidden",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${LogBucketName}"},
    }
    assert by_sid["ReadLogObjects"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${LogBucketName}/${LogPrefix}*"
    }


@pytest.mark.parametrize("client_ip", ["keep", "truncate", "hash"])
def test_the_role_may_read_the_hash_key_only_when_it_hashes(client_ip: str) -> None:
    # The key pseudonymises every address: a stack that keeps or truncates them does not read
    # it, so its role may not either (a parameter name left set after a switch from hash).
    loaded = template()
    policy = loaded["Resources"]["ShipperRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    (granted,) = [s for s in policy["Statement"] if "Fn::If" in s and "ssm:" in json.dumps(s)]
    condition, read, otherwise = granted["Fn::If"]
    assert read["Action"] == "ssm:GetParameter"
    assert otherwise == {"Ref": "AWS::NoValue"}
    values = parameter_values(ClientIp=client_ip, ClientIpHashKeyParameter="/elb/key")
    assert rule_holds(loaded["Conditions"][condition], values) is (client_ip == "hash")
    assert not rule_holds(
        loaded["Conditions"][condition], {**values, "ClientIpHashKeyParameter": ""}
    )


@pytest.mark.parametrize(
    ("prefix", "valid"),
    [
        ("AWSLogs/", True),
        ("prod alb/AWSLogs/", True),
        ("team-a/prod_alb.v2/AWSLogs/", True),
        ("AWSLogs/*/elasticloadbalancing/", False),
        ("*", False),
        ("AWSLogs/12345678901?/", False),
        ("${aws:userid}/AWSLogs/", False),
        ("/AWSLogs/", False),  # no key ELB writes starts with `/`: the function refuses it
    ],
)
def test_the_log_prefix_is_literal_in_the_read_grant(prefix: str, valid: bool) -> None:
    # The prefix ends up in the role's s3:GetObject resource, where IAM reads `*` and `?` as
    # wildcards and `${...}` as a policy variable: a grant wider than the keys the rule and the
    # function take literally (which then ship nothing).
    parameter = template()["Parameters"]["LogPrefix"]
    assert (re.fullmatch(parameter["AllowedPattern"], prefix) is not None) is valid


@pytest.mark.parametrize("length", [1023, 1024, 1025, 4000])
def test_the_template_takes_the_log_prefixes_the_function_takes(length: int) -> None:
    """A prefix longer than S3's longest key (1,024 bytes) matches no object, and the function
    refuses it at every cold start: the template took any length, so it deployed."""
    prefix = "p" * (length - len("AWSLogs/")) + "AWSLogs/"
    parameter = template()["Parameters"]["LogPrefix"]
    try:
        Settings.from_env({ENV.LOGSTASH_HOST: "logstash.internal", ENV.LOG_PREFIX: prefix})
        accepted = True
    except ConfigurationError:
        accepted = False
    assert (override_value_problems("LogPrefix", prefix, parameter) == []) is accepted


def test_a_created_bucket_takes_nlb_access_logs() -> None:
    bucket_policy = template()["Resources"]["LogBucketPolicy"]["Properties"]["PolicyDocument"]
    by_sid = statements(bucket_policy)
    write, acl_check = by_sid["NlbLogDeliveryWrite"], by_sid["NlbLogDeliveryAclCheck"]
    for statement in (write, acl_check):
        assert statement["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {
            "Ref": "AWS::AccountId"
        }
        assert statement["Condition"]["ArnLike"] == {
            "aws:SourceArn": {
                "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:*"
            }
        }
    assert write["Action"] == "s3:PutObject"
    assert write["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${LogBucketName}/*AWSLogs/${AWS::AccountId}/*"
    }
    assert write["Condition"]["StringEquals"]["s3:x-amz-acl"] == "bucket-owner-full-control"
    assert acl_check["Action"] == "s3:GetBucketAcl"
    assert acl_check["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${LogBucketName}"}


_NO_VALUE = object()


def resolved(node: Any, values: Mapping[str, str]) -> Any:
    """``node`` of the template as deployed with the parameter ``values``: each ``Fn::If`` taken
    by its condition (evaluated as CloudFormation does), each parameter ``Ref`` replaced by its
    value, ``AWS::NoValue`` removed."""
    if isinstance(node, list):
        return [item for item in (resolved(i, values) for i in node) if item is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::If"}:
        condition, then, otherwise = node["Fn::If"]
        holds = rule_holds(template()["Conditions"][condition], values)
        return resolved(then if holds else otherwise, values)
    if set(node) == {"Ref"}:
        if node["Ref"] == "AWS::NoValue":
            return _NO_VALUE
        return values.get(node["Ref"], node)
    pairs = ((key, resolved(value, values)) for key, value in node.items())
    return {key: value for key, value in pairs if value is not _NO_VALUE}


# What the pseudo parameters are in the account and region of these tests.
PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
}


def deployed(node: Any, values: Mapping[str, str]) -> Any:
    """``node`` as CloudFormation deploys it with the parameter ``values``: ``resolved``, then
    each ``Fn::Sub``, ``Fn::Join``, ``Fn::Split`` and ``Fn::Select`` evaluated, with the pseudo
    parameters of ``PSEUDO_PARAMETERS``."""
    return _evaluated(resolved(node, values), {**PSEUDO_PARAMETERS, **values})


def _evaluated(node: Any, names: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_evaluated(item, names) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1 and set(node) <= {"Fn::Sub", "Fn::Join", "Fn::Split", "Fn::Select"}:
        ((function, arguments),) = node.items()
        if function == "Fn::Sub":
            text, variables = (arguments, {}) if isinstance(arguments, str) else arguments
            known = {**names, **_evaluated(variables, names)}
            return re.sub(r"\$\{([\w:]+)\}", lambda m: str(known[m[1]]), text)
        first, second = _evaluated(arguments, names)
        if function == "Fn::Join":
            return str(first).join(second)
        if function == "Fn::Split":
            return str(second).split(str(first))
        return second[int(first)]
    if set(node) == {"Ref"}:
        return names.get(node["Ref"], node)
    return {key: _evaluated(value, names) for key, value in node.items()}


def hash_key_grants(**given: str) -> dict[str, Any]:
    """The statements of the role that read the HMAC key, by Sid, as deployed with ``given``."""
    policy = template()["Resources"]["ShipperRole"]["Properties"]["Policies"][0]
    document = deployed(policy["PolicyDocument"], parameter_values(**given))
    return {s["Sid"]: s for s in document["Statement"] if "ClientIpHashKey" in s["Sid"]}


def iam_matches(pattern: str, arn: str) -> bool:
    """Whether an IAM resource ``pattern`` (``*`` any run, ``?`` one character) matches ``arn``."""
    wildcards = {"*": ".*", "?": "."}
    regex = "".join(wildcards.get(c, re.escape(c)) for c in pattern)
    return re.fullmatch(regex, arn) is not None


CMK = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SSM_ARN = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"


def decrypt_through(service: str) -> dict[str, Any]:
    return {
        "Sid": "DecryptClientIpHashKey",
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": CMK,
        "Condition": {"StringEquals": {"kms:ViaService": f"{service}.{REGION}.amazonaws.com"}},
    }


@pytest.mark.parametrize(
    "parameter",
    [
        "/elb-log-shipper/client-ip-hash-key",
        # The reserved path inside a name of one's own is an ordinary parameter.
        "/team/aws/reference/secretsmanager/client-ip-hash-key",
    ],
)
def test_an_ssm_parameter_key_is_read_through_ssm_only(parameter: str) -> None:
    assert hash_key_grants(
        ClientIp="hash", ClientIpHashKeyParameter=parameter, ClientIpHashKeyKmsKeyArn=CMK
    ) == {
        "ReadClientIpHashKey": {
            "Sid": "ReadClientIpHashKey",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": SSM_ARN + parameter,
        },
        "DecryptClientIpHashKey": decrypt_through("ssm"),
    }


@pytest.mark.parametrize("name", ["elb-log-shipper-key", "elb-log-shipper/client-ip-hash-key"])
@pytest.mark.parametrize("kms_key", ["", CMK])
def test_a_secrets_manager_key_is_granted_on_that_one_secret(name: str, kms_key: str) -> None:
    """SSM reads a secret named by /aws/reference/secretsmanager/NAME as the caller: without
    secretsmanager:GetSecretValue on it, every invocation of a stack deployed so failed (AWS,
    "Referencing AWS Secrets Manager secrets from Parameter Store parameters")."""
    parameter = f"/aws/reference/secretsmanager/{name}"
    grants = hash_key_grants(
        ClientIp="hash", ClientIpHashKeyParameter=parameter, ClientIpHashKeyKmsKeyArn=kms_key
    )
    assert grants.pop("ReadClientIpHashKey")["Resource"] == SSM_ARN + parameter
    secret = grants.pop("ReadClientIpHashKeySecret")
    assert secret == {
        "Sid": "ReadClientIpHashKeySecret",
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": f"{SECRET_ARN}{name}-??????",
    }
    # Secrets Manager appends a hyphen and six characters to the name: that secret, no other.
    assert iam_matches(secret["Resource"], f"{SECRET_ARN}{name}-AbC123")
    for other in (f"{name}x-AbC123", f"{name}-prod-AbC123", f"{name}-AbC1234", f"x{name}-AbC123"):
        assert not iam_matches(secret["Resource"], SECRET_ARN + other), other
    decrypt = {"DecryptClientIpHashKey": decrypt_through("secretsmanager")}
    assert grants == (decrypt if kms_key else {})


@pytest.mark.parametrize(
    "parameter", ["/elb-log-shipper/client-ip-hash-key", "/aws/reference/secretsmanager/key"]
)
def test_a_stack_that_does_not_hash_may_read_no_key(parameter: str) -> None:
    assert (
        hash_key_grants(
            ClientIp="truncate", ClientIpHashKeyParameter=parameter, ClientIpHashKeyKmsKeyArn=CMK
        )
        == {}
    )
    assert hash_key_grants(ClientIp="hash", ClientIpHashKeyParameter="") == {}


@pytest.mark.parametrize(
    ("client_ip", "parameter", "granted"),
    [
        ("hash", "/elb/key", {("ssm:GetParameter", SSM_ARN + "/elb/key")}),
        (
            "hash",
            "/aws/reference/secretsmanager/key",
            {
                ("ssm:GetParameter", SSM_ARN + "/aws/reference/secretsmanager/key"),
                ("secretsmanager:GetSecretValue", SECRET_ARN + "key-??????"),
            },
        ),
        ("truncate", "/elb/key", set()),
    ],
)
def test_no_statement_of_the_role_reads_another_parameter_or_secret(
    client_ip: str, parameter: str, granted: set[tuple[str, str]]
) -> None:
    """Issue 14: the role may read that one parameter only. The tests above pick the key's
    statements by Sid; this reads every statement and every policy of the role."""
    values = parameter_values(ClientIp=client_ip, ClientIpHashKeyParameter=parameter)
    role = deployed(template()["Resources"]["ShipperRole"]["Properties"], values)
    assert [policy["PolicyName"] for policy in role["Policies"]] == ["ship-elb-logs"]
    assert "ManagedPolicyArns" not in role  # AWSLambdaENIManagementAccess, in a VPC only
    reads = set()
    for statement in role["Policies"][0]["PolicyDocument"]["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = statement["Resource"]
        for action in actions:
            if action == "*" or action.split(":")[0] in ("ssm", "secretsmanager"):
                for resource in resources if isinstance(resources, list) else [resources]:
                    reads.add((action, resource))
    assert reads == granted


@pytest.mark.parametrize("days", ["90", "15", "3653"])
def test_a_created_bucket_deletes_its_logs_after_the_retention(days: str) -> None:
    """The logs keep every client address and query in full: the bucket the stack creates
    expires them (data minimisation, and the user's storage bill) unless told to keep them."""
    values = parameter_values(CreateLogBucket="true", LogBucketRetentionDays=days)
    bucket = resolved(template()["Resources"]["LogBucket"], values)
    assert bucket["Condition"] == "ShouldCreateLogBucket"
    (rule,) = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == days
    # The whole bucket, which the stack creates for the logs; noncurrent versions too, should
    # versioning be turned on (an expired object would otherwise stay as one).
    assert not {"Prefix", "Filter"} & set(rule)
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}


def test_a_created_bucket_keeps_its_logs_with_a_retention_of_0() -> None:
    values = parameter_values(CreateLogBucket="true", LogBucketRetentionDays="0")
    bucket = resolved(template()["Resources"]["LogBucket"], values)
    assert "LifecycleConfiguration" not in bucket["Properties"]
    assert bucket["Properties"]["BucketName"] == values["LogBucketName"]


def test_the_retention_deletes_nothing_unless_set() -> None:
    """A lifecycle rule expires the objects already in the bucket too, so a default would delete
    the logs of every stack updated to this template: the default keeps them, and samconfig's
    `default`, the one environment that creates its bucket, says so where a user will change it.
    The value suggested outlives the dead letters (a replay must still find its object)."""
    loaded = template()
    parameter = loaded["Parameters"]["LogBucketRetentionDays"]
    assert parameter["Type"] == "Number"
    assert parameter["MinValue"] == 0
    assert parameter["Default"] == 0
    bucket = resolved(loaded["Resources"]["LogBucket"], parameter_values(CreateLogBucket="true"))
    assert "LifecycleConfiguration" not in bucket["Properties"]
    dead_letters = loaded["Resources"]["DeadLetterQueue"]["Properties"]
    assert "90 suits most" in parameter["Description"]
    assert dead_letters["MessageRetentionPeriod"] < 90 * 86400
    config = tomllib.loads(SAMCONFIG.read_text(encoding="utf-8"))
    for name, environment in config.items():
        if isinstance(environment, dict):  # not `version`
            given = samconfig_overrides(environment)
            creates = given.get("CreateLogBucket") == "true"
            assert ("LogBucketRetentionDays" in given) is creates, name
    assert samconfig_overrides(config["default"])["LogBucketRetentionDays"] == "0"


def test_function_environment_is_what_settings_read() -> None:
    loaded = template()
    function = loaded["Resources"][FUNCTION]["Properties"]
    variables = set(function["Environment"]["Variables"])
    known = {value for name, value in vars(ENV).items() if name.isupper()}
    assert variables - known <= EXTRA_VARIABLES, variables - known - EXTRA_VARIABLES
    assert {ENV.LOGSTASH_HOST, ENV.CONTINUATION_QUEUE_URL} <= variables
    # What reaching a Logstash with TLS takes, mutual TLS included (logstash/pipeline.conf).
    assert {
        ENV.LOGSTASH_TLS,
        ENV.LOGSTASH_CA_FILE,
        ENV.LOGSTASH_CLIENT_CERT_FILE,
        ENV.LOGSTASH_CLIENT_KEY_FILE,
    } <= variables
    assert function["Handler"] == "elb_log_shipper.handler.lambda_handler"
    assert function["CodeUri"] == "src/"
    assert loaded["Globals"]["Function"]["Runtime"] == "python3.13"


def test_alarms_and_dashboard_use_only_emitted_metrics() -> None:
    used = set(metric_names(template()["Resources"]))
    assert used, "no ElbLogShipper metric found in alarms or dashboard"
    assert used <= SHIPPER_METRICS, used - SHIPPER_METRICS


def test_every_alarm_is_on_the_dashboard() -> None:
    # The dashboard's alarm widget is where an operator sees at a glance what is wrong.
    resources = template()["Resources"]
    alarms = {name for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::ToJsonString"]
    (widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    shown = {ref["Fn::GetAtt"][0] for ref in widget["properties"]["alarms"]}
    assert shown == alarms, alarms - shown


def test_every_template_parameter_is_documented() -> None:
    """The deploy guide's table is where users look up a parameter: none missing, none stale."""
    declared = set(template()["Parameters"])
    documented = table_names(DEPLOY_DOC, "Parameters")
    assert declared - documented == set(), "not in docs/deploy.md"
    assert documented - declared == set(), "in docs/deploy.md but not in template.yaml"


def test_every_parameter_says_what_it_is() -> None:
    """The console and `sam deploy --guided` show a parameter's Description beside its field:
    LogstashPort and LogRetentionDays showed nothing."""
    parameters = template()["Parameters"]
    assert [name for name, spec in parameters.items() if not spec.get("Description")] == []


def test_the_log_retention_takes_every_period_cloudwatch_logs_takes() -> None:
    """LogRetentionDays lacked 2192, 2557, 2922 and 3288 days (6 to 9 years), which CloudWatch
    Logs accepts: a retention policy that asks for one could not be deployed. The values are
    the ones the API's own model lists (botocore, PutRetentionPolicy)."""
    model = botocore.session.get_session().get_service_model("logs")
    shape = model.operation_model("PutRetentionPolicy").input_shape
    assert shape is not None
    member = shape.members["retentionInDays"]
    listed = member.documentation.split("Possible values are:", 1)[1].split(".", 1)[0]
    accepted = [int(days) for days in re.findall(r"\d+", listed)]
    assert len(accepted) > 10
    assert template()["Parameters"]["LogRetentionDays"]["AllowedValues"] == accepted


def test_the_parameters_table_gives_each_default_the_template_declares() -> None:
    """A default in docs/deploy.md is what a deploy that leaves the parameter out gets."""
    section = DEPLOY_DOC.read_text(encoding="utf-8").split("\n## Parameters\n", 1)[1]
    rows = [row.split(" | ") for row in section.split("\n## ", 1)[0].splitlines()]
    # The table writes a default as `value`, an empty one as `empty`, none as `(required)`.
    documented = {
        name: row[1].strip().replace("empty", "``")
        for row in rows
        if row[0].startswith("| `")
        for name in re.findall(r"`(\w+)`", row[0])
    }
    declared = {
        name: f"`{spec['Default']}`" if "Default" in spec else "(required)"
        for name, spec in template()["Parameters"].items()
    }
    assert documented == declared


# Variables whose template default differs from the function's on purpose: the function alone
# (the command, a test) ships every key and names no deployment.
DEFAULTS_SET_BY_THE_STACK = frozenset({ENV.LOG_PREFIX, ENV.DEPLOYMENT_ENVIRONMENT})


def parameters_of_variables() -> dict[str, str]:
    """The function's environment variables that are a parameter as it is, by parameter."""
    variables = template()["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    parameters = template()["Parameters"]
    return {
        value["Ref"]: name
        for name, value in variables.items()
        if isinstance(value, dict) and value.get("Ref") in parameters
    }


def test_the_template_defaults_are_the_functions_defaults() -> None:
    """A parameter left out deploys what the function does with its variable unset: the
    template's defaults and config.py's cannot drift apart unnoticed."""
    base = {ENV.LOGSTASH_HOST: "logstash.internal"}
    unset = Settings.from_env(base)
    checked = []
    for parameter, variable in parameters_of_variables().items():
        spec = template()["Parameters"][parameter]
        if "Default" not in spec or variable in DEFAULTS_SET_BY_THE_STACK:
            continue
        given = Settings.from_env({**base, variable: str(spec["Default"])})
        assert given == unset, (parameter, spec["Default"])
        checked.append(parameter)
    assert {"LogstashPort", "LogstashPoolSize", "DeadlineMarginSeconds", "MaxEventBytes"} <= set(
        checked
    )


def test_the_function_takes_every_number_the_template_takes() -> None:
    """A number parameter's bounds are within what the function takes for its variable (at
    each bound, and one past it unless the template refuses that too), and so is a fraction,
    which a Number takes: a whole number the function reads is a String with a pattern."""
    base = {ENV.LOGSTASH_HOST: "logstash.internal"}
    problems = []
    for parameter, variable in parameters_of_variables().items():
        spec = template()["Parameters"][parameter]
        if spec["Type"] != "Number":
            continue
        low, high = spec["MinValue"], spec["MaxValue"]
        for value in (low - 1, low, low + 0.5, high, high + 1):
            if override_value_problems(parameter, str(value), spec):
                continue
            try:
                Settings.from_env({**base, variable: str(value)})
            except ConfigurationError as error:
                problems.append(f"{parameter}={value}: {error}")
    assert problems == []


# The AWS CLI's names for the services whose botocore name differs.
CLI_SERVICES = {"s3api": "s3"}
# Options every AWS CLI command takes besides its operation's parameters.
CLI_GLOBAL_OPTIONS = frozenset(
    {"query", "output", "region", "profile", "cli-binary-format", "no-cli-pager", "debug"}
)
# Commands of the AWS CLI itself rather than of a service API (checked for no more than this).
CLI_OWN_COMMANDS = frozenset({("sso", "login"), ("configure", "list")})
FENCED_BLOCK = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)
AWS_COMMAND = re.compile(r"(?<![\w-])aws\s+([a-z0-9]+)\s+([a-z][a-z0-9-]*)([^;|&]*)")


def aws_commands(document: Path) -> Iterator[tuple[str, str, set[str]]]:
    """Each ``aws SERVICE COMMAND --option ...`` that ``document`` shows, in a fenced block (a
    line, with its ``\\`` continuations) or inline code, with the options it gives."""
    text = document.read_text(encoding="utf-8")
    codes: list[str] = []
    for block in FENCED_BLOCK.findall(text):
        lines = block.replace("\\\n", " ").splitlines()
        codes += (re.sub(r"(^|\s)#.*", "", line) for line in lines)
    codes += re.findall(r"`([^`]+)`", FENCED_BLOCK.sub("", text))
    for code in codes:
        # Placeholders such as <green's DLQ arn> are one value, whatever they contain.
        plain = re.sub(r"<[^<>]*>", "VALUE", code)
        for found in re.finditer(AWS_COMMAND, plain):
            service, command, rest = found.groups()
            yield service, command, set(re.findall(r"(?<!\S)--([a-z0-9-]+)", rest))


@pytest.mark.parametrize("document", [DEPLOY_DOC, ROOT / "README.md"], ids=lambda p: p.name)
def test_the_aws_commands_the_docs_show_take_the_options_they_give(document: Path) -> None:
    """A command copied from the guide that the AWS CLI refuses stops a first deploy: the one
    that turns on access logs named no load balancer (`--load-balancer-arn` is required).
    Each command is checked against the API model botocore (the CLI's own) holds: the operation
    exists, each option is one of its parameters, and a command given with options gives every
    required one (one named without options, in prose, is only a name)."""
    session = botocore.session.get_session()
    problems, checked = [], 0
    for service, command, options in aws_commands(document):
        if (service, command) in CLI_OWN_COMMANDS:
            continue
        model = session.get_service_model(CLI_SERVICES.get(service, service))
        operations = {xform_name(name, "-"): name for name in model.operation_names}
        if command not in operations:
            problems.append(f"aws {service} {command}: no such command")
            continue
        shape = model.operation_model(operations[command]).input_shape
        parameters = {xform_name(name, "-") for name in (shape.members if shape else {})}
        required = {xform_name(name, "-") for name in (shape.required_members if shape else [])}
        problems += [
            f"aws {service} {command}: --{option} is no option of it"
            for option in sorted(options - parameters - CLI_GLOBAL_OPTIONS)
        ]
        if options:
            problems += [
                f"aws {service} {command}: --{option} is required"
                for option in sorted(required - options)
            ]
        checked += 1
    assert checked > 0
    assert problems == []


def test_the_queues_the_docs_name_are_outputs_of_the_stack() -> None:
    """The guide's replay and blue/green steps take queue ARNs (`start-message-move-task`), but
    the stack gave only the queues' URLs: whoever drained green had to work out two ARNs by hand
    in the middle of a switch-over. Each queue a command takes is now a named output."""
    outputs = set(template()["Outputs"])
    assert {"ContinuationQueueArn", "DeadLetterQueueArn"} <= outputs
    problems = []
    for document in (DEPLOY_DOC, ROOT / "README.md"):
        text = document.read_text(encoding="utf-8")
        for option, value in re.findall(
            r"--(queue-url|source-arn|destination-arn)\s+<([^<>]*)>", text
        ):
            if not set(re.findall(r"\w+", value)) & outputs:
                problems.append(f"{document.name}: --{option} <{value}> names no output")
    assert problems == []


@pytest.mark.parametrize(
    "host",
    [
        "logstash.internal",
        "10.0.0.5",
        "fd00::5",
        "::1",
        "fe80::1%eth0",
        "logstash.internal:5044",
        "10.0.0.5:5044",
        "tcp://logstash.internal:5044",
        "[fd00::5]",
        "logstash.internal/",
        "1:2:3:4:5:6:7:8",
        "::ffff:10.0.0.5",
        "64:ff9b::10.0.0.5",
        "fd00::5:",
        "1::2::3",
        ":::",
        "12345::1",
        "1:2:3:4:5:6:7:8:9",
        "::ffff:10.0.0.256",
    ],
)
def test_the_template_takes_the_logstash_hosts_the_function_takes(host: str) -> None:
    """A host:port, a URL or a mistyped IPv6 address (the pattern took any run of hex digits,
    dots and two colons or more) deployed, and every invocation then failed: it is refused at
    once."""
    assert_template_takes_what_the_function_takes("LogstashHost", ENV.LOGSTASH_HOST, host)


def assert_template_takes_what_the_function_takes(parameter: str, name: str, value: str) -> None:
    """The template's ``parameter`` takes ``value`` exactly when the function's settings take
    it as its environment variable ``name`` (beside a Logstash host, unless it is the host)."""
    pattern = template()["Parameters"][parameter]["AllowedPattern"]
    try:
        Settings.from_env({ENV.LOGSTASH_HOST: "logstash.internal", name: value})
        accepted = True
    except ConfigurationError:
        accepted = False
    assert (re.fullmatch(pattern, value) is not None) is accepted


@pytest.mark.parametrize(
    ("name", "value"),
    [
        *(
            (ENV.DROP_STATUS, value)
            for value in (
                "",
                "2xx,304",
                " 2XX , 304 ",
                "2xx,,304,",
                "5xx",
                "30x",
                "200 304",
                "2xx;304",
                "600",
                "1",
                "3\u0660\u0664",  # Arabic-Indic digits
                "2xx,30",
            )
        ),
        *(
            (ENV.DROP_METHODS, value)
            for value in (
                "",
                "OPTIONS,HEAD",
                " options , head ",
                "GET;HEAD",
                "GE T",
                "GET,",
                "P0ST",
            )
        ),
        *(
            (ENV.DROP_PATH_PREFIXES, value)
            for value in ("", "/static/", " /a , /b ", "/a,,", "static/", "/a, b", "/a/,x")
        ),
    ],
)
def test_the_template_takes_the_drop_filters_the_function_takes(name: str, value: str) -> None:
    """A drop filter the function refuses deployed, and every object then failed at every cold
    start into the dead-letter queue: the parameter's pattern refuses it at deploy time."""
    parameter = {
        ENV.DROP_STATUS: "DropStatus",
        ENV.DROP_METHODS: "DropMethods",
        ENV.DROP_PATH_PREFIXES: "DropPathPrefixes",
    }[name]
    assert_template_takes_what_the_function_takes(parameter, name, value)


@pytest.mark.parametrize(
    ("path", "valid"),
    [
        ("", True),
        ("/var/task/certs/ca.pem", True),
        ("/opt/certs/client.key", True),
        ("certs/ca.pem", False),
        ("/etc/ssl/ca.pem", False),
        ("/var/task/", False),
    ],
)
def test_certificate_files_are_paths_in_the_package_or_a_layer(path: str, valid: bool) -> None:
    """Only the package (/var/task) and layers (/opt) are there when the function starts: any
    other path is a file the function cannot find at every cold start."""
    parameters = template()["Parameters"]
    for name in ("LogstashCaFile", "LogstashClientCertFile", "LogstashClientKeyFile"):
        assert (re.fullmatch(parameters[name]["AllowedPattern"], path) is not None) is valid


def override_value_problems(name: str, value: str, parameter: Mapping[str, Any]) -> list[str]:
    """What CloudFormation would refuse about ``name=value`` (pattern, allowed values, length,
    number bounds)."""
    problems = []
    if "AllowedPattern" in parameter and not re.fullmatch(parameter["AllowedPattern"], value):
        problems.append(f"{name}={value}: does not match {parameter['AllowedPattern']}")
    if "AllowedValues" in parameter and value not in map(str, parameter["AllowedValues"]):
        problems.append(f"{name}={value}: not one of {parameter['AllowedValues']}")
    if not parameter.get("MinLength", 0) <= len(value) <= parameter.get("MaxLength", len(value)):
        problems.append(f"{name}={value}: its length is out of range")
    if parameter.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return [*problems, f"{name}={value}: not a number"]
        if not parameter.get("MinValue", number) <= number <= parameter.get("MaxValue", number):
            problems.append(f"{name}={value}: out of range")
    return problems


# The parameters that reach only the function's environment, as whole numbers: by parameter,
# its variable, the setting that reads it, and the range both the template and the function take.
WHOLE_NUMBER_PARAMETERS = {
    "LogstashPort": (ENV.LOGSTASH_PORT, "port", 1, 65535),
    "LogstashPoolSize": (ENV.LOGSTASH_POOL_SIZE, "pool_size", 1, 64),
    "MaxEventBytes": (ENV.MAX_EVENT_BYTES, "max_event_bytes", 4096, 64 * 1024 * 1024),
}
# Python's int() reads these as digits too; CloudFormation's patterns do not.
ARABIC_INDIC_DIGITS = str.maketrans("0123456789", "".join(map(chr, range(0x660, 0x66A))))


@pytest.mark.parametrize("parameter", sorted(WHOLE_NUMBER_PARAMETERS))
def test_a_whole_number_parameters_pattern_is_its_range(parameter: str) -> None:
    """The pattern, written by hand, takes each number of the range and none outside it: every
    number up to twice the top for the small ranges, and for the large one, every number near
    its ends and each power of ten (where a digit is added) with its neighbours."""
    _, _, low, high = WHOLE_NUMBER_PARAMETERS[parameter]
    pattern = re.compile(template()["Parameters"][parameter]["AllowedPattern"])
    numbers = set(range(2 * high + 1)) if high <= 65535 else set()
    numbers |= {*range(low - 1000, low + 100_000), *range(high - 100_000, high + 1000)}
    numbers |= {
        power + step for exponent in range(10) for power in [10**exponent] for step in (-1, 0, 1)
    }
    wrong = [
        n
        for n in sorted(numbers)
        if (pattern.fullmatch(str(n)) is not None) is not (low <= n <= high)
    ]
    assert wrong == []


def whole_number_spellings(low: int, high: int) -> list[tuple[str, bool]]:
    """Spellings of numbers around the range ``low`` to ``high``, each with whether the template
    takes it: digits in range, leading zeros included (the function reads them as the number),
    and nothing else."""
    return [
        (str(low), True),
        (str(high), True),
        (str((low + high) // 2), True),
        (f"0{low}", True),
        (f"00{high}", True),
        (str(low - 1), False),
        (str(high + 1), False),
        (f"{low}.5", False),
        (f"{high}.0", False),
        (f"{low}.", False),
        (f"{low * 10}e-1", False),
        ("1e3", False),
        (f"{low}E0", False),
        (f"-{low}", False),
        (f"+{low}", False),
        (f" {low}", False),
        (f"{high} ", False),
        (f"{low}_0", False),
        ("", False),
        (hex(low), False),
        (str(low).translate(ARABIC_INDIC_DIGITS), False),
    ]


@pytest.mark.parametrize(
    ("parameter", "value", "taken"),
    [
        (parameter, value, taken)
        for parameter, (_, _, low, high) in WHOLE_NUMBER_PARAMETERS.items()
        for value, taken in whole_number_spellings(low, high)
    ],
)
def test_a_whole_number_parameter_takes_digits_in_its_range_only(
    parameter: str, value: str, taken: bool
) -> None:
    """LogstashPort, LogstashPoolSize and MaxEventBytes were Numbers, which CloudFormation takes
    as 5044.5, 5e3 or 1E3: they deployed, and the function, which reads a whole number, refused
    every invocation into the dead-letter queue until the next deploy. The template refuses
    them now, and what it takes the function reads as the same number."""
    variable, setting, _, _ = WHOLE_NUMBER_PARAMETERS[parameter]
    spec = template()["Parameters"][parameter]
    assert (override_value_problems(parameter, value, spec) == []) is taken
    if taken:
        settings = Settings.from_env({ENV.LOGSTASH_HOST: "logstash.internal", variable: value})
        assert getattr(settings, setting) == int(value)


def test_samconfig_overrides_are_template_parameters_with_allowed_values() -> None:
    """A misspelt or out-of-range override in samconfig.toml would fail the user's first deploy,
    or not be applied."""
    parameters = template()["Parameters"]
    config = tomllib.loads(SAMCONFIG.read_text(encoding="utf-8"))
    assert set(config) >= {"default", "blue", "green"}
    problems = []
    for environment, commands in config.items():
        if not isinstance(commands, dict):
            continue  # `version`
        overrides = commands.get("global", {}).get("parameters", {}).get("parameter_overrides")
        assert overrides, f"{environment}: no parameter_overrides under global"
        for override in overrides:
            name, _, value = override.partition("=")
            if name not in parameters:
                problems.append(f"{environment}: {name} is not a template parameter")
                continue
            problems.extend(
                f"{environment}: {problem}"
                for problem in override_value_problems(name, value, parameters[name])
            )
        required = {name for name, spec in parameters.items() if "Default" not in spec}
        given = {override.partition("=")[0] for override in overrides}
        problems.extend(f"{environment}: {name} (no default) not set" for name in required - given)
    assert problems == []


def samconfig_overrides(environment: Mapping[str, Any]) -> dict[str, str]:
    """An environment's parameter_overrides in samconfig.toml, by name."""
    listed = environment.get("global", {}).get("parameters", {}).get("parameter_overrides", [])
    return dict(override.partition("=")[::2] for override in listed)


def test_hand_off_chains_are_not_cut_by_lambdas_recursive_loop_detection() -> None:
    """The function writes continuations to the queue that invokes it: Lambda's loop detection
    (Terminate by default) stopped every chain after about 16 invocations, dead-lettering the
    rest of the object without a word, long before MAX_HOPS (100); the hop limit is the guard."""
    properties = template()["Resources"][FUNCTION]["Properties"]
    assert properties["RecursiveLoop"] == "Allow"
    assert Settings().max_hops > 16


def test_the_continuation_queue_leaves_copies_to_new_objects_and_survives_throttling() -> None:
    """The queue's event source mapping ignores reserved concurrency: capped below it, it leaves
    copies to EventBridge and SNS events; 5 receives (AWS's least) outlast throttled invokes."""
    loaded = template()
    events = loaded["Resources"][FUNCTION]["Properties"]["Events"]
    (queue,) = [event for event in events.values() if event["Type"] == "SQS"]
    assert queue["Properties"]["ScalingConfig"] == {
        "MaximumConcurrency": {"Ref": "ContinuationConcurrency"}
    }
    redrive = loaded["Resources"]["ContinuationQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] >= 5
    parameters = loaded["Parameters"]
    assert parameters["ContinuationConcurrency"]["MinValue"] == 2  # SQS's minimum
    plain = re.compile(parameters["ReservedConcurrency"]["AllowedPattern"])
    assert [n for n in range(1000) if plain.fullmatch(str(n))] == list(range(3, 1000))
    # CloudFormation cannot compare two parameters: each configuration is checked here.
    config = tomllib.loads(SAMCONFIG.read_text(encoding="utf-8"))
    for name, environment in config.items():
        if not isinstance(environment, dict):
            continue  # `version`
        given = samconfig_overrides(environment)
        reserved, continuation = (
            int(given.get(parameter, parameters[parameter]["Default"]))
            for parameter in ("ReservedConcurrency", "ContinuationConcurrency")
        )
        assert continuation < reserved, name


def rule_holds(node: Any, values: Mapping[str, str | list[str]]) -> Any:
    """Evaluate a rule function of the template's Rules (``Fn::Equals``, ``Fn::Not``,
    ``Fn::And``, ``Fn::Or``, ``Fn::Contains``, ``Fn::EachMemberEquals``, ``Ref``) or of its
    Conditions (also ``Condition``, ``Fn::Select``, ``Fn::Split``, ``Fn::Join``) for the
    parameter ``values``, as CloudFormation does."""
    if not isinstance(node, dict):
        return node
    ((function, arguments),) = node.items()
    if function == "Ref":
        return values[arguments]
    if function == "Condition":
        return rule_holds(template()["Conditions"][arguments], values)
    results = [rule_holds(argument, values) for argument in arguments]
    if function == "Fn::Split":
        return str(results[1]).split(results[0])
    if function == "Fn::Select":
        return results[1][int(results[0])]
    if function == "Fn::Join":
        return str(results[0]).join(results[1])
    if function == "Fn::EachMemberEquals":
        return all(member == results[1] for member in results[0])
    if function == "Fn::Contains":
        return results[1] in results[0]
    if function == "Fn::Equals":
        return results[0] == results[1]
    if function == "Fn::Not":
        return not results[0]
    if function == "Fn::And":
        return all(results)
    if function == "Fn::Or":
        return any(results)
    raise AssertionError(f"rule function {function} is not evaluated here")


def refused_by_rules(values: Mapping[str, str]) -> list[str]:
    """What the template's Rules say of a deploy with the parameter ``values``."""
    loaded = template()
    typed: dict[str, str | list[str]] = {
        name: value.split(",")
        if loaded["Parameters"][name]["Type"] == "CommaDelimitedList"
        else value
        for name, value in values.items()
    }
    refused = []
    for rule in loaded.get("Rules", {}).values():
        if rule_holds(rule.get("RuleCondition", True), typed):
            refused += [
                assertion["AssertDescription"]
                for assertion in rule["Assertions"]
                if not rule_holds(assertion["Assert"], typed)
            ]
    return refused


def parameter_values(**given: str) -> dict[str, str]:
    """Every parameter's value: its default, or what ``given`` says."""
    parameters = template()["Parameters"]
    values = {name: str(spec.get("Default", "")) for name, spec in parameters.items()}
    values.update({"LogstashHost": "logstash.internal", "LogBucketName": "elb-logs"}, **given)
    return values


def deployed_environment(values: Mapping[str, str]) -> dict[str, str]:
    """The function's environment for the parameter ``values``."""
    queues = {
        name: f"https://sqs.example/{name}" for name in ("ContinuationQueue", "DeadLetterQueue")
    }
    return function_environ({**values, **queues})


def test_every_queue_and_the_bucket_refuse_plain_http() -> None:
    """Continuations and dead letters carry bucket names and keys, as the bucket holds the logs:
    a policy on each refuses any request that is not over TLS (the queues had none)."""
    resources = template()["Resources"]
    guarded: set[str] = set()
    for resource in resources.values():
        if resource["Type"] not in ("AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy"):
            continue
        properties = resource["Properties"]
        for statement in properties["PolicyDocument"]["Statement"]:
            if statement.get("Effect") == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                assert statement["Principal"] == "*"
                assert statement["Action"] in ("sqs:*", "s3:*")
                targets = properties.get("Queues") or [properties["Bucket"]]
                guarded.update(target["Ref"] for target in targets)
    queues = {name for name, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    assert queues == {"ContinuationQueue", "DeadLetterQueue"}
    assert guarded >= {*queues, "LogBucket"}


def test_the_template_refuses_the_parameters_the_function_would_refuse() -> None:
    """A combination that deploys but that the function refuses at every cold start fails every
    object into the dead-letter queue: the template's Rules refuse it at deploy time instead."""
    choices = {
        "ClientIp": template()["Parameters"]["ClientIp"]["AllowedValues"],
        "ClientIpHashKeyParameter": ["", "/elb-log-shipper/client-ip-hash-key"],
        "LogstashTls": ["true", "false"],
        # Files that exist, as the function checks.
        "LogstashCaFile": ["", str(TEMPLATE)],
        "LogstashClientCertFile": ["", str(TEMPLATE)],
        "LogstashClientKeyFile": ["", str(SAMCONFIG)],
    }
    refused = 0
    for combination in itertools.product(*choices.values()):
        values = parameter_values(**dict(zip(choices, combination, strict=True)))
        try:
            Settings.from_env(deployed_environment(values)).require_destination()
            function_refuses = False
        except ConfigurationError:
            function_refuses = True
        assert bool(refused_by_rules(values)) is function_refuses, combination
        refused += function_refuses
    # Accepted: 4 of the 6 privacy choices (not hash without a key, not keep with one) with 5
    # of the 16 TLS ones (without TLS no file; with it, any CA file and both certificate files
    # or neither).
    assert refused == 96 - 4 * 5
    config = tomllib.loads(SAMCONFIG.read_text(encoding="utf-8"))
    for name, environment in config.items():
        if isinstance(environment, dict):  # not `version`
            values = parameter_values(**samconfig_overrides(environment))
            assert refused_by_rules(values) == [], name
            Settings.from_env(deployed_environment(values)).require_destination()


@pytest.mark.parametrize(
    ("subnets", "groups", "refused"),
    [
        ("", "", False),
        ("subnet-1,subnet-2", "sg-1", False),
        ("", "sg-1", True),
        ("subnet-1", "", True),
    ],
)
def test_a_vpc_takes_both_subnets_and_security_groups(
    subnets: str, groups: str, refused: bool
) -> None:
    """Security groups without subnets deployed a function outside the VPC (HasVpcConfig looks
    at SubnetIds alone), which cannot reach a private Logstash; the rules refuse half a VPC."""
    values = parameter_values(SubnetIds=subnets, SecurityGroupIds=groups)
    assert bool(refused_by_rules(values)) is refused
    has_vpc = template()["Conditions"]["HasVpcConfig"]
    assert has_vpc == {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "SubnetIds"}]}, ""]}]}


def test_a_function_in_a_vpc_reaches_an_ipv6_logstash_only_when_asked() -> None:
    """LogstashHost takes an IPv6 address, but a VPC function sends IPv4 alone unless Lambda's
    Ipv6AllowedForDualStack is set: every object was a delivery failure."""
    loaded = template()
    assert loaded["Parameters"]["VpcIpv6"]["Default"] == "false"
    vpc = loaded["Resources"][FUNCTION]["Properties"]["VpcConfig"]["Fn::If"]
    assert vpc[0] == "HasVpcConfig"
    assert vpc[1]["Ipv6AllowedForDualStack"] == {"Ref": "VpcIpv6"}


def test_a_function_in_a_vpc_may_do_what_lambdas_vpc_policy_grants_and_no_more_outside() -> None:
    """AWSLambdaVPCAccessExecutionRole (v3, 2024) grants ec2:DescribeSubnets besides the network
    interfaces that AWSLambdaENIManagementAccess grants: the role has it in a VPC, and neither
    outside one."""
    role = template()["Resources"]["ShipperRole"]["Properties"]
    managed = role["ManagedPolicyArns"]["Fn::If"]
    assert managed[0] == "HasVpcConfig" and managed[2] == {"Ref": "AWS::NoValue"}
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    describe = [
        s["Fn::If"] for s in statements if "Fn::If" in s and s["Fn::If"][0] == "HasVpcConfig"
    ]
    assert len(describe) == 1
    granted, otherwise = describe[0][1:]
    assert granted["Action"] == "ec2:DescribeSubnets" and otherwise == {"Ref": "AWS::NoValue"}


@pytest.mark.parametrize("reserved", range(3, 9))
def test_a_small_reserved_concurrency_needs_a_smaller_continuation_concurrency(
    reserved: int,
) -> None:
    """ReservedConcurrency=3 with ContinuationConcurrency left at 5 deployed, and the queue's
    throttled invokes dead-lettered hand-offs; the rules refuse it where the default breaks."""
    default = int(template()["Parameters"]["ContinuationConcurrency"]["Default"])
    for continuation in range(2, 10):
        values = parameter_values(
            ReservedConcurrency=str(reserved), ContinuationConcurrency=str(continuation)
        )
        refused = bool(refused_by_rules(values))
        if continuation < reserved:
            assert not refused, (reserved, continuation)
        elif reserved <= default:  # every pair the default can break (rules do no arithmetic)
            assert refused, (reserved, continuation)


@pytest.mark.parametrize(
    ("reserved", "refused"),
    [
        ("3", True),
        ("4", True),
        ("5", True),
        ("6", False),
        ("10", False),
        ("1000", False),
        ("2", True),
        ("04", True),
        ("0004", True),
        ("4.0", True),
        ("4.", True),
        ("4e0", True),
        ("40e-1", True),
        ("+4", True),
        (" 4", True),
        ("5.00", True),
        ("3.5", True),
        ("10.5", True),
        ("1e1", True),
        ("010", True),
    ],
)
def test_reserved_concurrency_is_spelt_as_the_rule_compares_it(
    reserved: str, refused: bool
) -> None:
    """The rule that keeps the continuation queue below ReservedConcurrency compares text: a
    Number took 04, 4.0 or 4e0, which passed it, and deployed 4 reserved copies with the
    default 5 for the queue (whose throttled invokes dead-letter hand-offs). With
    ContinuationConcurrency left at its default, a deploy is refused exactly when the reserved
    copies are not a plain whole number above it."""
    values = parameter_values(ReservedConcurrency=reserved)
    problems = override_value_problems(
        "ReservedConcurrency", reserved, template()["Parameters"]["ReservedConcurrency"]
    )
    assert bool(problems or refused_by_rules(values)) is refused


def parameters_run(command: str) -> dict[str, str]:
    """The parameter overrides a printed ``sam build`` or ``sam local invoke`` uses: its own
    --parameter-overrides, else samconfig.toml's default environment (SAM reads
    ``default.global`` for every command, and a flag replaces the whole list)."""
    given = re.search(r"--parameter-overrides ((?:\S+=\S+ ?)+)", command)
    if given is not None:
        return dict(item.partition("=")[::2] for item in given.group(1).split())
    return samconfig_overrides(tomllib.loads(SAMCONFIG.read_text())["default"])


def architecture_run(command: str) -> str:
    """The Architecture a printed ``sam build`` or ``sam local invoke`` uses."""
    overrides = parameters_run(command)
    return str(overrides.get("Architecture", template()["Parameters"]["Architecture"]["Default"]))


def local_invoke_commands(document: Path) -> tuple[str, str, str]:
    """The block of ``document`` that shows ``sam local invoke``: its ``sam build`` and
    ``sam local invoke`` commands, and the block itself."""
    (block,) = [b for b in document.read_text().split("```")[1::2] if "sam local invoke" in b]
    lines = block.replace("\\\n", " ").splitlines()  # continued lines joined
    commands = [c.strip() for line in lines for c in line.split("&&")]
    (build,) = [c for c in commands if re.search(r"\bsam build\b", c)]
    (invoke,) = [c for c in commands if re.search(r"\bsam local invoke\b", c)]
    return build, invoke, block


@pytest.mark.parametrize("document", [DEPLOY_DOC, ROOT / "README.md"], ids=lambda p: p.name)
def test_the_local_invoke_steps_run_the_architecture_they_build(document: Path) -> None:
    """A package built for x86_64 and invoked as arm64 (samconfig's) cannot import orjson."""
    build, invoke, _ = local_invoke_commands(document)
    assert architecture_run(invoke) == architecture_run(build), (build, invoke)


# ------------------------------------------------------------------------------------ package


def sam_build(build_dir: Path, architecture: str) -> Path:
    """`sam build` for ``architecture`` into ``build_dir``; return the function's directory."""
    sam = require_tool(SAM, "the SAM CLI (.venv-sam)")
    env = sam_environ()
    require_tool(shutil.which("python3.13", path=env.get("PATH")), "python3.13 (pyenv)")
    run(
        [
            sam,
            "build",
            "--template-file",
            str(TEMPLATE),
            "--build-dir",
            str(build_dir),
            "--no-cached",
            "--parameter-overrides",
            f"Architecture={architecture}",
        ],
        env,
    )
    return build_dir / FUNCTION


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built for this machine's architecture, so that this machine can run it."""
    return sam_build(tmp_path_factory.mktemp("sam-build"), lambda_architecture())


def test_package_holds_the_code_and_not_the_runtime(package: Path) -> None:
    assert (package / "elb_log_shipper" / "handler.py").is_file()
    assert (package / "aws_lambda_powertools").is_dir()
    assert (package / "orjson").is_dir()
    assert (package / "isal").is_dir()
    bundled = sorted(name for name in RUNTIME_PACKAGES[:3] if (package / name).exists())
    assert not bundled, f"the runtime provides {bundled}; keep them out of src/requirements.txt"
    assert not list(package.glob("*-stubs")), "type stubs are for mypy, not for the package"


def test_package_builds_for_the_other_architecture(tmp_path: Path) -> None:
    # The stacks deploy arm64; this machine runs x86_64 (or the reverse). The build must fetch
    # the other architecture's wheels instead of copying this machine's native code.
    other = {"x86_64": "arm64", "arm64": "x86_64"}[lambda_architecture()]
    built = sam_build(tmp_path / "build", other)
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[other]
    native = [path.name for path in built.rglob("*.so")]
    assert any(name.startswith("orjson") for name in native), native
    assert any(name.startswith("isal_zlib") for name in native), native
    assert all(machine in name for name in native), native


def test_package_is_small(package: Path) -> None:
    unpacked, zipped = directory_size(package), zipped_size(package)
    print(f"\nfunction package: {unpacked / 1e6:.1f} MB unpacked, {zipped / 1e6:.1f} MB zipped")
    assert unpacked < MAX_PACKAGE_BYTES


# ------------------------------------------------------------------------------------ end to end


# The stack the end-to-end test deploys, as its function's environment names it.
STACK_NAME = "elb-log-shipper-green"


def function_environ(parameters: Mapping[str, str]) -> dict[str, str]:
    """The function's environment variables as the template sets them, with ``Ref``s resolved
    from ``parameters`` (parameter or resource name -> value) and the stack's name."""
    variables = template()["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    parameters = {"AWS::StackName": STACK_NAME, **parameters}
    resolved = {}
    for name, value in variables.items():
        if isinstance(value, dict):
            assert set(value) == {"Ref"}, f"{name}: the test resolves only Ref, not {value}"
            resolved[str(name)] = parameters[value["Ref"]]
        else:
            resolved[str(name)] = str(value)
    return resolved


def recipe_event(source: str, bucket: str, key: str) -> dict[str, Any]:
    """The event a user starts ``sam local invoke`` with: ``events/s3-put.json`` with only its
    bucket and key edited (docs/deploy.md), or the SAM CLI's generated S3 put event."""
    if source == "events/s3-put.json":
        event: dict[str, Any] = json.loads((ROOT / source).read_text())
        s3 = event["Records"][0]["s3"]
        s3["bucket"]["name"] = bucket
        s3["object"]["key"] = key
        return event
    sam = require_tool(SAM, "the SAM CLI (.venv-sam)")
    command = [sam, "local", "generate-event", "s3", "put", "--bucket", bucket, "--key", key]
    output = run(command, env=sam_environ())
    generated: dict[str, Any] = json.loads(output[output.index("{") : output.rindex("}") + 1])
    return generated


def invoke_package(
    package: Path, env: Mapping[str, str], event_file: Path, tmp_path: Path
) -> tuple[dict[str, Any], str, str]:
    """Invoke the built package's handler on python3.13 with ``env`` (which sets PATH and
    PYENV_VERSION for it) and the event in ``event_file``, as the Lambda runtime would: its
    result, its standard output, and all its output."""
    python = require_tool(shutil.which("python3.13", path=env["PATH"]), "python3.13 (pyenv)")
    runtime = runtime_boto3(tmp_path / "runtime")
    done = subprocess.run(
        [python, "-I", "-S", "-c", INVOKE, str(package), str(runtime), str(event_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "HANDLER-RESULT" in done.stdout, output
    result_line = next(line for line in done.stdout.splitlines() if "HANDLER-RESULT" in line)
    result: dict[str, Any] = json.loads(result_line.split("HANDLER-RESULT ", 1)[1])
    return result, done.stdout, output


# The environment `sam local invoke FUNCTION --env-vars ENV_FILE` gives the function, resolved by
# the SAM CLI's own code (run by its virtualenv's Python): the template's variables with their
# `Ref`s resolved from the parameters (a resource, or a parameter without a value, resolves to its
# own name), then ENV_FILE's values for the function. argv: template, function, env file, the
# parameter overrides as JSON. The shell's variables, which the SAM CLI also applies, are left out.
SAM_LOCAL_ENVIRONMENT = textwrap.dedent(
    """
    import json, sys
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
    from samcli.local.lambdafn.env_vars import EnvironmentVariables

    template, name, env_file, overrides = sys.argv[1:5]
    stacks, _ = SamLocalStackProvider.get_stacks(
        template,
        parameter_overrides=json.loads(overrides),
        global_parameter_overrides={"AWS::Region": "us-east-1"},
    )
    function = SamFunctionProvider(stacks).get(name)
    with open(env_file) as file:
        values = json.load(file)
    environment = EnvironmentVariables(
        function.name,
        function.memory,
        function.timeout,
        function.handler,
        function.logging_config,
        variables=function.environment["Variables"],
        shell_env_values={},
        override_values=values.get(name, {}),
        aws_creds={},
    )
    print(json.dumps(environment.resolve()))
    """
)


def sam_local_environment(document: Path, tmp_path: Path) -> dict[str, str]:
    """The function's environment in ``document``'s recipe for ``sam local invoke``: its
    ``env.json`` (the here-document the recipe writes) and its command's parameters."""
    _, invoke, block = local_invoke_commands(document)
    written = re.search(r"cat > env\.json <<'EOF'\n(.*?)\nEOF", block, re.DOTALL)
    if written is None:  # the README points to docs/deploy.md's
        _, _, block = local_invoke_commands(DEPLOY_DOC)
        written = re.search(r"cat > env\.json <<'EOF'\n(.*?)\nEOF", block, re.DOTALL)
    assert written is not None, "no env.json in the recipe"
    env_file = tmp_path / "env.json"
    env_file.write_text(written.group(1))
    python = require_tool(str(SAM.parent / "python"), "the SAM CLI (.venv-sam)")
    output = run(
        [
            python,
            "-c",
            SAM_LOCAL_ENVIRONMENT,
            str(TEMPLATE),
            FUNCTION,
            str(env_file),
            json.dumps(parameters_run(invoke)),
        ],
        sam_environ(),
    )
    resolved: dict[str, str] = json.loads(output.splitlines()[-1])
    return resolved


@pytest.mark.parametrize("document", [DEPLOY_DOC, ROOT / "README.md"], ids=lambda p: p.name)
def test_the_local_invoke_recipe_ships_the_object_its_event_names(
    document: Path, package: Path, moto: MotoServer, logstash: JsonLinesReceiver, tmp_path: Path
) -> None:
    """The recipe's environment, as the SAM CLI resolves it, with a bucket of the user's. Its
    first env.json left the bucket and queues to the template, which the SAM CLI resolves to
    their names outside a stack: LOG_BUCKET was the text `LogBucketName`, and the object was
    skipped (`"objects": []`)."""
    bucket = moto.new_bucket("my-elb-logs")
    moto.put_object(bucket, KEY, b"\n".join(ALB_LINES) + b"\n", compress=True)
    event_file = tmp_path / "my-event.json"
    event_file.write_text(json.dumps(recipe_event("events/s3-put.json", bucket, KEY)))
    recipe = sam_local_environment(document, tmp_path)
    # None of the function's variables holds a name the SAM CLI could not resolve: a queue's, or
    # a parameter's.
    ours = template()["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    unresolved = set(template()["Resources"]) | set(template()["Parameters"])
    assert not {name for name in ours if recipe[name] in unresolved}
    # The container reaches the host as host.docker.internal; here the handler runs on the host.
    assert recipe["LOGSTASH_HOST"] == "host.docker.internal"
    recipe.update(LOGSTASH_HOST="127.0.0.1", LOGSTASH_PORT=str(logstash.port))
    env = {
        **{name: value for name, value in recipe.items() if not name.startswith("AWS_")},
        "PATH": sam_environ()["PATH"],
        "PYENV_VERSION": SAM_PYENV,
        **moto.environ(),
        "AWS_ENDPOINT_URL_S3": moto.endpoint_url,
        "AWS_LAMBDA_FUNCTION_NAME": recipe["AWS_LAMBDA_FUNCTION_NAME"],
        "LAMBDA_TASK_ROOT": str(package),
    }
    result, _, output = invoke_package(package, env, event_file, tmp_path)
    assert [o["outcome"] for o in result["objects"]] == ["shipped"], output
    logstash.wait_idle()
    assert len({event["event"]["id"] for event in logstash.events}) == len(ALB_LINES), output


@pytest.mark.parametrize("source", ["events/s3-put.json", "sam local generate-event s3 put"])
def test_built_package_ships_an_object_under_python313(
    package: Path, moto: MotoServer, logstash: JsonLinesReceiver, tmp_path: Path, source: str
) -> None:
    bucket = moto.new_bucket("elb-logs")
    moto.put_object(bucket, KEY, b"\n".join(ALB_LINES) + b"\n", compress=True)
    sqs = boto3.client("sqs", **moto.client_kwargs())
    queue_url = sqs.create_queue(QueueName="elb-log-shipper-continuation")["QueueUrl"]
    dead_letter_url = sqs.create_queue(QueueName="elb-log-shipper-dead-letter")["QueueUrl"]

    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(recipe_event(source, bucket, KEY)))

    env = {
        "PATH": sam_environ()["PATH"],
        "PYENV_VERSION": SAM_PYENV,
        **moto.environ(),
        "AWS_ENDPOINT_URL_S3": moto.endpoint_url,
        "AWS_LAMBDA_FUNCTION_NAME": "elb-log-shipper-test",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "LAMBDA_TASK_ROOT": str(package),
        **function_environ(
            {
                "LogstashHost": "127.0.0.1",
                "LogstashPort": str(logstash.port),
                "LogstashProtocol": "json_lines",
                "LogstashTls": "false",
                "LogstashCaFile": "",
                "LogstashClientCertFile": "",
                "LogstashClientKeyFile": "",
                "LogstashPoolSize": "2",
                "DeadlineMarginSeconds": "30",
                "LogBucketName": bucket,
                "LogPrefix": "AWSLogs/",
                "KeepOriginal": "true",
                "MaxEventBytes": "61440",
                "Environment": "green",
                "ContinuationQueue": queue_url,
                "DeadLetterQueue": dead_letter_url,
                # The privacy rules run in the package too (README, Privacy).
                "RedactQuery": "values",
                "ClientIp": "truncate",
                "ClientIpHashKeyParameter": "",
                "DropUserAgentPrefixes": "",
                "DropMethods": "",
                "DropStatus": "",
                "DropPathPrefixes": "",
                "DropPathSuffixes": "",
            }
        ),
    }
    result, stdout, output = invoke_package(package, env, event_file, tmp_path)
    assert [o["outcome"] for o in result["objects"]] == ["shipped"], output

    logstash.wait_idle()
    events = logstash.events
    assert len(events) == len(ALB_LINES), output
    ids = [shipped["event"]["id"] for shipped in events]
    assert len(set(ids)) == len(ALB_LINES)
    assert not [shipped for shipped in events if PARSE_FAILURE_TAG in shipped.get("tags", ())]
    assert {shipped["source"]["ip"] for shipped in events} == {"192.168.131.0", "10.0.1.0"}
    assert "192.168.131.39" not in json.dumps(events)
    assert [shipped["url"].get("query") for shipped in events if "query" in shipped["url"]] == [
        "b=REDACTED"
    ]

    # Powertools' EMF documents: namespace and the environment dimension the dashboards use.
    emf = [
        json.loads(line)
        for line in stdout.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    assert emf, f"no EMF metrics printed:\n{output}"
    directives = [d for doc in emf for d in doc["_aws"]["CloudWatchMetrics"]]
    assert {d["Namespace"] for d in directives} == {"ElbLogShipper"}
    shipped_doc = next(doc for doc in emf if "LinesRead" in doc)
    assert shipped_doc["environment"] == "green"
    assert shipped_doc["service"] == STACK_NAME  # each stack's metrics are its own
    assert shipped_doc["LinesRead"] in (len(ALB_LINES), [len(ALB_LINES)])
