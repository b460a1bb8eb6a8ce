"""Scoring through the managed online endpoint, as a client would, in the format MLflow deployments read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared import redaction
from shared.adapters.azure_online.payloads import clip, label, mlflow_request, parse_predictions
from shared.adapters.scoring import DeploymentError

DEPLOYMENT_HEADER = "azureml-model-deployment"  # request: pin a deployment; response: who answered


class AzureEndpointScorer:
    """Score through the endpoint's traffic rules, as a client would, in the format MLflow deployments read.

    Same `score(records)` answer shape as the local scoring server ({"result": [...], "model_version": ...}),
    so the completion handler's check that the new version answers works on Azure too: the service names the
    deployment that answered in the `azureml-model-deployment` response header, and `version_of` maps it.
    """

    def __init__(self, scoring_uri: str, key: str, *, version_of: Callable[[str], str | None] | None = None,
                 session: Any = None, timeout_s: float = 30, redact: Callable[[str], str] | None = None):
        import requests

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
            raise DeploymentError(f"scoring request answered {response.status_code}: {body}")
        try:
            predictions = parse_predictions(response.text, len(records))
        except ValueError as exc:
            raise DeploymentError(f"scoring answer malformed: {exc}") from None
        deployment = (response.headers.get(DEPLOYMENT_HEADER) or "").lower() or None
        version = self._version_of(deployment) if (deployment and self._version_of) else None
        return {"result": [label(p) for p in predictions], "model_version": version, "deployment": deployment}
