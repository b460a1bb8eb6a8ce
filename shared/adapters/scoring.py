"""The scoring endpoint, seen from the completion handler: deploy a model to it, and score with it.

Scoring has one client for Azure and the local stack alike, `EndpointScorer`: the managed online endpoint's
contract for a no-code MLflow deployment (shared/scoring/payloads.py), which the local endpoint serves exactly.
Local: our scoring server's admin route loads the model into its idle slot, smoke-tests it and switches
traffic without a restart. Azure: `shared.adapters.azure_online.AzureOnlineDeployer` (managed online endpoint,
blue/green deployments) has the same deploy / rollback / status interface (shared.ports.Deployer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from shared import redaction
from shared.ports import DeploymentError  # the error a manual promote/rollback tells apart; raised here
from shared.scoring.contract import DEPLOYMENT_HEADER, MODEL_ERROR_STATUS, MODEL_ERROR_STATUS_HEADER
from shared.scoring.payloads import clip, label, mlflow_request, parse_predictions


class EndpointScorer:
    """Score through the endpoint's traffic rules, as a client would: POST the scoring URI with
    `Authorization: Bearer KEY` and `{"input_data": <split frame>}`, read the bare list of predictions.

    Answers {"result": ["yes"|"no", ...], "model_version", "deployment"}: the endpoint names the deployment that
    answered in the `azureml-model-deployment` response header, and `version_of` maps it to the model version,
    so the completion handler's check that the new version answers works the same in Azure and locally.
    """

    def __init__(self, scoring_uri: str, key: str, *, version_of: Callable[[str], str | None] | None = None,
                 session: requests.Session | None = None, timeout_s: float = 30,
                 redact: Callable[[str], str] | None = None):
        self.scoring_uri = scoring_uri
        self._key = key
        self._version_of = version_of
        self._session = session or requests.Session()
        self._timeout = timeout_s
        # the endpoint client's redaction (every key it read) when the deployer builds this; else the shared rules
        # with this key added
        self._redact = redact or (lambda text: redaction.redact(text, "***", extra=(key,)))

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            response = self._session.post(self.scoring_uri, json=mlflow_request(records), timeout=self._timeout,
                                          headers={"Authorization": f"Bearer {self._key}",
                                                   "Content-Type": "application/json"})
        except Exception as exc:
            raise DeploymentError(f"scoring endpoint {self.scoring_uri} unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            body = self._redact(clip(response.text, 300))
            inner = response.headers.get(MODEL_ERROR_STATUS_HEADER) if response.status_code == MODEL_ERROR_STATUS \
                else None
            said = f" (the deployment answered {inner})" if inner else ""
            raise DeploymentError(f"scoring request answered {response.status_code}{said}: {body}")
        try:
            predictions = parse_predictions(response.text, len(records))
        except ValueError as exc:
            raise DeploymentError(f"scoring answer malformed: {exc}") from None
        deployment = (response.headers.get(DEPLOYMENT_HEADER) or "").lower() or None
        version = self._version_of(deployment) if (deployment and self._version_of) else None
        return {"result": [label(p) for p in predictions], "model_version": version, "deployment": deployment}


class ScoringClient(EndpointScorer):
    """The local endpoint's scoring route (`<base_url>/score`), read exactly like the managed endpoint's."""

    def __init__(self, base_url: str, key: str, *, version_of: Callable[[str], str | None] | None = None,
                 session: requests.Session | None = None, timeout_s: float = 30):
        self.base_url = base_url.rstrip("/")
        super().__init__(f"{self.base_url}/score", key, version_of=version_of, session=session, timeout_s=timeout_s)


class LocalScoringDeployer:
    """The local scoring server's admin routes: deploy (to the idle slot), rollback and status."""

    def __init__(self, base_url: str, admin_key: str, *, session: requests.Session | None = None,
                 timeout_s: float = 120):
        self.base_url = base_url.rstrip("/")
        self._key = admin_key
        self._session = session or requests.Session()
        self._timeout = timeout_s

    def deploy(self, *, model_dir: str, version: int, smoke_records: list[dict[str, Any]] | None = None,
               digest: str = "") -> dict:
        """Load `model_dir` into the idle slot and switch. `digest` is the registry's content hash of the folder:
        the server loads nothing that is not under its models root with exactly that content, so a model
        registered without one (an old record) is refused here, with what to do, before any request."""
        if not digest:
            raise DeploymentError(f"model v{version} has no registered content hash (digest), so the scoring "
                                  "endpoint will not load its folder; retrain to register a verifiable model "
                                  "(`retrain trigger --dataset latest`), then promote that version")
        body: dict[str, Any] = {"model_dir": model_dir, "version": str(version), "digest": digest}
        if smoke_records:
            body["smoke_records"] = smoke_records
        return self._call("POST", "/admin/deploy", f"deploy of model v{version}", json=body)

    def rollback(self, *, from_version: int | str | None = None) -> dict:
        """Traffic back to the model in the other slot: {"rolled_back_to", "from", "slot", "from_slot"}. With
        `from_version`, only while that version is live (else DeploymentError, 409): a rollback after the
        endpoint already rolled back by itself must not bring the failing model back."""
        body = {"from_version": str(from_version)} if from_version is not None else None
        return self._call("POST", "/admin/rollback", "rollback", json=body)

    def status(self) -> dict:
        """Slots, the live slot, its counters since the switch and recent switch events."""
        return self._call("GET", "/admin/status", "status request")

    def scorer(self, key: str, *, timeout_s: float = 30) -> ScoringClient:
        """A client of this endpoint's `/score` that reports which model version answered (the answering slot,
        mapped by `slot_version`), as the Azure deployer's `scorer()` does: without the mapping a caller cannot
        tell the new model's answers from the old one's."""
        return ScoringClient(self.base_url, key, version_of=self.slot_version, timeout_s=timeout_s)

    def slot_version(self, slot: str) -> str | None:
        """The model version a slot (deployment) serves now, as the Azure deployer's `slot_version` does."""
        view = (self.status().get("slots") or {}).get(slot.lower()) or {}
        version = view.get("version")
        return None if version is None else str(version)

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict:
        """One admin request; failures become DeploymentError naming the answer, never the key."""
        try:
            response = self._session.request(method, f"{self.base_url}{path}", timeout=self._timeout,
                                             headers={"Authorization": f"Bearer {self._key}"}, **kwargs)
        except requests.RequestException as exc:
            raise DeploymentError(f"scoring endpoint {self.base_url} unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise DeploymentError(f"{what} refused ({response.status_code}): {response.text[:300]}")
        return response.json()
