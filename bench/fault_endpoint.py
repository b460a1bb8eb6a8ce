"""The pipeline endpoint as the fault campaign sees it, for each pipeline kind (PIPELINE_KIND).

Each kind says (a) which request is a submission, which trigger id it carries and which run its answer names (for
the fault proxy, bench/fault_proxy.py), (b) which app settings point the Functions host at the proxy, and (c) how
to list the runs the endpoint really started, read through the contract a user of that kind has in Azure (the
campaign counts doubled and untracked runs from that list, never from our own records):

- `batch-endpoint` (v2, the default): submissions are `POST {invocation URL}` (locally `/jobs`, the batch
  endpoint's invocation host); runs are read with the ARM Jobs - List call,
  `GET {arm}/{workspace id}/jobs?api-version=2024-04-01` with an ARM-scoped token
  (https://learn.microsoft.com/rest/api/azureml/jobs/list; `{"value": [JobBase…], "nextLink": …}`), the trigger id
  and dataset version from each job's literal inputs (`properties.inputs`, azure-ai-ml's
  `_rest_models.LiteralJobInput`: `{"jobInputType": "literal", "value": …}`).
- `published` (v1, retired): submissions are `POST …/PipelineRuns/PipelineSubmit/{id}`; runs are read from the
  published pipeline's run list, `GET …/PipelineRuns/Pipeline/{id}` (a route the v1 SDK's `PublishedPipeline`
  client uses; not in the public REST docs), trigger id and version from `ParameterAssignments`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from local.pipeline_endpoint import DEFAULT_PIPELINE_ID, local_workspace_id, submit_url
from shared.adapters.credentials import StaticTokenCredential

ARM_SCOPE = "https://management.azure.com/.default"
JOBS_API_VERSION = "2024-04-01"
ENDED = frozenset({"Completed", "Failed", "Canceled"})  # terminal in both kinds' status vocabularies


class PipelineKind(StrEnum):
    BATCH_ENDPOINT = "batch-endpoint"
    PUBLISHED = "published"


@dataclass(frozen=True)
class EndpointRun:
    """One run the endpoint started, whatever its kind's shape."""

    run_id: str  # v2: the job name; v1: the run id
    trigger_id: str
    dataset_version: str
    status: str  # as the endpoint spells it (Completed, Failed, Canceled, NotStarted, Queued, Running, ...)
    experiment: str
    created: str | None = None
    ended: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in ENDED


class SubmitContract(Protocol):
    """What the fault proxy needs to know of a kind: which call it faults and how to label it."""

    def is_submit(self, method: str, path: str) -> bool: ...

    def is_lookup(self, method: str, path: str) -> bool: ...

    def trigger_id(self, body: bytes) -> str: ...

    def run_id(self, answer: bytes) -> str: ...


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _get_ci(mapping: Any, key: str) -> Any:
    """The service matches the invoke body's keys case-insensitively (azure-ai-ml sends camelCase, the REST docs
    PascalCase); so does the bench when it reads a body back."""
    if not isinstance(mapping, dict):
        return None
    for k, v in mapping.items():
        if str(k).lower() == key.lower():
            return v
    return None


def _literal(value: Any) -> str:
    """A job input's value: `{"JobInputType": "Literal", "Value": v}` (invoke body), `{"jobInputType": "literal",
    "value": v}` (job resource), or the bare value."""
    if isinstance(value, dict):
        inner = _get_ci(value, "value")
        return "" if inner is None else str(inner)
    return "" if value is None else str(value)


