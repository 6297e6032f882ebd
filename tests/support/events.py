"""Reading fields of an emitted event by their dotted ECS name, and every string in it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from elb_log_shipper.formats import EventBuilder


def field(event: dict[str, Any], path: str, missing: Any = None) -> Any:
    """The value at ``path`` (``"http.response.status_code"``), or ``missing`` when absent."""
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value


def built(builder: EventBuilder, raw: bytes, offset: int) -> dict[str, Any]:
    """``builder.build(raw, offset)``, which must give an event (no drop filter matched)."""
    event = builder.build(raw, offset)
    assert event is not None, f"line at {offset} was dropped"
    return event


def strings(node: Any) -> Iterator[str]:
    """Every string of a decoded event, keys included: where a redacted value could hide."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
