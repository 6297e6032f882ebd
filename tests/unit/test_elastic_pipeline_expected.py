"""Golden test: our events against Elastic's own expected output for its ELB pipeline test lines.

The data (tests/data/elastic/elb_logs-pipeline-expected.json) holds the ten lines of Elastic's
``elb_logs`` ingest pipeline test (``test-alb.log``: ALB, NLB and ALB connection logs) and, for
each, the document Elastic's pipeline makes of it (``test-alb.log-expected.json``), flattened to
dotted names; both are from elastic/integrations at the commit the data file names, less what
enrichment (geoip, user_agent) and Elastic's test harness add. For each line: our event is no
parse failure, and every field of Elastic's document is in ours with the same value and JSON
type, except the differences that docs/elb-log-formats.md documents (sections 7 and 8), listed
with their reasons in ``DIFFERENCES``. Fields we emit beyond Elastic's are not checked here
(tests/unit/test_formats_elastic.py checks them against Elastic's definitions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from elb_log_shipper.formats import PARSE_FAILURE_TAG, EventBuilder
from tests.support.elastic import DATA
from tests.support.events import built

ROOT = Path(__file__).resolve().parents[2]
FORMATS_DOC = ROOT / "docs" / "elb-log-formats.md"
GOLDEN: dict[str, Any] = json.loads(
    (DATA / "elb_logs-pipeline-expected.json").read_text(encoding="utf-8")
)
CASES: list[dict[str, Any]] = GOLDEN["cases"]

MISSING: Any = object()  # a field absent from our event

# Ours: RFC 3339 UTC with exactly six fraction digits (docs/elb-log-formats.md §7).
_MICROSECOND_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", re.ASCII)


def _same(ours: Any, theirs: Any) -> bool:
    """Equal values of the same JSON type (``5 == 5.0`` and ``1 == True`` are not)."""
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(map(_same, ours, theirs))
    return type(ours) is type(theirs) and ours == theirs


def _millisecond_date(ours: Any, theirs: Any) -> bool:
    """Elastic's date processor writes milliseconds (``...00.186Z``); we keep the microseconds
    ELB writes (``...00.186641Z``): the same instant, truncated to the millisecond."""
    return (
        isinstance(ours, str)
        and _MICROSECOND_DATE.fullmatch(ours) is not None
        and ours[:23] + "Z" == theirs
    )


def _integer_for_float(ours: Any, theirs: Any) -> bool:
    """Elastic groks the value as a float (``5.0``); we emit the integer NLB writes (``5``)."""
    return type(ours) is int and type(theirs) is float and ours == theirs


def _list_for_text(ours: Any, theirs: Any) -> bool:
    """Elastic keeps the raw text between the outer quotes (``h2","http/1.1``); we split it into
    the list of protocol names (``["h2", "http/1.1"]``)."""
    return isinstance(ours, list) and isinstance(theirs, str) and ours == theirs.split('","')


def _dash_left_out(ours: Any, theirs: Any) -> bool:
    """Elastic captures the text ``-`` ("no value"); we leave the field out."""
    return theirs == "-" and ours is MISSING


Check = Callable[[Any, Any], bool]

# The documented differences, and only those: field -> the one way ours may differ from Elastic's
# value (a field not listed must be the same). docs/elb-log-formats.md is "the doc" below.
DIFFERENCES: dict[str, Check] = {
    # Dates: the doc's §7 table ("`@timestamp` as RFC 3339 UTC with microseconds and `Z`", and
    # "Dates ... are emitted as RFC 3339 UTC with microseconds and `Z`": every date field) and §8
    # row `@timestamp`; `event.end` is equal to `@timestamp` (§8 row `event.end`). Elastic's
    # event.start is no date processor's output: it is compared as it is, with no entry here.
    "@timestamp": _millisecond_date,
    "event.end": _millisecond_date,
    "aws.elb.tls_connection_creation_time": _millisecond_date,
    "aws.elb.leaf_client_cert_not_before": _millisecond_date,
    "aws.elb.leaf_client_cert_not_after": _millisecond_date,
    # NLB millisecond times: §8 rows `aws.elb.connection_time.ms` and
    # `aws.elb.tls_handshake_time.ms` ("the pipeline groks it as float, its mapping is `long`; we
    # emit the integer NLB writes").
    "aws.elb.connection_time.ms": _integer_for_float,
    "aws.elb.tls_handshake_time.ms": _integer_for_float,
    # §8 row `aws.elb.alpn_client_preference_list` ("the pipeline keeps the raw text between the
    # outer quotes; the definition says list, so we split it").
    "aws.elb.alpn_client_preference_list": _list_for_text,
    # §8, before its table: "A field whose value is `-` or `"-"` ("no value") is left out of our
    # event, everywhere", naming `aws.elb.target_group.arn: "-"` and `user_agent.original: "-"`
    # as fields Elastic's grok captures as `-`. The connection log's leaf_client_cert_subject
    # `"-"` is the same rule (Elastic's expected output has it as `-`; the doc does not name it).
    "aws.elb.target_group.arn": _dash_left_out,
    "user_agent.original": _dash_left_out,
    "aws.elb.leaf_client_cert_subject": _dash_left_out,
}


def _flat(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects to dotted names (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``); lists are values."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flat(value, name))
        else:
            flat[name] = value
    return flat


def _event(line: str) -> dict[str, Any]:
    """Our event for ``line`` as it goes on the wire (JSON), from an object in S3."""
    builder = EventBuilder(
        bucket="elb-logs", key="k.log.gz", version="v1", region="us-east-1", account="123456789012"
    )
    wire: dict[str, Any] = orjson.loads(orjson.dumps(built(builder, line.encode(), 0)))
    return wire


def _mismatches(ours: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Every field of Elastic's document that ours lacks or holds otherwise, but for the
    documented differences."""
    found: list[str] = []
    for name, theirs in expected.items():
        value = ours.get(name, MISSING)
        if _same(value, theirs):
            continue
        difference = DIFFERENCES.get(name)
        if difference is not None and difference(value, theirs):
            continue
        shown = "absent" if value is MISSING else repr(value)
        found.append(f"{name}: ours {shown}, Elastic's {theirs!r}")
    return found


