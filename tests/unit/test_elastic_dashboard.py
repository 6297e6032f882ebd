"""Elastic's Kibana dashboard for ELB logs over our events: every panel finds what it reads.

The dashboard ("[Logs AWS] ELB Access Log Overview" of Elastic's AWS integration) is kept as test
data: its data view, its filter and, per panel, the fields it splits documents by, sums or maps
(tests/data/elastic/elb_logs-dashboard.json, with the source commits). Checked here, over the
events of every format (the samples and generated lines): each field a panel reads is in our
events, or added by the enrichment pipeline we ship, with a type the panel's operation works on;
the dashboard's data view and filter find the data stream the Logstash examples write; and the
panels that count documents per value count ALB connection logs' lines (TLS connections, not
requests) only where docs/deploy.md says, with the filter it gives to leave them out.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from bench.corpus import alb_lines, classic_lines, connection_lines, nlb_lines

from elb_log_shipper.formats import EventBuilder
from elb_log_shipper.samples import SAMPLE_OBJECTS
from tests.support.docs import table_names
from tests.support.elastic import DATA, DEFINITIONS, json_type_problem, mapped_leaves
from tests.support.events import built, field

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD: dict[str, Any] = json.loads(
    (DATA / "elb_logs-dashboard.json").read_text(encoding="utf-8")
)
PANELS: list[dict[str, Any]] = DASHBOARD["panels"]
TEMPLATE = ROOT / "logstash" / "elb-logs-index-template.json"
ENRICH_PIPELINE = ROOT / "logstash" / "elb-logs-enrich-pipeline.json"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

# The mapping types each operation works on (Kibana offers a field for an operation only when
# its type fits: a terms split needs a keyword, a number or an ip; a sum a number; a date
# histogram a date; a geo grid a geo_point).
WORKS_ON: dict[str, set[str]] = {
    "terms": {"keyword", "constant_keyword", "ip", "long"},
    "date_histogram": {"date"},
    "sum": {"long", "float", "scaled_float", "double"},
    "range": {"long", "float", "scaled_float", "double"},
    "geo_grid": {"geo_point"},
}

GENERATORS: dict[str, Callable[[int], Iterator[str]]] = {
    "alb": alb_lines,
    "classic": classic_lines,
    "nlb": nlb_lines,
    "connection": connection_lines,
}


def _kind(key: str) -> str:
    """The format of a sample object, by its name (docs/elb-log-formats.md §6)."""
    name = key.rsplit("/", 1)[-1]
    if name.startswith("conn_log_"):
        return "connection"
    return "alb" if "_app." in name else "nlb" if "_net." in name else "classic"


def _events() -> dict[str, list[dict[str, Any]]]:
    """Every format's events, as Elasticsearch receives them: the samples and 2,000 generated
    lines of each."""
    builder = EventBuilder(bucket="elb-logs", key="k.log.gz", version="v1", region="us-east-1")
    lines: dict[str, list[str]] = {
        kind: list(generate(2000)) for kind, generate in GENERATORS.items()
    }
    for sample in SAMPLE_OBJECTS:
        lines[_kind(sample.key)] += sample.lines
    return {
        kind: [
            orjson.loads(orjson.dumps(built(builder, line.encode(), i)))
            for i, line in enumerate(found)
        ]
        for kind, found in lines.items()
    }


EVENTS = _events()


def _uses() -> Iterator[tuple[str, str, str]]:
    """(panel, operation, field) for every field a panel reads."""
    for panel in PANELS:
        for part in panel["buckets"] + panel["metrics"]:
            if "field" in part:
                yield panel["title"], part["op"], part["field"]
            if "range" in part:
                yield panel["title"], "range", part["range"]["field"]


def _enriched() -> set[str]:
    """What the enrichment pipeline's geoip processors write that a panel reads: the City
    database's location, unless its properties leave it out."""
    pipeline = json.loads(ENRICH_PIPELINE.read_text(encoding="utf-8"))
    return {
        f"{options['target_field']}.location"
        for kind, options in (next(iter(p.items())) for p in pipeline["processors"])
        if kind == "geoip"
        and "database_file" not in options
        and "location" in options.get("properties", ["location"])
    }


def test_the_data_is_the_dashboard_described() -> None:
    assert len(PANELS) == 10
    assert {op for _, op, _ in _uses()} == set(WORKS_ON)
    filtered = {panel["query"].strip() for panel in PANELS} - {""}
    ((name, value),) = DASHBOARD["filter"].items()
    assert filtered == {f'{name} : "{value}"'}
    for part in (m for panel in PANELS for m in panel["metrics"] if "range" in m):
        bounds = part["range"]
        expected = (
            f"{bounds['field']} >= {bounds['from']} and {bounds['field']} < {bounds['below']}"
        )
        assert re.sub(r"\s+", " ", part["filter"]) == expected


