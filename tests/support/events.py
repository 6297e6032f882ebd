"""Reading fields of an emitted event by their dotted ECS name."""

from __future__ import annotations

from typing import Any


def field(event: dict[str, Any], path: str, missing: Any = None) -> Any:
    """The value at ``path`` (``"http.response.status_code"``), or ``missing`` when absent."""
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value