@pytest.mark.parametrize("case", [pytest.param(case, id=case["id"]) for case in CASES])
def test_our_event_has_elastics_fields_and_values(case: dict[str, Any]) -> None:
    event = _event(case["line"])
    assert PARSE_FAILURE_TAG not in event.get("tags", []), event.get("error")
    assert "error" not in event
    assert event["event"]["original"] == case["line"]
    assert _mismatches(_flat(event), case["expected"]) == []


# --- the data and the table themselves -------------------------------------------------------


def test_the_golden_data_is_elastics_ten_lines_less_enrichment() -> None:
    assert len(CASES) == 10
    assert len({case["id"] for case in CASES}) == len(CASES)
    for source in GOLDEN["sources"].values():
        assert source["repo"] == "elastic/integrations"
        assert source["commit"] == "06ef7ddbab13db0626ad234faa3ee08bc41ae734"
    left_out = re.compile(
        r"source\.(geo|as)\.|user_agent\.(name|version|device\.)|tags$|event\.original$"
    )
    for case in CASES:
        assert "\n" not in case["line"]
        assert not [name for name in case["expected"] if left_out.match(name)], case["id"]
        assert case["expected"]["ecs.version"] == "8.11.0"


def test_every_documented_difference_is_needed_and_in_the_mapping_table() -> None:
    """The table stays minimal: each entry excuses a real difference of some line, and names a
    field of the doc's §8 (where the reason is written)."""
    used: set[str] = set()
    for case in CASES:
        ours = _flat(_event(case["line"]))
        for name, theirs in case["expected"].items():
            value = ours.get(name, MISSING)
            if name in DIFFERENCES and not _same(value, theirs):
                used.add(name)
    assert set(DIFFERENCES) - used == set()
    text = FORMATS_DOC.read_text(encoding="utf-8")
    section = text[text.index("## 8.") :]
    assert [name for name in DIFFERENCES if f"`{name}`" not in section] == []


def test_the_checks_refuse_what_they_do_not_excuse() -> None:
    assert not _same(5, 5.0)
    assert not _same([1], [True])
    assert _millisecond_date("2018-07-02T22:23:00.186641Z", "2018-07-02T22:23:00.186Z")
    assert not _millisecond_date("2018-07-02T22:23:00.187641Z", "2018-07-02T22:23:00.186Z")
    assert not _millisecond_date("2018-07-02T22:23:00.186Z", "2018-07-02T22:23:00.186Z")
    assert not _integer_for_float(5, 6.0)
    assert not _integer_for_float(5.0, 5.0)
    assert not _list_for_text(["h2"], 'h2","http/1.1')
    assert not _list_for_text("h2", "h2")
    assert not _dash_left_out("-", "-")
    assert not _dash_left_out(MISSING, "arn:aws:elasticloadbalancing:x")
