"""Privacy end to end: the handler with its hash key in SSM (moto over HTTP), the command line,
and the ledger when drop filters remove the health checks of a corpus."""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from bench.corpus import HEALTH_CHECK_AGENT, alb_lines, with_health_checks

from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.formats import PARSE_FAILURE_TAG
from elb_log_shipper.hashkey import (
    SSM_CONNECT_TIMEOUT,
    SSM_MAX_ATTEMPTS,
    SSM_READ_TIMEOUT,
    fetch_hash_key,
    forget_hash_key_client,
)
from elb_log_shipper.pipeline import ship_object
from elb_log_shipper.privacy import DropRules, PrivacyRules
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.triggers import make_continuation
from tests.support.cli_runner import run_command
from tests.support.events import strings
from tests.support.faults import NeverReadingServer
from tests.support.lambda_harness import (
    NOT_A_STALL_TIMEOUT,
    alb_key,
    joined,
    metric,
    start_container,
    stop_container,
    store,
)
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import REGION, MotoServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", autouse=True)
def _powertools_clients() -> Iterator[None]:
    """The hash key's Powertools provider keeps one SSM client per process, made at its first
    fetch: make it against this module's moto server, and close it with the module (no stale
    sockets for later tests)."""
    forget_hash_key_client()
    yield
    forget_hash_key_client()


KEY = "a-test-key-of-32-bytes-0123456789"
LINES = 1000
CORPUS = list(with_health_checks(alb_lines(LINES)))
HEALTH_CHECKS = {i for i, line in enumerate(CORPUS) if HEALTH_CHECK_AGENT in line}


def client_address(line: str) -> str:
    return line.split(" ")[3].rpartition(":")[0]


def query_values(line: str) -> list[str]:
    request = line.split('"')[1]
    if "?" not in request:
        return []
    query = request.split(" ")[1].partition("?")[2]
    return [pair.partition("=")[2] for pair in query.split("&")]


def put_key(moto: MotoServer, value: str = KEY, kind: str = "SecureString") -> str:
    """A new parameter of type ``kind`` holding ``value``; its name is new, so no cache of
    Powertools has it."""
    name = f"/elb-log-shipper/test/client-ip-hash-key-{time.monotonic_ns()}"
    ssm = boto3.client("ssm", **moto.client_kwargs())
    ssm.put_parameter(Name=name, Value=value, Type=kind)
    return name


def pseudonym(address: str, key: str = KEY) -> str:
    """What CLIENT_IP=hash must write, computed here from the documented definition."""
    digest = hmac.new(key.encode(), ipaddress.ip_address(address).packed, hashlib.sha256).digest()
    return str(ipaddress.IPv6Address(b"\xfd" + digest[:15]))


