"""Elastic's field definitions (tests/data/elastic/) and a checker of events against them.

The definitions are facts taken from elastic/integrations (the elb_logs data stream) and
elastic/ecs, with their source paths and commits in the JSON files; our own documented
``aws.elb.*`` extras are beside them. ``violations(event)`` lists every way an event would not
fit those mappings: an unknown field, a wrong JSON type, a list where one value belongs (or the
reverse), an ``ip`` that is not an address, a ``date`` that is not RFC 3339, a ``long`` out of
range, a negative byte count, an ``event.*`` value ECS does not allow.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support.events import field

__all__ = [
    "ALLOWED_VALUES",
    "DATA",
    "DEFINITIONS",
    "ECS_DEFINITIONS",
    "EXTRAS",
    "INTEGRATION",
    "json_type_problem",
    "mapped_leaves",
    "violations",
]

DATA = Path(__file__).resolve().parents[1] / "data" / "elastic"


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return loaded


INTEGRATION = _load("elb_logs-integration.json")
ECS_DEFINITIONS = _load("ecs-fields.json")
EXTRAS = _load("aws-elb-extras.json")
ALLOWED_VALUES: dict[str, list[str]] = ECS_DEFINITIONS["allowed_values"]

# One table: ECS, then the integration's own definitions, then our extras.
DEFINITIONS: dict[str, dict[str, Any]] = {
    **ECS_DEFINITIONS["fields"],
    **INTEGRATION["fields"],
    **EXTRAS["fields"],
}

_LONG = 2**63
_FLOAT_MAX = 3.4028234663852886e38
# RFC 3339 as Elasticsearch's default date format (strict_date_optional_time) reads it, in UTC:
# ASCII digits only (`\d` alone also matches every other decimal digit of Unicode).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z", re.ASCII)


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else "is not a string"


def _long(value: Any) -> str | None:
    if type(value) is not int:
        return "is not an integer"
    return None if -_LONG <= value < _LONG else "is out of the range of a long"


def _float(value: Any) -> str | None:
    if type(value) not in (int, float):
        return "is not a number"
    if not math.isfinite(value) or abs(value) > _FLOAT_MAX:
        return "is not a finite float"
    return None


def _ip(value: Any) -> str | None:
    if not isinstance(value, str):
        return "is not a string"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "is not an IP address"
    return None


def _date(value: Any) -> str | None:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return "is not an RFC 3339 UTC time"
    try:
        datetime.fromisoformat(value[:19])
    except ValueError:
        return "is not a valid date"
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "keyword": _text,
    "constant_keyword": _text,
    "wildcard": _text,
    "match_only_text": _text,
    "text": _text,
    "long": _long,
    "float": _float,
    "scaled_float": _float,
    "double": _float,
    "ip": _ip,
    "date": _date,
}


def json_type_problem(mapping_type: str, value: Any) -> str | None:
    """Why ``value`` does not fit a field of ``mapping_type``, or None when it fits."""
    return _CHECKS[mapping_type](value)


def violations(event: dict[str, Any]) -> list[str]:
    """Every way ``event`` does not fit Elastic's definitions; empty when it fits."""
    found: list[str] = []
    _walk("", event, found)
    for name, allowed in ALLOWED_VALUES.items():
        value = field(event, name)
        found.extend(
            f"{name}: {item!r} is not an ECS allowed value"
            for item in (value if isinstance(value, list) else [value])
            if item is not None and item not in allowed
        )
    return found


def _walk(path: str, value: Any, found: list[str]) -> None:
    definition = DEFINITIONS.get(path)
    if isinstance(value, dict) and definition is None:
        for key, item in value.items():
            _walk(f"{path}.{key}" if path else key, item, found)
        return
    if definition is None:
        found.append(f"{path}: no such field in Elastic's definitions nor a documented extra")
        return
    if definition.get("array"):
        if not isinstance(value, list):
            found.append(f"{path}: {value!r} is not a list")
            return
        items = value
    elif isinstance(value, list):
        found.append(f"{path}: a list where one value belongs")
        return
    else:
        items = [value]
    for item in items:
        problem = json_type_problem(definition["type"], item)
        if problem is not None:
            found.append(f"{path}: {item!r} {problem} ({definition['type']})")
        elif path.endswith(".bytes") and item < 0:
            found.append(f"{path}: {item!r} is a negative byte count")


def mapped_leaves(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every field of an index mapping's ``properties``, by its dotted name, with its mapping."""
    leaves: dict[str, dict[str, Any]] = {}
    for name, mapping in properties.items():
        path = f"{prefix}.{name}" if prefix else name
        if "properties" in mapping:
            leaves.update(mapped_leaves(mapping["properties"], path))
        else:
            leaves[path] = mapping
    return leaves