class BatchEndpointKind:
    """v2: the pipeline component behind a batch endpoint; runs are workspace jobs."""

    kind = PipelineKind.BATCH_ENDPOINT

    def __init__(self, endpoint_base: str, secret: str, workspace_id: str | None = None):
        self.workspace_id = workspace_id or local_workspace_id()
        self._list_url = f"{endpoint_base.rstrip('/')}/{self.workspace_id.strip('/')}/jobs"
        self._credential = StaticTokenCredential(secret)

    @staticmethod
    def host_settings(proxy_base: str) -> dict[str, str]:
        """The invocation URL and the ARM jobs API both through the proxy (lookups are seen, not faulted)."""
        return {"PIPELINE_KIND": PipelineKind.BATCH_ENDPOINT.value, "PIPELINE_ENDPOINT_URL": f"{proxy_base}/jobs",
                "AZUREML_ARM_URL": proxy_base}

    @staticmethod
    def is_submit(method: str, path: str) -> bool:
        return method == "POST" and urlsplit(path).path.rstrip("/") == "/jobs"

    @staticmethod
    def is_lookup(method: str, path: str) -> bool:
        """GET jobs/<name>: the status poll and the lookup before a resubmission are the same call."""
        return method == "GET" and "/workspaces/" in path and "/jobs/" in path

    @staticmethod
    def trigger_id(body: bytes) -> str:
        outer = _get_ci(_json(body), "properties")
        tid = _literal(_get_ci(_get_ci(outer, "InputData"), "trigger_id"))
        if not tid:  # a body without the input: the job name the product derives from it
            name = str(_get_ci(outer, "name") or _get_ci(_json(body), "name") or "")
            tid = name.removeprefix("retrain-") if name.startswith("retrain-") else ""
        return tid

    @staticmethod
    def run_id(answer: bytes) -> str:
        return str(_json(answer).get("name") or "")

    def runs(self) -> list[EndpointRun]:
        token = self._credential.get_token(ARM_SCOPE).token
        url: str | None = f"{self._list_url}?api-version={JOBS_API_VERSION}"
        found: list[EndpointRun] = []
        while url:
            response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            response.raise_for_status()
            page = response.json()
            found.extend(self.parse(job) for job in page.get("value") or [])
            url = page.get("nextLink")
        return found

    @staticmethod
    def parse(job: dict[str, Any]) -> EndpointRun:
        props = job.get("properties") or {}
        inputs = props.get("inputs") or {}
        system = job.get("systemData") or {}
        status = str(props.get("status") or "NotStarted")
        return EndpointRun(
            run_id=str(job.get("name") or str(job.get("id", "")).rsplit("/", 1)[-1]),
            trigger_id=_literal(_get_ci(inputs, "trigger_id")),
            dataset_version=_literal(_get_ci(inputs, "dataset_version")),
            status=status, experiment=str(props.get("experimentName") or ""), created=system.get("createdAt"),
            # the ARM JobBase carries no end time (azure-ai-ml reads times from run history); a finished job's
            # systemData.lastModifiedAt is its last change, at or after its end: an upper bound, exact locally
            ended=system.get("lastModifiedAt") if status in ENDED else None, raw=job)


class PublishedKind:
    """v1 (retired 30 June 2026): a published pipeline's PipelineSubmit."""

    kind = PipelineKind.PUBLISHED

    def __init__(self, endpoint_base: str, secret: str, scope: str = ARM_SCOPE):
        self._list_url = submit_url(endpoint_base).split("/PipelineSubmit/")[0] + f"/Pipeline/{DEFAULT_PIPELINE_ID}"
        self._credential = StaticTokenCredential(secret)
        self._scope = scope  # settings.pipeline_token_scope (ARM by default)

    @staticmethod
    def host_settings(proxy_base: str) -> dict[str, str]:
        return {"PIPELINE_KIND": PipelineKind.PUBLISHED.value, "PIPELINE_ENDPOINT_URL": submit_url(proxy_base)}

    @staticmethod
    def is_submit(method: str, path: str) -> bool:
        return method == "POST" and "/PipelineSubmit/" in path

    @staticmethod
    def is_lookup(method: str, path: str) -> bool:
        """The pipeline's run list, which find_run filters on the trigger id."""
        return method == "GET" and "/PipelineRuns/Pipeline/" in path

    @staticmethod
    def trigger_id(body: bytes) -> str:
        params = _json(body).get("ParameterAssignments")
        return str((params or {}).get("trigger_id", "")) if isinstance(params, dict) else ""

    @staticmethod
    def run_id(answer: bytes) -> str:
        return str(_json(answer).get("Id") or "")

    def runs(self) -> list[EndpointRun]:
        token = self._credential.get_token(self._scope).token
        response = requests.get(self._list_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        response.raise_for_status()
        return [self.parse(run) for run in response.json()]

    @staticmethod
    def parse(run: dict[str, Any]) -> EndpointRun:
        params = run.get("ParameterAssignments") or {}
        status = run.get("Status") or {}
        return EndpointRun(run_id=str(run.get("Id")), trigger_id=str(params.get("trigger_id", "")),
                           dataset_version=str(params.get("dataset_version", "")),
                           status=str(status.get("RunStatus") or "NotStarted"),
                           experiment=str(run.get("ExperimentName") or ""), created=status.get("CreationTime"),
                           ended=status.get("EndTime"), raw=run)


EndpointKind = BatchEndpointKind | PublishedKind


def endpoint_kind(kind: PipelineKind | str, endpoint_base: str, secret: str) -> EndpointKind:
    if PipelineKind(kind) is PipelineKind.BATCH_ENDPOINT:
        return BatchEndpointKind(endpoint_base, secret)
    return PublishedKind(endpoint_base, secret)
