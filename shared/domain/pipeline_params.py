"""The training pipeline's parameters: one definition for the local endpoint, the Azure pipeline component,
the webhook and the services, so every route accepts exactly the same names and types.

Unknown or ill-typed parameters are errors that name the parameter; nothing falls back to a silent default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.domain import schema

# Azure AutoML's primary-metric names this training step honours, and the search metric each means. Only
# AUC_weighted for now (for a binary target it equals ROC AUC); other AutoML names are refused, not ignored.
PRIMARY_METRICS = {
    "AUC_weighted": "roc_auc",
}
# Parameters that are folders, not literals: a folder input of the Azure component (mounted for the job).
FOLDER_INPUTS = {"champion_model"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class ParameterError(ValueError):
    def __init__(self, name: str, message: str):
        super().__init__(f"parameter '{name}': {message}")
        self.name = name


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str  # integer | number | string | columns | metric
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, raw: Any) -> Any:
        if raw is None:
            raise ParameterError(self.name, "must not be null")
        if self.kind == "integer":
            value = _integer(self.name, raw)
        elif self.kind == "number":
            value = _number(self.name, raw)
        elif self.kind == "columns":
            return _columns(self.name, raw)
        elif self.kind == "metric":
            if str(raw) not in PRIMARY_METRICS:
                raise ParameterError(self.name, f"must be one of {', '.join(PRIMARY_METRICS)}; got {raw!r}")
            return str(raw)
        else:
            value = str(raw)
            if self.name in ("experiment_name", "dataset_name") and not _NAME.match(value):
                raise ParameterError(self.name, "must be 1-255 characters of letters, digits, '_', '.', '-'")
            return value[:500]
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(self.name, f"must be at least {self.minimum:g}; got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(self.name, f"must be at most {self.maximum:g}; got {value}")
        return value


def _integer(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ParameterError(name, f"must be an integer; got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and re.fullmatch(r"[+-]?\d+", raw.strip()):
        return int(raw)
    raise ParameterError(name, f"must be an integer; got {raw!r}")


def _number(name: str, raw: Any) -> float:
    if isinstance(raw, bool):
        raise ParameterError(name, f"must be a number; got {raw!r}")
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ParameterError(name, f"must be a number; got {raw!r}") from None


def _columns(name: str, raw: Any) -> str:
    items = raw if isinstance(raw, list) else [c for c in str(raw).split(",")]
    columns = [str(c).strip() for c in items if str(c).strip()]
    unknown = [c for c in columns if c not in schema.FEATURES]
    if unknown:
        raise ParameterError(name, f"unknown column(s) {', '.join(unknown)}; features are {', '.join(schema.FEATURES)}")
    if len(set(columns)) == len(schema.FEATURES):
        raise ParameterError(name, "cannot exclude every feature")
    return ",".join(dict.fromkeys(columns))


PARAMETERS: dict[str, Parameter] = {p.name: p for p in (
    Parameter("dataset_version", "integer", None, "registered dataset version to train on", minimum=1),
    Parameter("dataset_uri", "string", None, "or: a blob/azureml URI of a CSV to train on"),
    Parameter("dataset_name", "string", "bankmarketing", "dataset name (lineage)"),
    Parameter("time_budget_s", "integer", 60, "training search budget in seconds", minimum=1, maximum=86400),
    Parameter("primary_metric", "metric", "AUC_weighted", "metric the search optimizes (Azure AutoML names)"),
    Parameter("exclude_columns", "columns", "", "comma-separated feature columns to leave out (e.g. duration)"),
    Parameter("seed", "integer", 42, "random seed (same seed + data + budget -> same model choice)", minimum=0,
              maximum=2**31 - 1),
    Parameter("experiment_name", "string", "bankmarketing-retrain", "experiment the run is recorded under"),
    Parameter("evaluation_percent", "integer", 10, "rows held out of training (by row hash) to compare the new "
              "model with the live one", minimum=0, maximum=50),
    Parameter("champion_model", "string", None, "the live model (MLflow model folder: a path, or an azureml:// "
              "URI mounted as a folder input) scored on the held-out rows"),
    Parameter("champion_version", "integer", None, "the live model's version (recorded with its figures)", minimum=1),
    Parameter("trigger_id", "string", "", "audit id of the trigger that asked for the run (lineage)"),
    Parameter("reason", "string", "", "why: upload, drift, http, ... (lineage)"),
    Parameter("drift_report", "string", None, "the drift report that asked for the run (lineage)"),
)}


def validate(assignments: dict[str, Any]) -> dict[str, Any]:
    """Parsed values for the given names only; raises ParameterError naming the first bad one."""
    if not isinstance(assignments, dict):
        raise ParameterError("ParameterAssignments", "must be an object of name -> value")
    parsed: dict[str, Any] = {}
    for name, raw in assignments.items():
        definition = PARAMETERS.get(name)
        if definition is None:
            raise ParameterError(name, f"unknown parameter; the pipeline accepts {', '.join(PARAMETERS)}")
        parsed[name] = definition.parse(raw)
    return parsed


def with_defaults(parsed: dict[str, Any]) -> dict[str, Any]:
    return {**{n: p.default for n, p in PARAMETERS.items() if p.default is not None}, **parsed}