@pytest.mark.parametrize(("panel", "op", "name"), list(_uses()))
def test_every_field_a_panel_reads_has_a_type_its_operation_works_on(
    panel: str, op: str, name: str
) -> None:
    # In Elastic's mapping (the integration's and ECS's) and in the index template we ship.
    assert DEFINITIONS[name]["type"] in WORKS_ON[op], (panel, name)
    template = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    mapped = mapped_leaves(template["template"]["mappings"]["properties"])
    assert mapped[name]["type"] in WORKS_ON[op], panel


@pytest.mark.parametrize(("panel", "op", "name"), list(_uses()))
def test_every_field_a_panel_reads_is_in_our_events_or_enriched(
    panel: str, op: str, name: str
) -> None:
    values = [
        value
        for events in EVENTS.values()
        for event in events
        if (value := field(event, name)) is not None
    ]
    if name in _enriched():
        # Only Elasticsearch's geoip processor can tell where an address is (docs/deploy.md,
        # "Elastic's dashboard"): the line has no location.
        assert values == [], (panel, name)
        return
    assert values, f"{panel}: no event carries {name}"
    kind = DEFINITIONS[name]["type"]
    assert [v for v in values if json_type_problem(kind, v) is not None] == [], (panel, name)


def test_the_dashboards_data_view_and_filter_find_the_data_stream_logstash_writes() -> None:
    ((name, value),) = DASHBOARD["filter"].items()
    assert name == "data_stream.dataset"
    for conf in ("pipeline.conf", "pipeline-beats.conf"):
        text = (ROOT / "logstash" / conf).read_text(encoding="utf-8")
        active = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for output in active.split("elasticsearch {")[1:]:
            settings = dict(re.findall(r"^\s*(\w+) => \"?([^\"\n]*)\"?$", output, re.MULTILINE))
            assert settings["data_stream_dataset"] == value, conf
            stream = "-".join(
                settings[f"data_stream_{part}"] for part in ("type", "dataset", "namespace")
            )
            assert fnmatch.fnmatch(stream, DASHBOARD["data_view"]), conf
    # The events say the same, in the field ECS and the integration define for it.
    assert {field(e, "event.dataset") for events in EVENTS.values() for e in events} == {value}


COUNTED_PER_VALUE = sorted(
    {
        bucket["field"]
        for panel in PANELS
        if any(metric["op"] == "count" for metric in panel["metrics"])
        for bucket in panel["buckets"]
        if bucket["op"] == "terms"
    }
)

# docs/deploy.md, "Elastic's dashboard": the filter that leaves the connection logs' lines out of
# the counts, for those who want requests only.
REQUESTS_ONLY = "source.ip"


@pytest.mark.parametrize("name", COUNTED_PER_VALUE)
def test_a_count_per_value_counts_connection_logs_only_as_the_deploy_guide_says(
    name: str,
) -> None:
    # An ALB connection log line is a TLS connection, not a request. Its client is client.ip, as
    # in Elastic's pipeline, so "ELB Top IP Addresses" never counts it; its 15-field lines name
    # the load balancer in aws.elb.name (the contract: `elb` is aws.elb.name in every format), so
    # "ELB Total Requests" counts them under their ALB, which the deploy guide says, with the
    # filter that leaves them out.
    carrying = [e for e in EVENTS["connection"] if field(e, name) is not None]
    if name == "aws.elb.name":
        assert carrying, "no connection-log event names its load balancer"
        assert all(len(field(e, "event.original").split(" ")) >= 15 for e in carrying)
        assert all(field(e, REQUESTS_ONLY) is None for e in carrying)
    else:
        assert carrying == [], f"{len(carrying)} connection-log events carry {name}"
    # The filter keeps every access-log line that the panels count.
    counted = [
        e for kind in ("alb", "classic", "nlb") for e in EVENTS[kind] if field(e, name) is not None
    ]
    assert counted, name
    assert all(field(e, REQUESTS_ONLY) is not None for e in counted), name
    guide = re.sub(r"\s+", " ", DEPLOY_DOC.read_text(encoding="utf-8"))
    assert f"`{REQUESTS_ONLY} : *`" in guide


def test_the_deploy_guide_names_every_panel() -> None:
    # docs/deploy.md, "Elastic's dashboard": a row per panel, and no panel the dashboard lacks.
    assert table_names(DEPLOY_DOC, "Elasticsearch", r"[^`]+") == {p["title"] for p in PANELS}
