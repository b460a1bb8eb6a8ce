"""The training pipeline's parameters: one definition for the local endpoint, the Azure pipeline component,
the webhook and the services, so every route accepts exactly the same names and types.

Unknown or ill-typed parameters are errors that name the parameter; nothing falls back to a silent default.

Two lists: `PARAMETERS` is everything the SERVICE sends to the pipeline; `CALLER_PARAMETERS` is the allowlist of
what a caller (the webhook's `parameters`) may choose. What gets compared or deployed (the champion, the held-out
share, the dataset, the lineage) is never a caller's choice. Every string parameter matches a strict pattern (or
an enum): the Azure ML command component substitutes `${{inputs.x}}` into its command line as text, so a value
that passes here holds no shell metacharacter, quote, whitespace or `${{`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.domain import schema
from shared.domain.evaluation_slice import EvaluationRows

# Azure AutoML's primary-metric names this training step honours, and the search metric each means. Only
# AUC_weighted for now (for a binary target it equals ROC AUC); other AutoML names are refused, not ignored.
PRIMARY_METRICS = {
    "AUC_weighted": "roc_auc",
}
# Parameters that are folders, not literals: a folder input of the Azure component (mounted for the job).
FOLDER_INPUTS = {"champion_model"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
# An audit / request id (shared.domain.records.new_id: `http-1733531234567-1a2b3c4d`), or a test's shorter one.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# A stored drift report, `<container>/<yyyy>/<mm>/<dd>/<id>.html` (shared.bootstrap.report_writer): path segments
# of letters, digits, '_', '.', '-', never '.' or '..' alone.
_REPORT = re.compile(r"^(?=.{1,1024}$)(?!.*(?:^|/)\.{1,2}(?:/|$))"
                     r"[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*){0,15}$")
# The live model's folder as the registry has it: an absolute local path (the local stack, passed in an argument
# list, never a shell) or an azureml:// / https:// URI (Azure: a `uri_folder` input; the command line gets the
# mount path Azure chooses, not this text). Still no quote, backtick, `$`, `;`, `|`, `&`, `<`, `>`, backslash,
# control character, line separator or `..` segment.
_FOLDER = re.compile(r"^(?!.*(?:^|/)\.\.(?:/|$))(?:/|azureml://|https://)"
                     r"[^\x00-\x1f\x7f-\x9f\"'`$;|&<>\\\u2028\u2029]{1,1000}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# A URI of a CSV (http(s)/azureml/wasbs/abfss), no quote, whitespace, `$`, `;`, `|`, `&`, backtick or backslash.
_URI = re.compile(r"^(?:https?|azureml|wasbs?|abfss?)://[A-Za-z0-9_./:@+=~%?-]{1,1000}$")
_INTEGER = re.compile(r"^[+-]?[0-9]{1,18}$")  # ASCII digits only ("²".isdigit() is True; int("²") fails)
# The webhook's default cap on `time_budget_s` (setting MAX_TIME_BUDGET_S).
DEFAULT_MAX_TIME_BUDGET_S = 1800


class Reason(StrEnum):
    """Why a run was asked for: the trigger kind, the only `reason` the pipeline gets (a webhook caller's free-text
    `reason` stays in the trigger's audit record)."""

    UPLOAD = "upload"
    DRIFT = "drift"
    HTTP = "http"
    MANUAL = "manual"


# The kinds whose value is one of a few words, each word list once (the Azure component's input enums too).
CHOICES: dict[str, tuple[str, ...]] = {"metric": tuple(PRIMARY_METRICS), "reason": tuple(r.value for r in Reason),
                                       "rows": tuple(r.value for r in EvaluationRows)}
_CHOICE_NOTES = {"reason": " (the trigger kind)"}

# What each string parameter must look like (every one has an entry: tests/unit/test_pipeline_params.py).
PATTERNS: dict[str, re.Pattern] = {
    "experiment_name": _NAME, "dataset_name": _NAME, "trigger_id": _ID, "drift_report": _REPORT,
    "champion_model": _FOLDER, "champion_digest": _DIGEST, "dataset_uri": _URI,
}
_PATTERN_HELP = {
    "experiment_name": "1-255 characters of letters, digits, '_', '.', '-'",
    "dataset_name": "1-255 characters of letters, digits, '_', '.', '-'",
    "trigger_id": "an id of 1-128 letters, digits, '_', '-'",
    "drift_report": "a report path like reports/2026/01/31/tmr-1-ab.html (letters, digits, '_', '.', '-', '/')",
    "champion_model": "an absolute path or an azureml:// / https:// URI without quotes, '$', ';', '|', '&' or '..'",
    "champion_digest": "sha256: and 64 lowercase hex digits",
    "dataset_uri": "an http(s)/azureml/wasbs/abfss URI without quotes, whitespace, '$', ';', '|' or '&'",
}


class ParameterError(ValueError):
    """Raised before anything is sent: a dispatcher treats it as a refusal (like a 400), not a maybe-started run."""

    status = 400
    maybe_started = False

    def __init__(self, name: str, message: str):
        name = clip(name)
        super().__init__(f"parameter '{name}': {message}")
        self.name = name
        self.message = message


def clip(value: Any, limit: int = 60) -> str:
    """A caller's value shown in an error: bounded, one line, printable (a 1 MB name must not become a 1 MB
    detail, an audit row over the table's limit, and a 500)."""
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates are not storable text
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "…"


def shown(raw: Any) -> str:
    return repr(clip(raw)) if isinstance(raw, str) else clip(raw)


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str  # integer | number | string | columns | metric | reason | rows
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
        elif self.kind in CHOICES:
            choices = CHOICES[self.kind]
            if not isinstance(raw, str) or raw not in choices:
                raise ParameterError(self.name, f"must be one of {', '.join(choices)}{_CHOICE_NOTES.get(self.kind, '')}"
                                                f"; got {shown(raw)}")
            return raw
        else:
            if not isinstance(raw, str | int) or isinstance(raw, bool):
                raise ParameterError(self.name, f"must be a string; got {shown(raw)}")
            value = str(raw)
            pattern = PATTERNS[self.name]
            if not pattern.fullmatch(value):  # fullmatch: `$` alone would let a trailing newline through
                raise ParameterError(self.name, f"must be {_PATTERN_HELP[self.name]}; got {shown(raw)}")
            return value
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(self.name, f"must be at least {self.minimum:g}; got {clip(value, 30)}")
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(self.name, f"must be at most {self.maximum:g}; got {clip(value, 30)}")
        return value


def _integer(name: str, raw: Any) -> int:
    """An int, an integral finite float, or a string of at most 18 ASCII digits; nothing else (bools, NaN,
    Infinity, "²", a 400-digit string) gets further than a ParameterError."""
    if isinstance(raw, bool):
        raise ParameterError(name, f"must be an integer; got {shown(raw)}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        return int(raw.strip())
    raise ParameterError(name, f"must be an integer; got {shown(raw)}")


def _number(name: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ParameterError(name, f"must be a number; got {shown(raw)}")
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(name, f"must be a number; got {shown(raw)}") from None
    if not math.isfinite(value):
        raise ParameterError(name, f"must be a finite number; got {shown(raw)}")
    return value


def _columns(name: str, raw: Any) -> str:
    if not isinstance(raw, list | str):
        raise ParameterError(name, f"must be a comma-separated string or a list of feature names; got {shown(raw)}")
    items = raw if isinstance(raw, list) else raw.split(",")
    if any(not isinstance(c, str) for c in items):
        raise ParameterError(name, "must list feature names (strings)")
    columns = [c.strip() for c in items if c.strip()]
    unknown = [c for c in columns if c not in schema.FEATURES]
    if unknown:
        names = ", ".join(clip(c, 40) for c in unknown[:5]) + (", …" if len(unknown) > 5 else "")
        raise ParameterError(name, f"unknown column(s) {names}; features are {', '.join(schema.FEATURES)}")
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
    Parameter("evaluation_rows", "rows", "auto", "which rows are held out: hash, newest (file order; then "
              "refitted on all rows) or auto (newest when the file is in time order)"),
    Parameter("champion_model", "string", None, "the live model (MLflow model folder: a path, or an azureml:// "
              "URI mounted as a folder input) scored on the held-out rows"),
    Parameter("champion_version", "integer", None, "the live model's version (recorded with its figures)", minimum=1),
    Parameter("champion_digest", "string", None, "the live model folder's registered content hash: the step "
              "scores the folder only if its bytes hash to this"),
    Parameter("trigger_id", "string", None, "audit id of the trigger that asked for the run (lineage)"),
    Parameter("reason", "reason", None, "the trigger kind: upload, drift, http or manual (lineage)"),
    Parameter("drift_report", "string", None, "the drift report that asked for the run (lineage)"),
)}

# What a caller may choose (the webhook's `parameters`); everything else is the service's to set.
CALLER_PARAMETERS = ("time_budget_s", "seed", "exclude_columns", "primary_metric")
# What the service's own triggers may add to a request (the drift check: the report that asked for the run).
SERVICE_PARAMETERS = ("drift_report",)


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


def validate_caller(assignments: Any, *, max_time_budget_s: int = DEFAULT_MAX_TIME_BUDGET_S,
                    allowed: tuple[str, ...] = CALLER_PARAMETERS) -> dict[str, Any]:
    """A caller's choices: only the allowlisted names (`allowed`), typed, `time_budget_s` at most the service's
    cap. Raises ParameterError naming the first refused parameter."""
    if not isinstance(assignments, dict):
        raise ParameterError("parameters", "must be an object of name -> value")
    for name in assignments:
        if name not in allowed:
            if name in PARAMETERS:
                raise ParameterError(name, f"is set by the service, not by the caller; a caller may set "
                                           f"{', '.join(allowed)}")
            raise ParameterError(name, f"unknown parameter; a caller may set {', '.join(allowed)}")
    parsed = validate(assignments)
    budget = parsed.get("time_budget_s")
    if budget is not None and budget > max_time_budget_s:
        raise ParameterError("time_budget_s", f"must be at most {max_time_budget_s} (the service's "
                                              f"MAX_TIME_BUDGET_S); got {clip(budget, 30)}")
    return parsed


def with_defaults(parsed: dict[str, Any]) -> dict[str, Any]:
    return {**{n: p.default for n, p in PARAMETERS.items() if p.default is not None}, **parsed}
