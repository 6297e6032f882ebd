"""Golden tests: real lines from other parsers' test suites, with the values those parsers assert.

shared/testdata/peer-fixtures/lines.jsonl holds 59 lines and, per source project, the values that
project expects. Ours must agree except where our contract (shared/reference/elb-log-formats.md)
says otherwise. Every such difference is a rule in ``_agrees`` below, with its reason:

- "no value": peers write ``"-"`` or null; we emit no field at all.
- processing times of ``-1``: some peers keep -1; we emit no duration (it is not one).
- timestamps: some peers truncate to milliseconds; we keep microseconds (theirs is our prefix).
- ``http_method``: one peer lower-cases it; ECS keeps the original case.
- ``http_version``: ``HTTP/1.1`` in some peers; we emit ``1.1`` in ``http.version``.
- ``matched_rule_priority``: some peers make it a number; the contract says string.
- lists (actions, target lists): some peers keep the raw comma/space-separated string.
- trace ids and target lists: one peer keeps the quotes; we strip them.
- no backend: one peer writes ip ``-1`` / port -1; we emit no backend.
- Classic TCP/SSL lines: the bytes are connection bytes, ``source.bytes``/``destination.bytes``
  in the contract, not HTTP body bytes.
- status codes as strings in some peers; ours are integers.
- ``backend_port``: a number in most peers; Elastic's integration maps ``aws.elb.backend.port`` as
  a keyword, so we emit the digits as a string.
- a few fluent-plugin "expected" values are placeholders that do not occur in the line at all:
  those are not comparisons with the line, so they are skipped.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from elb_log_shipper.formats import PARSE_FAILURE_TAG, EventBuilder, parse_line
from elb_log_shipper.privacy import ClientAddress, PrivacyRules
from tests.support.events import field

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "peer-fixtures"
LINES = FIXTURES / "lines.jsonl"

if not LINES.is_file():
    # The fixtures are the project's shared test data, beside the repository. CI always has them.
    if os.environ.get("CI"):
        raise RuntimeError(f"{LINES} is missing: CI must run beside shared/")
    pytest.skip(f"{LINES} is not beside this checkout", allow_module_level=True)

FIELD_PATHS = {
    "timestamp": "@timestamp",
    "type": "aws.elb.type",
    "elb_name": "aws.elb.name",
    "client_ip": "source.ip",
    "client_port": "source.port",
    "backend_ip": "aws.elb.backend.ip",
    "backend_port": "aws.elb.backend.port",
    "request_processing_time": "aws.elb.request_processing_time.sec",
    "backend_processing_time": "aws.elb.backend_processing_time.sec",
    "response_processing_time": "aws.elb.response_processing_time.sec",
    "elb_status_code": "http.response.status_code",
    "backend_status_code": "aws.elb.backend.http.response.status_code",
    "received_bytes": "http.request.body.bytes",
    "sent_bytes": "http.response.body.bytes",
    "http_method": "http.request.method",
    "url": "url.original",
    "http_version": "http.version",
    "user_agent": "user_agent.original",
    "ssl_cipher": "aws.elb.ssl_cipher",
    "ssl_protocol": "aws.elb.ssl_protocol",
    "target_group_arn": "aws.elb.target_group.arn",
    "trace_id": "aws.elb.trace_id",
    "domain_name": "destination.domain",
    "chosen_cert_arn": "aws.elb.chosen_cert.arn",
    "matched_rule_priority": "aws.elb.matched_rule_priority",
    "request_creation_time": "event.start",
    "actions_executed": "aws.elb.action_executed",
    "redirect_url": "aws.elb.redirect_url",
    "error_reason": "aws.elb.error.reason",
    "target_port_list": "aws.elb.target_port",
    "target_status_code_list": "aws.elb.target_status_code",
    "classification": "aws.elb.classification",
    "classification_reason": "aws.elb.classification_reason",
    "conn_trace_id": "aws.elb.connection_trace_id",
}
# Classic TCP/SSL listeners count connection bytes.
TCP_PATHS = {"received_bytes": "source.bytes", "sent_bytes": "destination.bytes"}
# The raw request line: we split it into method, URL and version, compared field by field.
NOT_COMPARED = {"request"}

# Values a peer rewrites (case, prefix, precision), so they need not occur verbatim in the line.
NORMALISED = {"timestamp", "request_creation_time", "http_version", "trace_id", "http_method"}
DURATIONS = {"request_processing_time", "backend_processing_time", "response_processing_time"}
TIMES = {"timestamp", "request_creation_time"}
LISTS = {"actions_executed": ",", "target_port_list": " ", "target_status_code_list": " "}
INTEGERS = {
    "client_port",
    "elb_status_code",
    "backend_status_code",
    "received_bytes",
    "sent_bytes",
}


def _cases() -> list[Any]:
    cases = []
    for number, text in enumerate(LINES.read_text().splitlines()):
        record = json.loads(text)
        for source, expected in record["expected_by_source"].items():
            cases.append(
                pytest.param(record["line"], expected["expected"], id=f"{number}-{source[:40]}")
            )
    return cases


def _absent(theirs: Any) -> bool:
    return theirs is None or theirs in ("-", "", [])


def _agrees(key: str, theirs: Any, ours: Any) -> bool:
    return bool(_compare(key, theirs, ours))


def _compare(key: str, theirs: Any, ours: Any) -> Any:
    if key in DURATIONS | {"backend_ip", "backend_port"} and theirs in (-1, "-1", -1.0):
        return ours is None
    if _absent(theirs):
        return ours is None
    if key in TIMES:
        return isinstance(ours, str) and ours.startswith(str(theirs).rstrip("Z"))
    if key in DURATIONS:
        return ours == float(theirs)
    if key in INTEGERS:
        return ours == int(theirs)
    if key == "backend_port":
        return ours == str(int(theirs))
    if key == "http_method":
        return isinstance(ours, str) and ours.lower() == str(theirs).lower()
    if key == "http_version":
        return ours == str(theirs).removeprefix("HTTP/")
    if key == "matched_rule_priority":
        return ours == str(theirs)
    if key == "trace_id":
        return ours == str(theirs).strip('"')
    if key in LISTS:
        items = theirs if isinstance(theirs, list) else str(theirs).strip('"').split(LISTS[key])
        return ours == [str(item) for item in items]
    return ours == theirs


@pytest.mark.parametrize(("line", "expected"), _cases())
def test_agrees_with_peer_parsers(line: str, expected: dict[str, Any]) -> None:
    event = parse_line(line)
    assert PARSE_FAILURE_TAG not in event.get("tags", []), event.get("error")
    disagreements = {}
    for key, theirs in expected.items():
        if key in NOT_COMPARED:
            continue
        placeholder = not _absent(theirs) and isinstance(theirs, str) and theirs not in line
        if placeholder and key not in NORMALISED:
            # A placeholder in the peer's test, not a value of this line.
            continue
        path = FIELD_PATHS[key]
        if field(event, "aws.elb.protocol") == "tcp":
            path = TCP_PATHS.get(key, path)
        ours = field(event, path)
        if not _agrees(key, theirs, ours):
            disagreements[key] = (theirs, ours)
    assert not disagreements, disagreements


def test_every_fixture_line_is_used() -> None:
    assert len(_cases()) >= 59


def _real_lines() -> list[str]:
    return [json.loads(text)["line"] for text in LINES.read_text().splitlines()]


@pytest.mark.parametrize("line", _real_lines())
def test_the_privacy_rules_change_only_the_client_of_a_real_line(line: str) -> None:
    """With ``CLIENT_IP=truncate``, a real line's event is its event without rules but for the
    client's address: the rules never take a real line for two run together (which scrubs every
    address in it, the target's too), whatever its age and layout (unquoted target lists and
    domain names, fewer fields, later fields)."""
    plain = orjson.dumps(EventBuilder().build(line.encode(), 0)).decode()
    client = field(orjson.loads(plain), "source.ip")
    rules = PrivacyRules(client_ip=ClientAddress.TRUNCATE)
    private = orjson.dumps(EventBuilder(privacy=rules).build(line.encode(), 0)).decode()
    if client is None:
        assert private == plain
        return
    network = ipaddress.ip_network(f"{client}/{24 if '.' in client else 48}", strict=False)
    assert private == plain.replace(client, str(network.network_address))
