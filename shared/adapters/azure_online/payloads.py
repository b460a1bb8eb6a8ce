"""Smoke records for a deploy; the request and answer format itself is shared/scoring/payloads.py (one format
for every scoring client), re-exported here for the deployer and older imports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.domain import schema
from shared.scoring.payloads import clip, json_type_name, label, mlflow_request, parse_predictions

# Used when a deploy gets no smoke records and the model directory is not local (or has no input example).
FALLBACK_RECORD: dict[str, Any] = dict(schema.EXAMPLE_RECORD)

__all__ = ["FALLBACK_RECORD", "clip", "example_records", "json_type_name", "label", "mlflow_request",
           "parse_predictions"]


def example_records(model_dir: str) -> list[dict[str, Any]]:
    """Smoke records when none are given: the model's saved input example if it is local, else one known row."""
    path = Path(model_dir) / "input_example.json"
    try:
        example = json.loads(path.read_text())
    except (OSError, ValueError):
        return [dict(FALLBACK_RECORD)]
    split = example.get("dataframe_split", example) if isinstance(example, dict) else None
    if isinstance(split, dict) and isinstance(split.get("columns"), list) and isinstance(split.get("data"), list):
        rows = [dict(zip(split["columns"], row, strict=False)) for row in split["data"] if isinstance(row, list)]
        if rows:
            return rows
    return [dict(FALLBACK_RECORD)]