def point_boto3_at(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment that sends boto3's requests (SSM, S3) to the moto server."""
    for variable, value in moto.environ().items():
        monkeypatch.setenv(variable, value)


def test_health_checks_are_dropped_exactly_and_counted(tmp_path: Path) -> None:
    assert len(HEALTH_CHECKS) == LINES * 3 // 10
    path = tmp_path / "alb.log"
    path.write_text("".join(line + "\n" for line in CORPUS))
    batches: list[bytes] = []

    class Sink:
        def send(
            self, batch: bytes, events: int, end_offset: int, line_offsets: list[int] | None = None
        ) -> None:
            batches.append(batch)

    rules = PrivacyRules(drop=DropRules(user_agent_prefixes=("ELB-HealthChecker/",)))
    report = ship_object(ObjectRef.local(str(path)), Sink(), privacy=rules)

    shipped = [orjson.loads(line) for batch in batches for line in batch.splitlines()]
    offsets = [0]
    for line in CORPUS:
        offsets.append(offsets[-1] + len(line) + 1)
    kept = {offsets[i] for i in range(LINES) if i not in HEALTH_CHECKS}
    assert {event["log"]["offset"] for event in shipped} == kept
    assert len(shipped) == report.events == LINES - len(HEALTH_CHECKS)
    assert report.dropped == len(HEALTH_CHECKS)
    assert report.lines == report.events + report.dropped == LINES
    assert report.parse_failures == 0


def damaged(line: str) -> str:
    """``line`` with a load-balancer status that is no number: a line that fails to parse."""
    fields = line.split(" ")
    fields[8] = "2x0"
    return " ".join(fields)


# Every 50th line, and one of no known format, fail to parse; none of them is a health check.
DAMAGED = {i for i in range(LINES) if i % 50 == 5}
CORPUS_WITH_FAILURES = [
    *(damaged(line) if i in DAMAGED else line for i, line in enumerate(CORPUS)),
    "not an ELB log line",
]


def test_every_line_read_is_shipped_dropped_or_failed_once_and_counted_so(
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    logstash: JsonLinesReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 14: read = shipped + dropped + failed, each term counted from what arrived, not
    from the ledger's own sums (``events`` is ``lines - dropped``, so the ledger alone cannot
    show it), and with each term non-zero."""
    assert not DAMAGED & HEALTH_CHECKS
    container = start_container(
        monkeypatch,
        moto,
        logstash.port,
        DROP_USER_AGENT_PREFIXES="ELB-HealthChecker/",
        LOGSTASH_STALL_TIMEOUT=NOT_A_STALL_TIMEOUT,
    )
    try:
        bucket = moto.new_bucket()
        key = alb_key("ledger")
        data = joined([line.encode() for line in CORPUS_WITH_FAILURES])
        store(moto, bucket, key, data, compress=True)
        result = container.invoke(make_continuation(ObjectRef(bucket, key)))
    finally:
        stop_container()

    offsets = [0]
    for line in CORPUS_WITH_FAILURES:
        offsets.append(offsets[-1] + len(line) + 1)
    read = len(CORPUS_WITH_FAILURES)
    dropped = {offsets[i] for i in HEALTH_CHECKS}
    failed = {offsets[i] for i in DAMAGED} | {offsets[read - 1]}
    events = logstash.events
    arrived = collections.Counter(event["log"]["offset"] for event in events)
    assert max(arrived.values()) == 1, "an event arrived twice"
    assert set(arrived) == set(offsets[:read]) - dropped, "not exactly the health checks dropped"
    failures = {e["log"]["offset"] for e in events if PARSE_FAILURE_TAG in e.get("tags", [])}
    assert failures == failed
    shipped = len(events) - len(failures)
    assert read == shipped + len(dropped) + len(failures)
    assert shipped and dropped and failures

    [ledger] = result["objects"]
    assert ledger["outcome"] == "shipped"
    assert (ledger["lines"], ledger["parsed"]) == (read, shipped)
    assert (ledger["dropped"], ledger["parse_failures"]) == (len(dropped), len(failures))
    assert ledger["events_sent"] == len(events)
    output = capsys.readouterr().out
    assert metric(output, "LinesRead") == read
    assert metric(output, "EventsDropped") == len(dropped)
    assert metric(output, "ParseFailures") == len(failures)
    assert metric(output, "EventsSent") == len(events)


def test_handler_hashes_with_the_key_from_ssm_redacts_and_drops(
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    logstash: JsonLinesReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = put_key(moto)
    container = start_container(
        monkeypatch,
        moto,
        logstash.port,
        REDACT_QUERY="values",
        CLIENT_IP="hash",
        CLIENT_IP_HASH_KEY_PARAMETER=name,
        DROP_USER_AGENT_PREFIXES="ELB-HealthChecker/",
        # It counts the events that arrive: a receiver starved of the CPU is no stall here.
        LOGSTASH_STALL_TIMEOUT=NOT_A_STALL_TIMEOUT,
    )
    try:
        bucket = moto.new_bucket()
        key = alb_key("privacy")
        store(moto, bucket, key, joined([line.encode() for line in CORPUS]), compress=True)
        result = container.invoke(make_continuation(ObjectRef(bucket, key)))
    finally:
        stop_container()

    [ledger] = result["objects"]
    assert ledger["outcome"] == "shipped"
    assert ledger["dropped"] == len(HEALTH_CHECKS)
    assert ledger["lines"] == ledger["parsed"] + ledger["parse_failures"] + ledger["dropped"]
    assert ledger["events_sent"] == LINES - len(HEALTH_CHECKS)
    output = capsys.readouterr().out
    assert metric(output, "EventsDropped") == len(HEALTH_CHECKS)
    assert metric(output, "LinesRead") == LINES
    assert metric(output, "EventsSent") == LINES - len(HEALTH_CHECKS)

    events = logstash.events
    assert len(events) == LINES - len(HEALTH_CHECKS)
    kept = [line for i, line in enumerate(CORPUS) if i not in HEALTH_CHECKS]
    addresses = {client_address(line) for line in kept}
    for event in events:
        texts = list(strings(event))
        assert not [text for text in texts for a in addresses if a in text]
        assert HEALTH_CHECK_AGENT not in json.dumps(event)
    by_offset = {event["log"]["offset"]: event for event in events}
    offset, queries = 0, 0
    for i, line in enumerate(CORPUS):
        if i not in HEALTH_CHECKS:
            event = by_offset[offset]
            assert event["source"]["ip"] == pseudonym(client_address(line))
            if query_values(line):
                queries += 1
                query = line.split('"')[1].split(" ")[1].partition("?")[2]
                assert not [text for text in strings(event) if query in text]
                assert event["url"]["query"] == "page=REDACTED&q=REDACTED"
        offset += len(line) + 1
    assert queries > 100


def test_handler_fails_in_one_sentence_without_its_key(
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    logstash: JsonLinesReceiver,
) -> None:
    missing = "/elb-log-shipper/test/no-such-parameter"
    container = start_container(
        monkeypatch, moto, logstash.port, CLIENT_IP="hash", CLIENT_IP_HASH_KEY_PARAMETER=missing
    )
    try:
        with pytest.raises(ConfigurationError, match=f"CLIENT_IP_HASH_KEY_PARAMETER={missing}"):
            container.invoke({"bucket": "b", "key": "k"})
    finally:
        stop_container()
    assert not logstash.events


def test_handler_names_what_a_secrets_manager_key_needs_when_refused(
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    logstash: JsonLinesReceiver,
) -> None:
    """SSM reads /aws/reference/secretsmanager/NAME from the secret, as the function: refused,
    the fix is the secret and secretsmanager:GetSecretValue on it. The message sent people to
    create a SecureString parameter under the reserved path, which SSM does not allow."""
    missing = "/aws/reference/secretsmanager/elb-log-shipper/no-such-secret"
    container = start_container(
        monkeypatch, moto, logstash.port, CLIENT_IP="hash", CLIENT_IP_HASH_KEY_PARAMETER=missing
    )
    try:
        with pytest.raises(ConfigurationError) as refused:
            container.invoke({"bucket": "b", "key": "k"})
    finally:
        stop_container()
    message = str(refused.value)
    assert message.startswith(f"CLIENT_IP_HASH_KEY_PARAMETER={missing} could not be read ("), (
        message
    )
    assert "ParameterNotFound" in message
    assert message.endswith(
        "create the secret elb-log-shipper/no-such-secret in Secrets Manager, its SecretString "
        f"the key, and grant ssm:GetParameter on {missing} and secretsmanager:GetSecretValue on "
        "the secret, and kms:Decrypt through Secrets Manager on a customer managed key that "
        "encrypts it (the stack's ClientIpHashKeyKmsKeyArn)"
    ), message
    assert "SecureString" not in message
    assert not logstash.events


def refused_in_clear(name: str, kind: str) -> str:
    """The start of the sentence that refuses the key in parameter ``name`` of type ``kind``."""
    return f"CLIENT_IP_HASH_KEY_PARAMETER={name} is a {kind} parameter, not a SecureString: "


@pytest.mark.parametrize("kind", ["String", "StringList"])
def test_a_key_stored_in_clear_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer, kind: str
) -> None:
    # A String parameter is stored unencrypted and shown in clear (console, history, CloudTrail):
    # no place for a pseudonymisation key. It was taken as a SecureString is.
    point_boto3_at(moto, monkeypatch)
    name = put_key(moto, kind=kind)
    with pytest.raises(ConfigurationError) as refused:
        fetch_hash_key(name)
    message = str(refused.value)
    assert message.startswith(refused_in_clear(name, kind)), message
    assert "Delete it (its history keeps the key)" in message
    assert f"aws ssm put-parameter --type SecureString --name {name} --value" in message
    assert KEY not in message


def test_handler_refuses_a_key_stored_in_clear_and_ships_nothing(
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    logstash: JsonLinesReceiver,
) -> None:
    name = put_key(moto, kind="String")
    container = start_container(
        monkeypatch, moto, logstash.port, CLIENT_IP="hash", CLIENT_IP_HASH_KEY_PARAMETER=name
    )
    try:
        bucket = moto.new_bucket()
        key = alb_key("clear-key")
        store(moto, bucket, key, joined([line.encode() for line in CORPUS[:20]]), compress=True)
        with pytest.raises(ConfigurationError, match=refused_in_clear(name, "String")):
            container.invoke(make_continuation(ObjectRef(bucket, key)))
    finally:
        stop_container()
    assert not logstash.events


# The longest SSM may take to not answer: every attempt's connect and read timeouts, and a second
# of botocore's backoff between attempts.
SSM_SILENCE = SSM_MAX_ATTEMPTS * (SSM_CONNECT_TIMEOUT + SSM_READ_TIMEOUT) + 1.0


@pytest.fixture
def silent_ssm(monkeypatch: pytest.MonkeyPatch, moto: MotoServer) -> Iterator[NeverReadingServer]:
    """An SSM endpoint that accepts connections and never answers (a VPC without a route to SSM
    drops them instead; a connect timeout is the same wait). boto3 reaches moto for the rest."""
    point_boto3_at(moto, monkeypatch)
    with NeverReadingServer() as silent:
        yield silent
    forget_hash_key_client()


def test_an_ssm_that_does_not_answer_fails_in_seconds_and_says_where_to_look(
    monkeypatch: pytest.MonkeyPatch, silent_ssm: NeverReadingServer
) -> None:
    # botocore's defaults (60 s to connect, 60 to read, 3 attempts) cost three minutes of every
    # invocation, then blamed a missing grant.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", f"http://127.0.0.1:{silent_ssm.port}")
    forget_hash_key_client()
    name = f"/elb-log-shipper/test/never-read-{time.monotonic_ns()}"
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as failed:
        fetch_hash_key(name)
    assert time.monotonic() - started < SSM_SILENCE
    message = str(failed.value)
    assert message.startswith(f"CLIENT_IP_HASH_KEY_PARAMETER={name} could not be read: SSM did")
    assert "interface endpoint (com.amazonaws.REGION.ssm) or a NAT gateway" in message
    assert silent_ssm.connection_count == SSM_MAX_ATTEMPTS


def test_a_refresh_ssm_does_not_answer_hashes_with_the_key_read_before(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer, silent_ssm: NeverReadingServer
) -> None:
    name = put_key(moto)
    forget_hash_key_client()
    assert fetch_hash_key(name) == KEY.encode()
    # The cached key expires (a new client, an empty cache) while SSM does not answer.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", f"http://127.0.0.1:{silent_ssm.port}")
    forget_hash_key_client()
    assert fetch_hash_key(name) == KEY.encode()
    assert silent_ssm.connection_count == SSM_MAX_ATTEMPTS
    # Not asked again on every invocation while the key read before stands in.
    started = time.monotonic()
    assert [fetch_hash_key(name) for _ in range(3)] == [KEY.encode()] * 3
    assert time.monotonic() - started < SSM_READ_TIMEOUT
    assert silent_ssm.connection_count == SSM_MAX_ATTEMPTS


def test_no_region_is_a_configuration_error_that_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # botocore's NoRegionError went up as a traceback from the command.
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    forget_hash_key_client()
    try:
        with pytest.raises(ConfigurationError, match="without an AWS region: set AWS_REGION"):
            fetch_hash_key("/elb-log-shipper/test/no-region")
    finally:
        forget_hash_key_client()


def fetch_in_environment(
    monkeypatch: pytest.MonkeyPatch, name: str, unset: tuple[str, ...], **values: str
) -> bytes:
    """``fetch_hash_key(name)`` by a new client, the variables ``unset`` removed and ``values``
    set (and boto3's default session forgotten: it keeps the credentials it found first)."""
    for variable in unset:
        monkeypatch.delenv(variable)
    for variable, value in values.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    forget_hash_key_client()
    try:
        return fetch_hash_key(name)
    finally:
        forget_hash_key_client()


def test_aws_region_alone_gives_the_region(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer, tmp_path: Path
) -> None:
    # The message above names AWS_REGION, which the AWS CLI v2 and Lambda set; botocore reads
    # only AWS_DEFAULT_REGION, so setting AWS_REGION alone changed nothing.
    point_boto3_at(moto, monkeypatch)
    name = put_key(moto)
    assert (
        fetch_in_environment(
            monkeypatch,
            name,
            ("AWS_DEFAULT_REGION",),
            AWS_REGION=REGION,
            AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        )
        == KEY.encode()
    )


def test_no_credentials_is_said_so_not_blamed_on_the_parameter(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer, tmp_path: Path
) -> None:
    # Without credentials the message said to create the parameter and grant ssm:GetParameter.
    point_boto3_at(moto, monkeypatch)
    name = put_key(moto)
    credentials = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    with pytest.raises(ConfigurationError) as failed:
        fetch_in_environment(
            monkeypatch,
            name,
            credentials,
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        )
    message = str(failed.value)
    assert message.startswith(f"CLIENT_IP_HASH_KEY_PARAMETER={name} could not be read: no usable")
    assert "Unable to locate credentials" in message
    assert "aws sso login" in message
    assert "SecureString" not in message


def test_a_parameter_deleted_stops_the_hashing_at_the_next_refresh(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer, silent_ssm: NeverReadingServer
) -> None:
    # An answer that refuses is not covered by the key read before: deleting a leaked key's
    # parameter must stop its use.
    name = put_key(moto)
    forget_hash_key_client()
    assert fetch_hash_key(name) == KEY.encode()
    boto3.client("ssm", **moto.client_kwargs()).delete_parameter(Name=name)
    forget_hash_key_client()  # the cached key expires
    with pytest.raises(ConfigurationError, match="ParameterNotFound") as refused:
        fetch_hash_key(name)
    # What to grant: SSM's, and KMS's for a customer managed key (the template's parameter).
    assert "grant ssm:GetParameter" in str(refused.value)
    assert "kms:Decrypt" in str(refused.value)
    assert "ClientIpHashKeyKmsKeyArn" in str(refused.value)
    # Nor by a refresh after it that SSM does not answer (throttled by every container asking
    # again): the deleted key came back as the key read last, for up to an hour.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", f"http://127.0.0.1:{silent_ssm.port}")
    forget_hash_key_client()
    with pytest.raises(ConfigurationError, match="SSM did not answer") as failed:
        fetch_hash_key(name)
    assert KEY not in str(failed.value)
    assert silent_ssm.connection_count == SSM_MAX_ATTEMPTS


def test_the_key_and_its_type_come_from_one_cached_ssm_call(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    """Checking the type costs no second request: GetParameter returns it with the value, and
    Powertools caches both for HASH_KEY_MAX_AGE_SECONDS (one SSM call per cold start)."""
    point_boto3_at(moto, monkeypatch)
    secure, clear = put_key(moto), put_key(moto, kind="String")
    calls: list[str] = []
    session = boto3.session.Session()
    session.events.register(
        "before-call.ssm.GetParameter",
        lambda params, **_: calls.append(json.loads(params["body"])["Name"]),
    )
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    forget_hash_key_client()  # the next fetch makes its client from this session
    try:
        assert [fetch_hash_key(secure) for _ in range(3)] == [KEY.encode()] * 3
        for _ in range(2):
            with pytest.raises(ConfigurationError, match=refused_in_clear(clear, "String")):
                fetch_hash_key(clear)
    finally:
        forget_hash_key_client()
    assert calls == [secure, clear]


def test_cli_flags_hash_with_the_same_key_and_truncate(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    tmp_path: Path,
) -> None:
    point_boto3_at(moto, monkeypatch)
    name = put_key(moto)
    path = tmp_path / "alb.log"
    path.write_text("".join(line + "\n" for line in CORPUS[:20]))
    common = ["ship", str(path), "--to", "-", "--drop-user-agent-prefixes", "ELB-HealthChecker/"]

    hashed = run_command(
        capsys, *common, "--client-ip", "hash", "--client-ip-hash-key-parameter", name,
        "--redact-query", "all",
    )  # fmt: skip
    assert hashed.status == 0, hashed.err
    events: list[dict[str, Any]] = [json.loads(line) for line in hashed.out.splitlines()]
    kept = [line for i, line in enumerate(CORPUS[:20]) if i not in HEALTH_CHECKS]
    assert [event["source"]["ip"] for event in events] == [
        pseudonym(client_address(line)) for line in kept
    ]
    assert all("query" not in event.get("url", {}) for event in events)
    assert "6 lines dropped by filters" in hashed.err

    truncated = run_command(capsys, *common, "--client-ip", "truncate")
    assert truncated.status == 0, truncated.err
    assert [json.loads(line)["source"]["ip"] for line in truncated.out.splitlines()] == [
        client_address(line).rpartition(".")[0] + ".0" for line in kept
    ]


def test_cli_refuses_a_key_stored_in_clear(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    moto: MotoServer,
    tmp_path: Path,
) -> None:
    point_boto3_at(moto, monkeypatch)
    name = put_key(moto, kind="String")
    path = tmp_path / "alb.log"
    path.write_text(CORPUS[0] + "\n")
    run = run_command(
        capsys, "ship", str(path), "--to", "-",
        "--client-ip", "hash", "--client-ip-hash-key-parameter", name,
    )  # fmt: skip
    assert run.status == 2
    assert refused_in_clear(name, "String") in run.err
    assert run.out == ""


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--drop-status", "2xy"], "DROP_STATUS: '2xy' is neither a status code"),
        (["--drop-path-prefixes", "static/"], "DROP_PATH_PREFIXES: 'static/' is not a path"),
        (["--client-ip", "hash"], "CLIENT_IP=hash needs CLIENT_IP_HASH_KEY_PARAMETER"),
    ],
)
def test_cli_invalid_privacy_flags_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], message: str
) -> None:
    path = tmp_path / "alb.log"
    path.write_text(CORPUS[0] + "\n")
    run = run_command(capsys, "ship", str(path), "--to", "-", *flags)
    assert run.status == 2
    assert message in run.err
    # The user typed a flag: the message names it beside the variable (and, for hash, the flag
    # that gives the key too).
    assert f"(on the command line: {flags[0]}" in run.err.splitlines()[-1], run.err
    if flags[0] == "--client-ip":
        assert run.err.rstrip().endswith("--client-ip-hash-key-parameter)"), run.err


def test_redaction_settings_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDACT_QUERY", "values")
    path = tmp_path / "alb.log"
    line = next(line for line in CORPUS if "?" in line.split('"')[1])
    path.write_text(line + "\n")
    run = run_command(capsys, "ship", str(path), "--to", "-")
    event = json.loads(run.out)
    assert event["url"]["query"] == "page=REDACTED&q=REDACTED"
    assert query_values(line)[0] not in event["event"]["original"].split('"')[1]


def test_the_key_may_be_a_secrets_manager_secret_read_through_ssm(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    point_boto3_at(moto, monkeypatch)
    secrets = boto3.client("secretsmanager", **moto.client_kwargs())
    secrets.create_secret(Name="elb-log-shipper-test-key", SecretString=KEY)
    key = fetch_hash_key("/aws/reference/secretsmanager/elb-log-shipper-test-key")
    assert key == KEY.encode()
