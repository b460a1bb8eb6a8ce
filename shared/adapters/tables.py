"""Dataclass <-> Azure Table entity mapping shared by the stores (nested values are stored as JSON)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

T = TypeVar("T")

_JSON_PREFIX = "json:"


def to_entity(obj: Any, partition: str, row: str) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": row}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if isinstance(value, dict | list | tuple):
            value = _JSON_PREFIX + json.dumps(value, sort_keys=True)
        entity[f.name] = value
    return entity


def from_entity(cls: type[T], entity: dict[str, Any]) -> T:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in entity:
            continue
        value = entity[f.name]
        if isinstance(value, str) and value.startswith(_JSON_PREFIX):
            value = json.loads(value[len(_JSON_PREFIX):])
        elif hasattr(value, "value") and not isinstance(value, str | int | float | bool):
            value = value.value  # EntityProperty (e.g. Int64)
        kwargs[f.name] = value
    return cls(**kwargs)
