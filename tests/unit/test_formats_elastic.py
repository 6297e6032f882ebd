"""Our events against Elastic's own definitions (issue 11): every field known, every type right.

The definitions are Elastic's, kept as test data with their source paths and commits
(tests/data/elastic/, read by tests.support.elastic). Checked here: the samples, the peer
fixtures, 50,000 generated lines of each format (fixed seeds), bracketed IPv6 lines and parse
failures: zero violations. Also: the definitions agree with each other, every extra and every
field of Elastic's pipeline has its row in the mapping table of docs/elb-log-formats.md.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from bench.corpus import alb_lines, classic_lines, connection_lines, nlb_lines

from elb_log_shipper.formats import PARSE_FAILURE_TAG, EventBuilder
from elb_log_shipper.samples import SAMPLE_OBJECTS
from tests.support.elastic import (
    DEFINITIONS,
    ECS_DEFINITIONS,
    EXTRAS,
    INTEGRATION,
    mapped_leaves,
    violations,
)
from tests.support.events import built, field

ROOT = Path(__file__).resolve().parents[2]
PEER_LINES = ROOT.parent / "shared" / "testdata" / "peer-fixtures" / "lines.jsonl"
FORMATS_DOC = ROOT / "docs" / "elb-log-formats.md"

# Issue 11: 50k generated lines of each format.
GENERATED_LINES = 50_000
GENERATORS: dict[str, Callable[[int], Iterator[str]]] = {
    "alb": alb_lines,
    "classic": classic_lines,
    "nlb": nlb_lines,
    "connection": connection_lines,
}

BRACKETED_IPV6 = {
    "alb": "http 2026-11-28T23:35:01.186641Z app/my-alb/50dc6c495c0c9188 [2001:db8::1]:443 "
    '[2001:db8::2]:80 0.000 0.001 0.000 200 200 34 366 "GET http://[2001:db8::3]:80/a.png '
    'HTTP/1.1" "curl/7.46.0" - - - "Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 0 '
    '2026-11-28T23:34:48.364000Z "forward" "-" "-" "[2001:db8::2]:80" "200" "-" "-"',
    "classic": "2026-11-28T23:39:43.945958Z lb [2001:db8::1]:2817 [2001:db8::2]:80 0.1 0.1 0.1 "
    '200 200 0 29 "GET http://a.com:80/ HTTP/1.1" "-" - -',
    "nlb": "tls 2.0 2026-11-28T23:40:42 net/my-nlb/c6 g3 [2001:db8::1]:51341 [2001:db8::2]:443 "
    "5 2 98 246 - - - ECDHE-RSA-AES128-SHA tlsv12 - - - - - -",
    "connection": "2026-11-28T23:41:15.514108Z [2001:db8::1] 36280 443 TLSv1.2 "
    'ECDHE-RSA-AES128-GCM-SHA256 4.036 "-" - - Success TID_1',
}


def _builder() -> EventBuilder:
    return EventBuilder(
        bucket="elb-logs", key="k.log.gz", version="v1", region="us-east-1", account="123456789012"
    )


def _check_all(lines: Iterable[str], builder: EventBuilder | None = None) -> tuple[int, int]:
    """(events checked, parse failures); asserts zero violations, naming the first few."""
    build = partial(built, builder or _builder())
    found: list[str] = []
    count = failures = 0
    for offset, line in enumerate(lines):
        event = build(line.encode(), offset)
        count += 1
        failures += PARSE_FAILURE_TAG in event.get("tags", [])
        problems = violations(orjson.loads(orjson.dumps(event)))
        if problems and len(found) < 5:
            found.append(f"{line}\n  -> {problems}")
    assert not found, "\n".join(found)
    return count, failures


def test_the_samples_fit_elastics_definitions() -> None:
    lines = [line for sample in SAMPLE_OBJECTS for line in sample.lines]
    count, failures = _check_all(lines)
    assert (count, failures) == (len(lines), 1)  # the one deliberate non-log line
    # Without an S3 bucket (a local file), the event says where it came from with log.file.path.
    _check_all(lines, EventBuilder(key="/var/log/elb/sample.log"))


def test_the_access_log_test_line_fits() -> None:
    _check_all(["Enable AccessLog for ELB: my-loadbalancer at 2015-05-13T23:39:43.945958Z"])


def test_the_peer_fixtures_fit_elastics_definitions() -> None:
    if not PEER_LINES.is_file():
        pytest.skip(f"{PEER_LINES} is not beside this checkout")
    lines = [json.loads(text)["line"] for text in PEER_LINES.read_text().splitlines()]
    count, failures = _check_all(lines)
    assert count >= 59
    assert failures == 0


@pytest.mark.parametrize("name", GENERATORS)
def test_generated_lines_fit_elastics_definitions(name: str) -> None:
    count, failures = _check_all(GENERATORS[name](GENERATED_LINES))
    assert (count, failures) == (GENERATED_LINES, 0)


@pytest.mark.parametrize("name", BRACKETED_IPV6)
def test_bracketed_ipv6_addresses_lose_their_brackets(name: str) -> None:
    line = BRACKETED_IPV6[name]
    _check_all([line])
    event = built(_builder(), line.encode(), 0)
    assert PARSE_FAILURE_TAG not in event.get("tags", []), event.get("error")
    if name == "connection":  # client.*, as Elastic's pipeline sets it
        assert field(event, "client.ip") == "2001:db8::1"
        assert field(event, "source") is None
    else:
        assert field(event, "source.ip") == "2001:db8::1"
        assert field(event, "source.address") == "2001:db8::1"


def test_parse_failures_fit_too() -> None:
    count, failures = _check_all(["garbage", "", "http 2026", '"', "tls 2.0 x"])
    assert failures == count


def test_every_event_carries_the_ecs_version() -> None:
    lines = [line for sample in SAMPLE_OBJECTS for line in sample.lines] + ["garbage"]
    versions = {field(built(_builder(), line.encode(), 0), "ecs.version") for line in lines}
    # The version Elastic's elb_logs pipeline sets.
    assert versions == {"8.11.0"}


# --- the definitions themselves -------------------------------------------------------------


def test_the_definitions_do_not_contradict_each_other() -> None:
    ecs = ECS_DEFINITIONS["fields"]
    for name, definition in INTEGRATION["fields"].items():
        if name in ecs and ecs[name]["type"] != "date":
            # base-fields.yml narrows event.dataset to constant_keyword: still a string.
            assert definition["type"] in {ecs[name]["type"], "constant_keyword"}, name
    assert not set(EXTRAS["fields"]) & (set(ecs) | set(INTEGRATION["fields"]))
    assert all(name.startswith("aws.elb.") for name in EXTRAS["fields"])
    assert set(INTEGRATION["ecs_fields"]) <= set(ecs)


def _mapping_rows() -> list[list[str]]:
    """The rows of the mapping table (section 8 of the formats contract), split into cells."""
    text = FORMATS_DOC.read_text(encoding="utf-8")
    section = text[text.index("## 8.") :]
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]


def test_every_field_of_elastics_definitions_has_an_explained_row() -> None:
    rows = _mapping_rows()
    named = {name for row in rows for name in re.findall(r"`([^`]+)`", row[0])}
    expected = set(INTEGRATION["fields"]) | set(INTEGRATION["ecs_fields"])
    assert expected - named == set()
    for row in rows:
        # | Elastic's field | formats | what we emit | why, where it differs |
        assert len(row) == 4, row
        assert row[2], row
        if row[2] in {"-", "—"}:
            assert row[3], f"{row[0]}: not emitted, and no reason given"


def test_every_extra_is_documented() -> None:
    text = FORMATS_DOC.read_text(encoding="utf-8")
    for name in EXTRAS["fields"]:
        assert f"`{name}`" in text, name


def test_every_field_we_may_emit_is_defined() -> None:
    # The checker's table is complete for the contract's §7 fields: spot-check the new ones.
    for name in (
        "ecs.version",
        "source.address",
        "url.extension",
        "client.ip",
        "aws.elb.protocol",
        "aws.elb.tls_error_code",
    ):
        assert name in DEFINITIONS, name


def _fields(events: Iterable[dict[str, Any]]) -> set[str]:
    names: set[str] = set()

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        else:
            names.add(prefix)

    for event in events:
        walk("", event)
    return names


def test_elastics_pipeline_fields_are_emitted_where_the_line_has_them() -> None:
    # The fields issue 11 found missing, per format.
    build = partial(built, _builder())
    per_format = {
        name: _fields(build(line.encode(), 0) for line in generate(2000))
        for name, generate in GENERATORS.items()
    }
    everywhere = {"ecs.version", "aws.elb.protocol", "event.end"}
    for name, fields in per_format.items():
        assert everywhere <= fields, name
        # A connection log's client is client.* only, as Elastic's pipeline sets it: its
        # dashboards count source.ip over the data stream as requests.
        assert ("source.address" in fields) == (name != "connection"), name
    assert {"url.extension", "aws.elb.backend.port"} <= per_format["alb"]
    assert {"aws.elb.backend.ip", "aws.elb.backend.port"} <= per_format["nlb"]
    assert {"client.ip", "aws.elb.listener", "aws.elb.tls_error_code"} <= per_format["connection"]


# --- the index template and the enrichment pipeline shipped under logstash/ -----------------

TEMPLATE = ROOT / "logstash" / "elb-logs-index-template.json"
ENRICH_PIPELINE = ROOT / "logstash" / "elb-logs-enrich-pipeline.json"
# What Elasticsearch's geoip (City and ASN databases, then renamed) and user_agent processors
# write, as the enrichment pipeline runs them.
ENRICHED = {
    "source.geo.continent_name",
    "source.geo.country_iso_code",
    "source.geo.country_name",
    "source.geo.region_iso_code",
    "source.geo.region_name",
    "source.geo.city_name",
    "source.geo.location",
    "source.as.number",
    "source.as.organization.name",
    "user_agent.name",
    "user_agent.version",
    "user_agent.os.name",
    "user_agent.os.version",
    "user_agent.os.full",
    "user_agent.device.name",
}


def _template() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    return loaded


def test_the_index_template_is_a_data_stream_template_for_elb_logs() -> None:
    template = _template()
    assert set(template) == {"index_patterns", "data_stream", "priority", "_meta", "template"}
    assert template["index_patterns"] == ["logs-aws.elb_logs-*"]
    assert template["data_stream"] == {}
    # Above the built-in logs-*-* template (100), below Elastic's integration (200).
    assert 100 < template["priority"] < 200
    settings = template["template"]["settings"]["index"]
    # Nothing re-parses our events, whatever the output asks.
    assert settings["default_pipeline"] == "_none"


# What Logstash adds to every event, mapped as Logstash's own index templates map it: left to
# dynamic mapping it would be text (and keyword), unlike Elastic's logs templates, whose
# ecs@mappings map strings as keyword: a conflict across the data stream's backing indices once
# the integration's template takes over.
LOGSTASH_FIELDS = {"@version": "keyword"}


def test_the_index_template_maps_every_field_with_elastics_type() -> None:
    mapped = mapped_leaves(_template()["template"]["mappings"]["properties"])
    for path, type_ in LOGSTASH_FIELDS.items():
        assert mapped.pop(path) == {"type": type_}, path
    for path, mapping in mapped.items():
        assert path in DEFINITIONS, path
        expected = DEFINITIONS[path]["type"]
        assert mapping["type"] == expected or (
            mapping["type"] == "constant_keyword" and expected == "keyword"
        ), path
    constants = {path: m["value"] for path, m in mapped.items() if "value" in m}
    # The values our events (or Logstash's data stream output) give these fields.
    assert constants == {
        "event.dataset": "aws.elb_logs",
        "event.module": "aws",
        "data_stream.type": "logs",
        "data_stream.dataset": "aws.elb_logs",
    }


def test_every_field_we_emit_or_enrich_is_in_the_index_template() -> None:
    mapped = set(mapped_leaves(_template()["template"]["mappings"]["properties"]))
    build = partial(built, _builder())
    lines = [line for sample in SAMPLE_OBJECTS for line in sample.lines]
    lines += [line for generate in GENERATORS.values() for line in generate(2000)]
    lines += list(BRACKETED_IPV6.values())
    lines += ["Enable AccessLog for ELB: my-lb at 2015-05-13T23:39:43.945958Z", "garbage"]
    emitted = _fields(build(line.encode(), 0) for line in lines)
    emitted |= _fields(built(EventBuilder(key="local.log"), b"garbage", 0) for _ in range(1))
    assert emitted - mapped == set()
    assert ENRICHED - mapped == set()


def _active(name: str) -> str:
    conf = (ROOT / "logstash" / name).read_text(encoding="utf-8")
    lines = conf.splitlines()
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))


def test_the_beats_example_lands_the_documents_of_the_tcp_example() -> None:
    """The beats input tags every event it decodes (logstash-input-beats'
    RawEventTransform: "beats_input_raw_event"; with a `message`, the codec's tag): the beats
    variant takes those tags off, then the `tags` field they leave empty on parsed events
    (logstash-core's filters/base.rb sets the array back, empty or not: `"tags": []` in every
    document, where the tcp input's have no `tags`), and is otherwise the tcp variant from its
    filter on."""
    tcp, beats = _active("pipeline.conf"), _active("pipeline-beats.conf")
    removal = re.search(
        r" *mutate \{ remove_tag => \[([^\]]*)\] \}\n"
        r" *if !\[tags\]\[0\] \{\n *mutate \{ remove_field => \[\"tags\"\] \}\n *\}\n",
        beats,
    )
    assert removal is not None
    assert set(re.findall(r'"([^"]+)"', removal[1])) == {
        "beats_input_raw_event",
        "beats_input_codec_plain_applied",
    }
    assert beats[beats.index("filter {") :].replace(removal[0], "") == tcp[tcp.index("filter {") :]


def test_the_enrichment_pipeline_enriches_and_does_not_parse() -> None:
    pipeline = json.loads(ENRICH_PIPELINE.read_text(encoding="utf-8"))
    steps = [next(iter(processor.items())) for processor in pipeline["processors"]]
    assert {kind for kind, _ in steps} <= {"geoip", "user_agent", "rename"}
    reads = {options["field"] for _, options in steps}
    assert reads - {"source.as.asn", "source.as.organization_name"} == {
        "source.ip",
        "user_agent.original",
    }


@pytest.mark.parametrize("name", ["pipeline.conf", "pipeline-beats.conf"])
def test_the_logstash_example_writes_where_the_template_applies_without_reparsing(
    name: str,
) -> None:
    conf = (ROOT / "logstash" / name).read_text(encoding="utf-8")
    active = "\n".join(line for line in conf.splitlines() if not line.lstrip().startswith("#"))
    outputs = active.split("elasticsearch {")[1:]
    assert len(outputs) == 2  # with event.id, and the guard without
    for output in outputs:
        settings = dict(re.findall(r"^\s*(\w+) => (.+)$", output, re.MULTILINE))
        target = "-".join(
            settings[f"data_stream_{part}"].strip('"') for part in ("type", "dataset", "namespace")
        )
        assert fnmatch.fnmatch(target, _template()["index_patterns"][0])
        assert settings["pipeline"] == '"_none"'
    with_id = dict(re.findall(r"^\s*(\w+) => (.+)$", outputs[0], re.MULTILINE))
    assert with_id["action"] == '"create"'
    assert with_id["document_id"] == '"%{[event][id]}"'
