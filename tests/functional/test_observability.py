"""What the function tells the people who run it: the EMF document of every exit path, read from
what Powertools prints, and the alarms, dashboard and documentation that rely on it.

The handler runs for real (moto S3/SQS over HTTP, a json_lines receiver on 127.0.0.1). Each
invocation must print exactly one EMF document, in the namespace, with the dimensions and the
units that template.yaml's alarms and dashboard and the README's table name: a widget on a
metric with another dimension set is not an error anywhere, it is an empty graph forever.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

from elb_log_shipper import handler
from elb_log_shipper.config import ENV, MIN_DEADLINE_MARGIN
from elb_log_shipper.errors import DeliveryError
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.triggers import make_continuation
from tests.functional.test_handler import sqs_record
from tests.functional.test_reliability import s3_event, sqs_event
from tests.support.lambda_harness import (
    DAY,
    NOT_A_STALL_TIMEOUT,
    Container,
    alb_key,
    alb_lines,
    emf_documents,
    joined,
    log_records,
    put_lines,
    received,
    start_container,
    stop_container,
    store,
)
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import MotoServer

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
TEMPLATE = ROOT / "template.yaml"
# What the harness sets as DEPLOYMENT_ENVIRONMENT (the template: the Environment parameter).
ENVIRONMENT = "test"
METRICS = frozenset(value for name, value in vars(handler.Metric).items() if name.isupper())
# Emitted only when a live object was read (README).
SOMETIMES = frozenset({handler.Metric.LAG_SECONDS})


def documented_units() -> dict[str, str]:
    """The README's metrics table: metric name -> unit."""
    section = README.read_text(encoding="utf-8").split("\n## Metrics and alarms\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    units = {}
    for row in section.splitlines():
        found = re.match(r"\| `(\w+)` \| (\w+) \|", row)
        if found:
            units[found[1]] = found[2]
    return units


def read_document(output: str) -> dict[str, float]:
    """The one EMF document an invocation printed, checked against what the alarms, dashboard
    and README expect; its values by metric name."""
    (document,) = emf_documents(output)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == handler.DEFAULT_METRICS_NAMESPACE
    assert [sorted(names) for names in directive["Dimensions"]] == [["environment", "service"]]
    assert document["service"] == handler.DEFAULT_SERVICE
    assert document["environment"] == ENVIRONMENT
    units = {entry["Name"]: entry["Unit"] for entry in directive["Metrics"]}
    assert METRICS - SOMETIMES <= set(units) <= METRICS, set(units) ^ METRICS
    documented = documented_units()
    assert {name: documented.get(name) for name in units} == units
    values = {}
    for name in units:
        (value,) = document[name]  # one value per invocation: sums add up over invocations
        values[name] = value
    return values


@pytest.fixture
def container(
    container_for: Any, logstash: JsonLinesReceiver, capsys: pytest.CaptureFixture[str]
) -> Container:
    started: Container = container_for(
        logstash, **{ENV.LOGSTASH_STALL_TIMEOUT: NOT_A_STALL_TIMEOUT}
    )
    capsys.readouterr()  # the cold start's output
    return started


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: Logstash is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ------------------------------------------------------------------------ every exit path


def test_a_shipped_object_counts_its_lines_failures_drops_and_truncations(
    moto: MotoServer,
    container_for: Any,
    logstash: JsonLinesReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = moto.new_bucket()
    key = alb_key("mixed")
    good = alb_lines(20)
    long_line = good[0].replace(b"/items/0 ", b"/items/" + b"x" * 9000 + b" ")
    # 20 good lines (2 of them dropped by the path filter), 3 that do not parse, 1 too large.
    lines = [*good[1:], b"not an ELB line", b"GET / HTTP/1.1", b"\xff\xfe", long_line]
    store(moto, bucket, key, joined(lines), compress=True)
    container = container_for(
        logstash,
        **{ENV.DROP_PATH_PREFIXES: "/items/1", ENV.MAX_EVENT_BYTES: "4096"},
    )
    capsys.readouterr()

    started = time.monotonic()
    result = container.invoke(s3_event(bucket, key))
    elapsed = time.monotonic() - started

    (report,) = result["objects"]
    values = read_document(capsys.readouterr().out)
    # The time spent shipping, to the millisecond (not whole seconds: 0 for this invocation).
    assert 0 < report["seconds"] <= values["ShipSeconds"] <= elapsed
    dropped = sum(b"/items/1" in line for line in lines)
    assert dropped == 11  # /items/1 and /items/10 to /items/19
    assert values["LinesRead"] == len(lines) == report["lines"]
    assert values["EventsDropped"] == dropped == report["dropped"]
    assert values["ParseFailures"] == report["parse_failures"] > 0
    assert values["EventsTruncated"] == 1
    # Every line read is an event confirmed or a line dropped: nothing vanishes between them.
    assert values["LinesRead"] == values["EventsSent"] + values["EventsDropped"]
    logstash.wait_idle()
    assert values["EventsSent"] == len(logstash.events)
    assert (values["ObjectsShipped"], values["ObjectsFailed"], values["Handoffs"]) == (1, 0, 0)
    assert values["BytesRead"] == report["bytes_read"] > 0
    assert values["DeliveryFailures"] == 0
    assert "LagSeconds" in values  # an S3 notification: a live object


@pytest.mark.parametrize("trigger", ["s3", "sqs"])
def test_logstash_down_is_counted_even_when_the_invocation_raises(
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    trigger: str,
) -> None:
    bucket, key, _ = put_lines(moto, 30, f"down{trigger}")
    # Without a continuation queue to wait in, an asynchronous event fails (see
    # test_reliability for the object handed off to wait for Logstash).
    no_queue = {ENV.CONTINUATION_QUEUE_URL: ""} if trigger == "s3" else {}
    container = start_container(monkeypatch, moto, closed_port(), **no_queue)
    capsys.readouterr()

    try:
        outcome = invoke_once(container, bucket, key, trigger)
    finally:
        stop_container()
    if trigger == "sqs":
        assert outcome == [{"itemIdentifier": "m-0"}]
    values = read_document(capsys.readouterr().out)
    assert values["DeliveryFailures"] == 1
    assert values["ObjectsFailed"] == 1
    assert values["EventsSent"] == 0
    assert values["LinesRead"] == 30  # read, not delivered: the retry reads them again


def test_an_object_parked_while_logstash_is_down_reports_no_lag_and_warns(
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A live object (an S3 notification) that waits in the continuation queue for Logstash: its
    # lines were read, none arrived. Lag is of lines delivered, or the lag graph and alarm would
    # look as on any day while nothing arrives.
    bucket, key, _ = put_lines(moto, 30, "parked")
    container = start_container(monkeypatch, moto, closed_port())
    capsys.readouterr()
    try:
        result = container.invoke(s3_event(bucket, key), budget=60)
    finally:
        stop_container()

    assert result["objects"][0]["outcome"] == "handed_off"
    values = read_document(capsys.readouterr().out)
    assert (values["Handoffs"], values["DeliveryFailures"], values["EventsSent"]) == (1, 1, 0)
    assert values["LinesRead"] == 30
    assert "LagSeconds" not in values
    (parked,) = [r for r in log_records(caplog) if r["message"] == "object handed off"]
    # An outage seen by a filter on warnings and errors, with its cause.
    assert parked["level"] == "WARNING"
    assert "delivery to Logstash failed" in parked["error"]


def invoke_once(container: Container, bucket: str, key: str, trigger: str) -> Any:
    """Invoke with an S3 notification or an SQS continuation; the batch failures (SQS)."""
    if trigger == "s3":
        # Asynchronous: the invocation raises so that Lambda retries it; the metrics of the
        # attempt are printed all the same (Powertools flushes in a finally).
        with pytest.raises(DeliveryError):
            container.invoke(s3_event(bucket, key), budget=60)
        return None
    result = container.invoke(sqs_event(make_continuation(ObjectRef(bucket, key))), budget=60)
    return result["batchItemFailures"]


# As test_reliability's many hops: the first batch of each hop always goes, the next waits for
# a deadline 0.1 s away.
HOP_WORK_SECONDS = 0.1


def test_the_hops_of_an_object_count_each_line_once_and_the_object_once(
    moto: MotoServer,
    container_for: Any,
    logstash: JsonLinesReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket, key, lines = put_lines(moto, 25_000, "hops")
    container = container_for(
        logstash,
        **{
            ENV.LOGSTASH_STALL_TIMEOUT: NOT_A_STALL_TIMEOUT,
            ENV.DEADLINE_MARGIN_SECONDS: f"{MIN_DEADLINE_MARGIN:g}",
        },
    )
    capsys.readouterr()
    budget = MIN_DEADLINE_MARGIN + HOP_WORK_SECONDS

    result = container.invoke(s3_event(bucket, key), budget=budget)
    documents = [read_document(capsys.readouterr().out)]
    while result["objects"][0]["outcome"] == "handed_off":
        (message,) = container.continuations()
        result = container.invoke(sqs_event(json.loads(message["Body"])), budget=budget)
        documents.append(read_document(capsys.readouterr().out))
    assert result["objects"][0]["outcome"] == "shipped"

    def total(name: str) -> float:
        return sum(document[name] for document in documents)

    hops = len(documents) - 1
    assert hops >= 2
    assert (total("Handoffs"), total("ObjectsShipped"), total("ObjectsFailed")) == (hops, 1, 0)
    # A hop resumes after the last line it confirmed: no line is read, or counted, twice.
    assert total("LinesRead") == total("EventsSent") == len(lines)
    assert all("LagSeconds" in document for document in documents if document["LinesRead"])
    logstash.wait_idle()
    assert sum(received(logstash).values()) == len(lines)


def test_skipped_objects_and_an_unreadable_message_are_counted(
    moto: MotoServer,
    container: Container,
    logstash: JsonLinesReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket, key, _ = put_lines(moto, 5, "good")
    health = (
        f"{DAY}health_check_log_123456789012_elasticloadbalancing_us-east-1_"
        "app.my-alb.50dc6c495c0c9188_20261128T2340Z_10.0.1.7_2a3b4c5d.log.gz"
    )
    good = json.dumps(make_continuation(ObjectRef(bucket, key)))
    skipped = json.dumps(make_continuation(ObjectRef(bucket, health)))
    bodies = {"m-0": good, "m-1": "this is not JSON", "m-2": skipped}

    result = container.invoke({"Records": [sqs_record(m, body) for m, body in bodies.items()]})

    # The unreadable message is retried, then dead-lettered: counted until then, not silent.
    assert result["batchItemFailures"] == [{"itemIdentifier": "m-1"}]
    values = read_document(capsys.readouterr().out)
    assert (values["ObjectsShipped"], values["ObjectsFailed"], values["ObjectsSkipped"]) == (
        1,
        1,
        1,
    )


def test_a_dead_lettered_object_is_a_failed_object_and_not_a_hand_off(
    moto: MotoServer,
    container_for: Any,
    logstash: JsonLinesReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket, key, _ = put_lines(moto, 5, "deadletter")
    sqs = boto3.client("sqs", **moto.client_kwargs())
    dead_letters = sqs.create_queue(QueueName=f"dead-letters-{bucket}")["QueueUrl"]
    container = container_for(
        logstash, **{ENV.MAX_HOPS: "2", ENV.DEAD_LETTER_QUEUE_URL: dead_letters}
    )
    capsys.readouterr()

    result = container.invoke(sqs_event(make_continuation(ObjectRef(bucket, key, hop=3))))

    assert result["objects"][0]["outcome"] == "dead_lettered"
    assert result["batchItemFailures"] == []
    values = read_document(capsys.readouterr().out)
    assert (values["ObjectsFailed"], values["Handoffs"], values["LinesRead"]) == (1, 0, 0)
    assert values["ObjectsRejected"] == 0  # the dead-letter queue holds it, to replay
    assert len(container.take_messages(dead_letters)) == 1


@pytest.mark.parametrize(
    "resume_points",
    [[(1234, 3)], [(1, 0), (0, 1)]],
    ids=["part-way", "a-replayed-dead-letter-and-a-first-hop"],
)
def test_a_continuation_a_deploy_put_outside_the_scope_is_a_rejected_object(
    *,
    moto: MotoServer,
    container_for: Any,
    logstash: JsonLinesReceiver,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    resume_points: list[tuple[int, int]],
) -> None:
    # A deploy that changed LOG_PREFIX while objects were part-way: their continuations were
    # skipped like a new notification outside the scope, an INFO line and ObjectsSkipped; the
    # rest of each object was lost and no alarm said so. So is a replayed dead letter (its hop
    # back at 0) part-way through its object, and a first hop from the object's start.
    bucket, key, _ = put_lines(moto, 5, "rescoped")
    container = container_for(logstash, **{ENV.LOG_PREFIX: "elsewhere/"})
    capsys.readouterr()

    rests = [
        ObjectRef(bucket, key, etag="e", start_offset=offset, hop=hop)
        for offset, hop in resume_points
    ]
    result = container.invoke(sqs_event(*map(make_continuation, rests)))

    assert result["batchItemFailures"] == []  # nothing a retry could ship
    out = capsys.readouterr().out
    values = read_document(out)
    count = len(rests)
    assert (values["ObjectsRejected"], values["ObjectsFailed"], values["ObjectsSkipped"]) == (
        count,
        count,
        0,
    )
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["continuation not shipped: the rest of the object is lost"] * count


def test_an_event_of_no_known_shape_prints_no_document(
    container: Container, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing was counted; AWS/Lambda Errors (the function-errors alarm) is the signal.
    with pytest.raises(Exception, match="unrecognised Lambda event"):
        container.invoke({"not": "an event"})
    assert emf_documents(capsys.readouterr().out) == []


# ------------------------------------------------------------- template.yaml and the docs


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return loaded


def metric_references(node: Any) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every metric an alarm (``MetricName``, or a math alarm's ``MetricStat``) or a dashboard
    widget (``[namespace, name, dimension, value, ..., {options}]``) refers to."""
    if isinstance(node, Mapping):
        if "MetricName" in node:
            dimensions = {d["Name"]: d["Value"] for d in node.get("Dimensions", [])}
            yield str(node["Namespace"]), str(node["MetricName"]), dimensions
        for value in node.values():
            yield from metric_references(value)
    elif isinstance(node, list):
        if node and isinstance(node[0], str) and len(node) >= 2 and isinstance(node[1], str):
            if node[0] in (".", "..."):
                raise AssertionError(f"a widget repeats the metric before it: {node}")
            fields = list(node)
            if isinstance(fields[-1], Mapping) and not any(
                key == "Ref" or key.startswith("Fn::") for key in fields[-1]
            ):
                fields.pop()  # the rendering options: stat, label, axis
            if node[0] == handler.DEFAULT_METRICS_NAMESPACE or node[0].startswith("AWS/"):
                pairs = fields[2:]
                assert len(pairs) % 2 == 0, node
                yield node[0], node[1], dict(zip(pairs[::2], pairs[1::2], strict=True))
                return
        for value in node:
            yield from metric_references(value)


def test_every_alarm_and_widget_reads_a_metric_the_function_emits_as_it_emits_it() -> None:
    loaded = template()
    variables = loaded["Resources"]["ShipperFunction"]["Properties"]["Environment"]["Variables"]
    # The handler's fall-backs (sam local, tests) are what the template sets.
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == handler.DEFAULT_METRICS_NAMESPACE
    # Each stack's metrics are its own: two stacks (of one colour, on two buckets) in an account
    # and region must not feed each other's alarms.
    assert variables["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}
    assert variables[ENV.DEPLOYMENT_ENVIRONMENT] == {"Ref": "Environment"}
    emitted_dimensions = {
        "service": {"Ref": "AWS::StackName"},
        handler.METRIC_DIMENSION_ENVIRONMENT: {"Ref": "Environment"},
    }
    alarms = {
        name: resource["Properties"]
        for name, resource in loaded["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    dashboard = loaded["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    ours = [
        (name, dimensions)
        for namespace, name, dimensions in metric_references([alarms, dashboard])
        if namespace == handler.DEFAULT_METRICS_NAMESPACE
    ]
    assert ours
    for name, dimensions in ours:
        assert name in METRICS, name
        assert dimensions == emitted_dimensions, (name, dimensions)
    # At a glance: every metric the function emits is on the dashboard.
    shown = {name for namespace, name, _ in metric_references(dashboard) if namespace != "AWS/SQS"}
    assert shown >= METRICS, METRICS - shown


def test_alarms_stay_quiet_without_traffic_and_their_math_is_well_formed() -> None:
    for name, resource in template()["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm = resource["Properties"]
        if name == "SilenceAlarm":
            # The one alarm that watches for silence, set on the live colour: off (it can never
            # fire) unless SilenceAlarmHours is set.
            on = "HasSilenceAlarm"
            assert alarm["TreatMissingData"] == {"Fn::If": [on, "breaching", "notBreaching"]}
            assert alarm["Threshold"] == {"Fn::If": [on, 1, 0]}
            assert alarm["ComparisonOperator"] == "LessThanThreshold"
            assert alarm["Statistic"] == "Sum"
            continue
        if name == "DeadLetterQueueAlarm":
            # SQS publishes no metric for a queue inactive for six hours, even one holding
            # messages: the alarm keeps its state instead of turning OK over unread dead letters.
            assert alarm["TreatMissingData"] == "ignore"
        else:
            # No traffic (a colour on standby, a quiet night) is not an incident.
            assert alarm["TreatMissingData"] == "notBreaching", name
        periods = alarm["EvaluationPeriods"]
        assert alarm.get("DatapointsToAlarm", periods) <= periods, name
        if "Metrics" not in alarm:
            assert alarm["Statistic"] in ("Sum", "Maximum", "Average", "Minimum"), name
            continue
        queries = alarm["Metrics"]
        ids = {query["Id"] for query in queries}
        assert [query.get("ReturnData", True) for query in queries].count(True) == 1, name
        for query in queries:
            if "Expression" in query:
                used = set(re.findall(r"\b[a-z]\w*\b", query["Expression"]))
                assert used - {"if", "fill"} <= ids, (name, used - ids)
            else:
                assert query["MetricStat"]["Stat"] == "Sum", name


def test_the_backlog_alarm_is_above_an_events_own_retries_and_the_dashboard_is_regional() -> None:
    loaded = template()
    resources = loaded["Resources"]
    function = resources["ShipperFunction"]["Properties"]
    timeout = function.get("Timeout", loaded["Globals"]["Function"]["Timeout"])
    retries = function["EventInvokeConfig"]["MaximumRetryAttempts"]
    # Lambda waits 1 then 2 minutes between an asynchronous event's attempts: an event whose
    # attempts all time out is that old at its last one, and must not read as a backlog.
    own_retries_ms = 1000 * (retries * timeout + sum(60 * 2**n for n in range(retries)))
    backlog = resources["AsyncBacklogAlarm"]["Properties"]
    assert (backlog["MetricName"], backlog["Statistic"]) == ("AsyncEventAge", "Maximum")
    assert backlog["Threshold"] > own_retries_ms
    # Dashboards are global to an account: a stack name deployed in two regions needs two.
    name = resources["Dashboard"]["Properties"]["DashboardName"]
    assert name == {"Fn::Sub": "${AWS::StackName}-${AWS::Region}"}


def alarm_names() -> set[str]:
    names = set()
    for resource in template()["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            sub = resource["Properties"]["AlarmName"]["Fn::Sub"]
            names.add(sub.removeprefix("${AWS::StackName}-"))
    return names


def test_the_readme_documents_every_metric_and_every_alarm() -> None:
    assert set(documented_units()) == METRICS
    readme = README.read_text(encoding="utf-8").split("\n## Metrics and alarms\n", 1)[1]
    deploy = DEPLOY_DOC.read_text(encoding="utf-8").split("\n## Alarms and dashboard\n", 1)[1]
    for name in alarm_names():
        assert f"| `{name}` |" in readme.split("\n## ", 1)[0], name
        assert f"| `{name}` |" in deploy.split("\n## ", 1)[0], name


# How the alarm tables say when an alarm fires: "in 2 of 3 ... periods", "for 3 periods in a row".
OUT_OF = re.compile(r"in (\d) of (\d)")
IN_A_ROW = re.compile(r"for (\d) periods")
# A threshold as written (`above 1800`, `> 15 minutes`, `above 1 %`), in the alarm's own unit.
ABOVE = re.compile(r"(?:above|>) ([\d.]+) ?(minutes|%)?")
MILLISECONDS = {"minutes": 60_000}


@pytest.mark.parametrize("document", [README, DEPLOY_DOC], ids=lambda p: p.name)
def test_the_alarm_tables_give_each_alarms_periods_and_threshold(document: Path) -> None:
    """What a reader takes from "fires when" is what the template sets."""
    alarms = {
        alarm["AlarmName"]["Fn::Sub"].removeprefix("${AWS::StackName}-"): alarm
        for resource in template()["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        for alarm in [resource["Properties"]]
    }
    rows = [row.split(" | ") for row in document.read_text(encoding="utf-8").splitlines()]
    checked = set()
    for row in rows:
        name = re.fullmatch(r"\| `([a-z-]+)`", row[0])
        if name is None or name[1] not in alarms or len(row) < 2:
            continue
        alarm, fires = alarms[name[1]], row[1]
        periods = alarm["EvaluationPeriods"]
        if found := OUT_OF.search(fires):
            assert (int(found[1]), int(found[2])) == (alarm["DatapointsToAlarm"], periods)
        if found := IN_A_ROW.search(fires):
            assert int(found[1]) == periods and "DatapointsToAlarm" not in alarm, name[1]
        if found := ABOVE.search(fires):
            threshold = float(found[1]) * MILLISECONDS.get(found[2] or "", 1)
            assert threshold == alarm["Threshold"], name[1]
        checked.add(name[1])
    assert checked == set(alarms)


def test_the_dashboard_shows_every_queue_metric_that_retiring_a_stack_waits_for() -> None:
    # docs/deploy.md drains a stack before deleting it (its continuations would be lost): each
    # CloudWatch metric its steps read must be a line of the dashboard they point at.
    deploy = DEPLOY_DOC.read_text(encoding="utf-8")
    waited_for = set(re.findall(r"`(ApproximateNumberOfMessages\w+)`", deploy))
    assert waited_for >= {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
    }
    dashboard = template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    continuation_queue = {"Fn::GetAtt": ["ContinuationQueue", "QueueName"]}
    shown = {
        name
        for namespace, name, dimensions in metric_references(dashboard)
        if namespace == "AWS/SQS" and dimensions.get("QueueName") == continuation_queue
    }
    assert shown >= waited_for, waited_for - shown
