"""Clients for the training pipeline: submit a run, read its status, find the run a request already started.

Two kinds: `BatchEndpointPipelineClient` (v2, the default: the pipeline component behind a batch endpoint) and
`PublishedPipelineClient` (v1 published pipelines; Azure ML SDK v1 reached end of support on 30 June 2026, kept for
users who still have one: PIPELINE_KIND=published).

Neither service deduplicates a submission: the same body sent twice starts two runs (Azure offers no idempotency key
on either call). Exactly one run per request is the caller's job: `find_run(trigger_id)` looks up the run a request
started before anything is submitted again (shared.services.dispatch), and the v2 client names each job after its
trigger (`job_name`), so a repeated invoke is refused with 409 and answered with the existing job.

v1 contract (Azure ML "Run a published pipeline using REST"):
  POST {region}.api.azureml.ms/pipelines/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/
       Microsoft.MachineLearningServices/workspaces/{ws}/PipelineRuns/PipelineSubmit/{pipelineId}
  Authorization: Bearer <Azure AD token for https://management.azure.com/.default>
  {"ExperimentName": ..., "RunSource": "SDK", "ParameterAssignments": {...}, "DataPathAssignments": {...}}
  -> 200 {"Id": "<run id>", "Status": {...}, ...}
  GET  .../PipelineRuns/{runId} -> the run, with its status.
The credential is any object with `get_token(scope)` (azure-identity's DefaultAzureCredential in Azure, a
local token credential on the embedded stack); the client never reads secrets itself.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from shared import redaction
from shared.domain.outcomes import ENDED, PipelineStatus
from shared.domain.pipeline_params import FOLDER_INPUTS
from shared.ports import PipelineError, RunLookupUnavailable  # errors the dispatcher tells apart; raised here

_RETRY_STATUS = {429, 500, 502, 503, 504}


def _seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


class PipelineAuthError(PipelineError):
    pass


class PipelineThrottledError(PipelineError):
    pass


class PipelineUnavailableError(PipelineError):
    pass


@dataclass(frozen=True)
class PipelineRun:
    run_id: str
    status: str  # run-history status: NotStarted, Queued, Running, Completed, Failed, Canceled
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def outputs(self) -> dict[str, Any]:
        return self.raw.get("Outputs") or {}

    @property
    def finished(self) -> bool:
        return self.status in ENDED


# Azure ML's spellings (left, as the services send them) -> ours (shared.domain.outcomes.PipelineStatus).
_STATUS_CODES = {"Finished": PipelineStatus.COMPLETED, "NotStarted": PipelineStatus.NOT_STARTED,
                 "Running": PipelineStatus.RUNNING, "Failed": PipelineStatus.FAILED,
                 "Canceled": PipelineStatus.CANCELED, "Preparing": PipelineStatus.QUEUED,
                 "Queued": PipelineStatus.QUEUED, "Completed": PipelineStatus.COMPLETED}


def parse_run(body: dict[str, Any]) -> PipelineRun:
    run_id = body.get("Id") or body.get("RunId")
    if not run_id:
        raise PipelineError(f"pipeline service answered without a run Id (keys: {sorted(body)[:10]})")
    status = body.get("Status")
    if isinstance(status, dict):
        status = status.get("RunStatus") or _STATUS_CODES.get(str(status.get("StatusCode")), PipelineStatus.UNKNOWN)
    return PipelineRun(run_id=str(run_id), status=str(status or PipelineStatus.NOT_STARTED), raw=body)


ARM_SCOPE = "https://management.azure.com/.default"
ML_SCOPE = "https://ml.azure.com/.default"


class _AzureMLRest:
    """Bearer-token calls with retries: shared by the v1 published-pipeline and v2 batch-endpoint clients."""

    def __init__(self, credential: Any, *, scope: str, session: requests.Session | None = None,
                 timeout_s: float = 30.0, max_retries: int = 4, backoff_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep):
        self._credential = credential
        self._scope = scope
        self._session = session or requests.Session()
        self._timeout = timeout_s
        self._max_retries = max_retries
        self._backoff = backoff_s
        self._sleep = sleep

    def _call(self, method: str, url: str, body: dict[str, Any] | None, *, scope: str | None = None,
              headers: dict[str, str] | None = None, repeatable: bool = True) -> Any:
        """`repeatable=False`: a 5xx is not tried again here (the service may have acted on the request before it
        failed; a POST that can start a run is only sent again after the caller has looked the run up)."""
        shown = redaction.redact_url(url)
        for attempt in range(self._max_retries + 1):
            token = self._credential.get_token(scope or self._scope).token
            headers = {**(headers or {}), "Authorization": f"Bearer {token}", "Accept": "application/json"}
            try:
                response = self._session.request(method, url, json=body, headers=headers, timeout=self._timeout)
            except requests.ConnectionError as exc:
                # Nothing reached the service, so a retry cannot submit twice.
                if attempt < self._max_retries:
                    self._sleep(self._backoff * 2**attempt)
                    continue
                raise PipelineUnavailableError(f"{method} {shown}: cannot connect to the pipeline service "
                                               f"({type(exc).__name__}) after {attempt + 1} tries") from None
            except requests.Timeout:
                maybe = " (not retried: the run may have been submitted)" if method == "POST" else ""
                raise PipelineUnavailableError(f"{method} {shown}: no answer within {self._timeout:.0f}s{maybe}",
                                               maybe_started=method == "POST") from None
            status = response.status_code
            if status < 300:
                try:
                    return response.json()
                except ValueError:
                    raise PipelineError(f"{method} {shown}: answer {status} is not JSON", status) from None
            if status in (401, 403):
                raise PipelineAuthError(
                    f"{method} {shown}: {status} {'Unauthorized' if status == 401 else 'Forbidden'}: the identity "
                    "needs a valid token for the scope and the AzureML Data Scientist role on the workspace",
                    status)
            if status in _RETRY_STATUS and attempt < self._max_retries and (repeatable or status == 429):
                self._sleep(self._retry_after(response, attempt))
                continue
            # a service error may echo the request (its bearer token, a SAS): masked before it reaches a message
            detail = redaction.redact(_error_detail(response),
                                      extra=(token,) if len(token) >= redaction.MIN_SECRET_CHARS else ())
            if status == 429:
                raise PipelineThrottledError(f"{method} {shown}: throttled (429) after {attempt + 1} tries{detail}",
                                             status, _seconds(response.headers.get("Retry-After")))
            if status >= 500:
                raise PipelineUnavailableError(
                    f"{method} {shown}: pipeline service error {status} after {attempt + 1} tries{detail}", status,
                    _seconds(response.headers.get("Retry-After")), maybe_started=method == "POST")
            raise PipelineError(f"{method} {shown}: rejected with {status}{detail}", status)
        raise AssertionError("unreachable")

    def _retry_after(self, response: requests.Response, attempt: int) -> float:
        header = response.headers.get("Retry-After")
        if header:
            try:
                return min(float(header), 60.0)
            except ValueError:
                pass
        return self._backoff * 2**attempt


class PublishedPipelineClient(_AzureMLRest):
    """v1 (retired: Azure ML SDK v1 reached end of support on 30 June 2026; PIPELINE_KIND=published keeps it for
    workspaces that still have published pipelines): a published pipeline (`…/PipelineRuns/PipelineSubmit/{id}`) or a
    pipeline endpoint (`…/PipelineRuns/PipelineEndpointSubmit/Id/{id}`); both take the same body and ARM-scoped token.

    PipelineSubmit has no idempotency key and no caller-chosen run id, so a POST that failed with a 5xx is not sent
    again here: it may have started a run, which `find_run` looks up first (shared.services.dispatch)."""

    def __init__(self, submit_url: str, credential: Any, *, scope: str = ARM_SCOPE, **kwargs: Any):
        if "/PipelineRuns/" not in submit_url:
            raise ValueError("PIPELINE_ENDPOINT_URL must be a published pipeline URL ending in "
                             "/PipelineRuns/PipelineSubmit/{pipeline id} or "
                             "/PipelineRuns/PipelineEndpointSubmit/Id/{endpoint id}")
        super().__init__(credential, scope=scope, **kwargs)
        self.submit_url = submit_url.rstrip("/")
        self._runs_base, _, route = self.submit_url.partition("/PipelineRuns/")
        self._runs_base += "/PipelineRuns"
        kind, _, pipeline_id = route.partition("/")
        self._pipeline_id = pipeline_id if kind == "PipelineSubmit" else None

    def submit(self, *, experiment: str, parameters: dict[str, Any],
               data_paths: dict[str, dict[str, str]] | None = None) -> PipelineRun:
        body: dict[str, Any] = {"ExperimentName": experiment, "RunSource": "SDK",
                                "ParameterAssignments": {k: str(v) for k, v in parameters.items()}}
        if data_paths:
            body["DataPathAssignments"] = data_paths
        return parse_run(self._call("POST", self.submit_url, body, repeatable=False))

    def get_run(self, run_id: str) -> PipelineRun:
        return parse_run(self._call("GET", f"{self._runs_base}/{run_id}", None))

    def find_run(self, trigger_id: str) -> PipelineRun | None:
        """The run of this published pipeline whose `trigger_id` parameter is `trigger_id` (the newest if several),
        else None. Lists the pipeline's runs: GET …/PipelineRuns/Pipeline/{pipelineId}, the route the local endpoint
        serves. NOT confirmed: Microsoft's public REST docs describe PipelineSubmit and the run GET only, and no SDK
        source at hand shows this list route or whether the service pages a long list (a lookup could then miss a
        run beyond the first page)."""
        if self._pipeline_id is None:
            raise RunLookupUnavailable(
                "PIPELINE_ENDPOINT_URL is a v1 pipeline endpoint (PipelineEndpointSubmit): its runs cannot be listed "
                "by trigger id, so a submission that may have started a run cannot be confirmed; use the published "
                "pipeline's PipelineSubmit URL or the v2 batch endpoint")
        answer = self._call("GET", f"{self._runs_base}/Pipeline/{self._pipeline_id}", None)
        runs = (answer.get("value") or []) if isinstance(answer, dict) else answer
        mine = [run for run in runs if isinstance(run, dict)
                and str((run.get("ParameterAssignments") or {}).get("trigger_id", "")) == trigger_id]
        if not mine:
            return None
        return parse_run(max(mine, key=lambda run: str((run.get("Status") or {}).get("CreationTime") or "")))


def _error_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()[:200]
        return f": {text}" if text else ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f": {error.get('code', '')} {error.get('message', '')}".rstrip()
    return f": {str(body)[:200]}"


_V2_STATUS = {"NotStarted": PipelineStatus.NOT_STARTED, "Starting": PipelineStatus.QUEUED,
              "Provisioning": PipelineStatus.QUEUED, "Preparing": PipelineStatus.QUEUED,
              "Queued": PipelineStatus.QUEUED, "Running": PipelineStatus.RUNNING,
              "Finalizing": PipelineStatus.RUNNING, "CancelRequested": PipelineStatus.RUNNING,
              "Completed": PipelineStatus.COMPLETED, "Failed": PipelineStatus.FAILED,
              "Canceled": PipelineStatus.CANCELED, "NotResponding": PipelineStatus.RUNNING,
              "Paused": PipelineStatus.RUNNING}


# The name rule of Microsoft.MachineLearningServices resources (name pattern ^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$ in
# github.com/Azure/bicep-types-az generated/machinelearningservices/.../types.md); that the batch endpoint checks a
# given job name against exactly this rule is not confirmed (the installed azure-ai-ml does not check it client-side).
_JOB_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}")
_JOB_NAME_PREFIX = "retrain-"


def job_name(trigger_id: str) -> str:
    """The v2 job name of a request: `retrain-<trigger id>`, so one request maps to exactly one job. Job names are
    unique in a workspace, so a second invoke with the same name is refused (409) instead of starting a second job.
    An id the ARM rule ^[a-zA-Z0-9][a-zA-Z0-9\\-_]{0,254}$ does not allow as is gets its other characters
    replaced and a digest of the whole id appended, so two different ids never share a name."""
    name = _JOB_NAME_PREFIX + trigger_id
    if _JOB_NAME.fullmatch(name):
        return name
    digest = hashlib.sha256(trigger_id.encode()).hexdigest()[:16]
    cleaned = re.sub(r"[^a-zA-Z0-9\-_]", "-", trigger_id)[:255 - len(_JOB_NAME_PREFIX) - len(digest) - 1]
    return f"{_JOB_NAME_PREFIX}{cleaned}-{digest}"


def parse_job(body: dict[str, Any]) -> PipelineRun:
    name = body.get("name") or str(body.get("id", "")).rsplit("/", 1)[-1]
    if not name:
        raise PipelineError(f"batch endpoint answered without a job name (keys: {sorted(body)[:10]})")
    status = (body.get("properties") or {}).get("status") or "NotStarted"
    return PipelineRun(run_id=name, status=str(_V2_STATUS.get(status, PipelineStatus.UNKNOWN)), raw=body)


class BatchEndpointPipelineClient(_AzureMLRest):
    """v2: the training pipeline component deployed behind a batch endpoint.

    Invocation (documented batch-endpoint REST contract,
    https://learn.microsoft.com/azure/machine-learning/how-to-access-data-batch-endpoints-jobs): POST {invocation
    URL} with a token for https://ml.azure.com/.default and `{"properties": {"InputData": {name: {"JobInputType":
    "Literal", "Value": v} | {"JobInputType": "UriFile", "Uri": "azureml://datastores/{ds}/paths/{path}"}},
    "properties": {"experimentName": …}}}`; the answer is the batch job (`name`, `properties.status`). Status: the
    workspace's jobs API on ARM (`{workspace id}/jobs/{name}?api-version=…`, ARM-scoped token; Jobs - Get,
    https://learn.microsoft.com/rest/api/azureml/jobs/get, operation Jobs_Get, default api-version 2024-04-01).

    Exactly one job per request: the job is named `job_name(trigger id)` and the name travels as the batch job's
    `name` (azure-ai-ml: `BatchEndpointOperations.invoke(job_name=…)` puts it under EndpointYamlFields.BATCH_JOB_NAME,
    azure/ai/ml/operations/_batch_endpoint_operations.py, and BatchJobSchema.make writes it as wire `name` inside
    `properties`, azure/ai/ml/_schema/_deployment/batch/batch_job.py). `find_run` GETs that name (404: no job); a 409
    on invoke (the name is taken: this request's job exists) is answered with that job. That the invocation host
    answers a taken name with 409 is what ARM does for job names (unique per workspace) but is not stated in the
    batch-endpoint docs: not confirmed on Azure.

    The experiment the job runs under goes where azure-ai-ml's `BatchEndpointOperations.invoke(experiment_name=…)`
    puts it: the batch job's own `properties` dict, `properties.properties.experimentName`
    (github.com/Azure/azure-sdk-for-python, sdk/ml/azure-ai-ml/azure/ai/ml/operations/_batch_endpoint_operations.py:
    `properties["experimentName"] = experiment_name`, loaded under EndpointYamlFields.BATCH_JOB_PROPERTIES). It is
    also the `experiment_name` input, which the training step logs its MLflow run under.
    """

    def __init__(self, invocation_url: str, credential: Any, *, workspace_id: str, deployment: str | None = None,
                 arm_url: str = "https://management.azure.com", api_version: str = "2024-04-01", **kwargs: Any):
        parts = urlsplit(invocation_url)
        if parts.scheme != "https" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError("PIPELINE_ENDPOINT_URL must be the batch endpoint's https invocation URL")
        if "/workspaces/" not in workspace_id:
            raise ValueError("AZUREML_WORKSPACE_ID must be the workspace's ARM resource id "
                             "(/subscriptions/…/resourceGroups/…/providers/Microsoft.MachineLearningServices/"
                             "workspaces/…)")
        super().__init__(credential, scope=ML_SCOPE, **kwargs)
        self.submit_url = invocation_url.rstrip("/")
        self._jobs = f"{arm_url.rstrip('/')}/{workspace_id.strip('/')}/jobs"
        self._api_version = api_version
        self._deployment = deployment

    @staticmethod
    def body(*, experiment: str, parameters: dict[str, Any],
             data_paths: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
        inputs: dict[str, Any] = {"experiment_name": {"JobInputType": "Literal", "Value": experiment}}
        inputs.update({name: {"JobInputType": "UriFolder", "Uri": value} if name in FOLDER_INPUTS
                       else {"JobInputType": "Literal", "Value": value} for name, value in parameters.items()})
        for name, ref in (data_paths or {}).items():
            inputs[name] = {"JobInputType": "UriFile",
                            "Uri": f"azureml://datastores/{ref['DataStoreName']}/paths/{ref['RelativePath']}"}
        return {"properties": {"InputData": inputs, "properties": {"experimentName": experiment}}}

    def submit(self, *, experiment: str, parameters: dict[str, Any],
               data_paths: dict[str, dict[str, str]] | None = None) -> PipelineRun:
        """Invokes the batch endpoint with the job named after `parameters["trigger_id"]` (without one, the service
        names the job and a repeat would start a second one: such a POST is not sent again on a 5xx)."""
        headers = {"azureml-model-deployment": self._deployment} if self._deployment else None
        body = self.body(experiment=experiment, parameters=parameters, data_paths=data_paths)
        trigger_id = str(parameters.get("trigger_id") or "")
        if trigger_id:
            body["properties"]["name"] = job_name(trigger_id)
        try:
            return parse_job(self._call("POST", self.submit_url, body, headers=headers, repeatable=bool(trigger_id)))
        except PipelineError as exc:
            if exc.status != 409 or not trigger_id:
                raise
            taken = exc
        found = self.find_run(trigger_id)  # the name is taken: the job this request started earlier
        if found is None:
            # the job exists but cannot be read yet (or was just deleted): not a refusal of the request; it stays
            # unconfirmed and is looked up again later
            raise PipelineUnavailableError(f"job name {job_name(trigger_id)} is taken (409) but GET "
                                           f"jobs/{job_name(trigger_id)} found no such job yet: {taken}",
                                           maybe_started=True)
        return found

    def get_run(self, run_id: str) -> PipelineRun:
        return parse_job(self._call("GET", f"{self._jobs}/{run_id}?api-version={self._api_version}", None,
                                    scope=ARM_SCOPE))

    def find_run(self, trigger_id: str) -> PipelineRun | None:
        """The job this request started (GET jobs/<job_name(trigger_id)>), or None when the workspace has none
        (404); any other failure raises as every call does."""
        try:
            return self.get_run(job_name(trigger_id))
        except PipelineError as exc:
            if exc.status == 404:
                return None
            raise
