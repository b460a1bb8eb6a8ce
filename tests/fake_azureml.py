"""pytest-httpserver handlers playing Azure ML's pipeline services as the v2 contract and the v1 REST docs describe
them, and NOT kinder: no deduplication by trigger id (the same body twice starts two runs), a v2 job name taken is
refused with 409, the ARM jobs GET needs its api-version and an ARM-audience token, the invocation an ml.azure.com one.
Tests use them to check the product's own exactly-once logic against a server that gives it no help."""

from __future__ import annotations

import itertools
import json
import re
import threading
from datetime import UTC, datetime

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from shared.adapters.credentials import scoped_token
from shared.adapters.pipeline_client import ARM_SCOPE, ML_SCOPE

SECRET = "local-secret"
WORKSPACE = ("/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/"
             "workspaces/ws-1")
V1_RUNS = ("/pipelines/v1.0/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/"
           "workspaces/ws-1/PipelineRuns")
PIPELINE_ID = "0f5a2c1e-9b1d-4a43-8a55-2d7e1f0c9e11"
API_VERSION = "2024-04-01"


def error(status: int, code: str, message: str) -> Response:
    """Azure's error envelope."""
    return Response(json.dumps({"error": {"code": code, "message": message}}), status,
                    content_type="application/json")


def _json(body) -> Response:
    return Response(json.dumps(body), 200, content_type="application/json")


def _bearer(request: Request, scope: str) -> bool:
    return request.headers.get("Authorization") == f"Bearer {scoped_token(SECRET, scope)}"


class Stall:
    """Makes the next create answer only after `release()` (or 30 s): the run exists, the answer is late, so a
    client with a shorter timeout loses it. pytest-httpserver serves one request at a time, so release before the
    next call."""

    def __init__(self):
        self._armed = False
        self._go = threading.Event()

    def arm(self) -> None:
        self._armed, self._go = True, threading.Event()

    def release(self) -> None:
        self._go.set()

    def __call__(self) -> None:
        if self._armed:
            self._armed = False
            self._go.wait(30)


class BatchWorkspace:
    """v2: the batch endpoint's invocation host (POST /jobs) and the ARM jobs GET (/arm{workspace}/jobs/{name})."""

    def __init__(self, httpserver: HTTPServer):
        self.jobs: dict[str, dict] = {}
        self.invokes = 0
        self.lookup_failures: list[Response] = []  # answers for the next lookups, before the real ones
        self.stall = Stall()
        self._generated = itertools.count(1)
        httpserver.expect_request("/jobs", method="POST").respond_with_handler(self.invoke)
        httpserver.expect_request(re.compile(re.escape(f"/arm{WORKSPACE}/jobs/") + r"[^/]+"),
                                  method="GET").respond_with_handler(self.get)
        self.invocation_url = httpserver.url_for("/jobs")
        self.arm_url = httpserver.url_for("/arm")

    def invoke(self, request: Request) -> Response:
        if not _bearer(request, ML_SCOPE):
            return error(401, "AuthenticationFailed", "token audience is not https://ml.azure.com")
        self.invokes += 1
        properties = (request.get_json(silent=True) or {}).get("properties") or {}
        name = properties.get("name") or f"batchjob-{next(self._generated)}"
        if name in self.jobs:
            return error(409, "UserError", f"A job with name '{name}' already exists.")
        self.jobs[name] = {"id": f"{WORKSPACE}/jobs/{name}", "name": name,
                           "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                           "properties": {"jobType": "Pipeline", "status": "NotStarted",
                                          "inputData": properties.get("InputData") or {}},
                           "systemData": {"createdAt": datetime.now(UTC).isoformat()}}
        self.stall()
        return _json(self.jobs[name])

    def get(self, request: Request) -> Response:
        if not _bearer(request, ARM_SCOPE):
            return error(401, "AuthenticationFailed", "token audience is not https://management.azure.com")
        if request.args.get("api-version") != API_VERSION:
            return error(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
        if self.lookup_failures:
            return self.lookup_failures.pop(0)
        name = request.path.rsplit("/", 1)[-1]
        if name not in self.jobs:
            return error(404, "UserError", f"Job {name} was not found.")
        return _json(self.jobs[name])


class PublishedPipeline:
    """v1: PipelineSubmit creates a run for every POST; the pipeline's runs are listed at …/Pipeline/{id}."""

    def __init__(self, httpserver: HTTPServer):
        self.runs: list[dict] = []
        self.stall = Stall()
        self.lookup_failures: list[Response] = []  # answers for the next lookups, before the real ones
        httpserver.expect_request(f"{V1_RUNS}/PipelineSubmit/{PIPELINE_ID}", method="POST").respond_with_handler(
            self.submit)
        httpserver.expect_request(f"{V1_RUNS}/Pipeline/{PIPELINE_ID}", method="GET").respond_with_handler(self.list)
        self.submit_url = httpserver.url_for(f"{V1_RUNS}/PipelineSubmit/{PIPELINE_ID}")

    @property
    def invokes(self) -> int:
        return len(self.runs)

    def submit(self, request: Request) -> Response:
        if not _bearer(request, ARM_SCOPE):
            return error(401, "AuthenticationFailed", "Missing or invalid bearer token.")
        body = request.get_json(silent=True) or {}
        run = {"Id": f"run-{len(self.runs) + 1}", "PipelineId": PIPELINE_ID,
               "ParameterAssignments": body.get("ParameterAssignments") or {},
               "Status": {"StatusCode": "NotStarted", "RunStatus": "NotStarted",
                          "CreationTime": datetime.now(UTC).isoformat()}}
        self.runs.append(run)
        self.stall()
        return _json(run)

    def list(self, request: Request) -> Response:
        if not _bearer(request, ARM_SCOPE):
            return error(401, "AuthenticationFailed", "Missing or invalid bearer token.")
        if self.lookup_failures:
            return self.lookup_failures.pop(0)
        return _json(self.runs)
