"""The calls the deployer makes on its endpoint through azure-ai-ml's `MLClient`: read or create the endpoint,
register a model, update traffic, wait for a long-running operation, read a deployment's logs. Every message built
from a service error is redacted first (shared.redaction's rules with `***` as the mask, plus the endpoint keys
read through this client)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from shared import redaction
from shared.adapters.azure_online.model_refs import MODEL_TAG
from shared.adapters.azure_online.payloads import clip
from shared.adapters.azure_online.service_errors import not_found, status_of
from shared.adapters.scoring import DeploymentError

log = logging.getLogger("shared.adapters.azure_online")


class EndpointClient:
    """One managed online endpoint and the registered model it serves, through an `MLClient` built elsewhere."""

    def __init__(self, ml_client: Any, endpoint_name: str, model_name: str, *,
                 deploy_timeout_s: float | None = None):
        self.client = ml_client
        self.endpoint_name = endpoint_name
        self.model_name = model_name
        self.deploy_timeout_s = deploy_timeout_s
        self.secrets: set[str] = set()  # keys seen through get_keys, scrubbed from every message

    def register(self, model_dir: str, version: str, digest: str = "") -> str:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        if not model_dir or not str(model_dir).strip():
            raise DeploymentError(f"model v{version} has no location to register")
        model = Model(path=str(model_dir), type=AssetTypes.MLFLOW_MODEL, name=self.model_name, version=version,
                      description="bank-marketing classifier trained by the retraining pipeline",
                      tags={"registered_by": "azureml-retrain", **({"content_digest": digest} if digest else {})})
        try:
            registered = self.client.models.create_or_update(model)
        except Exception as exc:
            registered = self.existing_model(version)  # a redelivered event: the version is registered already
            if registered is None:
                raise DeploymentError(f"registering {self.model_name} v{version} from {without_query(model_dir)} "
                                      f"failed: {self.describe(exc)}") from None
            log.info("%s v%s was registered before; deploying that registration", self.model_name, version)
        return getattr(registered, "id", None) or f"azureml:{self.model_name}:{version}"

    def existing_model(self, version: str) -> Any:
        try:
            return self.client.models.get(name=self.model_name, version=version)
        except Exception:
            return None

    def endpoint(self, *, create: bool) -> Any:
        try:
            return self.client.online_endpoints.get(name=self.endpoint_name)
        except Exception as exc:
            if not not_found(exc):
                raise DeploymentError(f"endpoint {self.endpoint_name} could not be read: "
                                      f"{self.describe(exc)}") from None
        if not create:
            return None
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        endpoint = ManagedOnlineEndpoint(name=self.endpoint_name, auth_mode="key",
                                         description=f"{self.model_name}, blue/green by azureml-retrain",
                                         tags={MODEL_TAG: self.model_name})
        log.info("creating managed online endpoint %s", self.endpoint_name)
        try:
            created = self.wait(self.client.online_endpoints.begin_create_or_update(endpoint),
                                f"creating endpoint {self.endpoint_name}")
        except Exception as exc:
            raise DeploymentError(f"creating endpoint {self.endpoint_name} failed: {self.describe(exc)}") from None
        return created if created is not None else endpoint

    def update_endpoint(self, endpoint: Any, *, traffic: Mapping[str, int], mirror: Mapping[str, int],
                         tags: Mapping[str, str] | None = None) -> None:
        endpoint.traffic = dict(traffic)
        endpoint.mirror_traffic = dict(mirror)
        if tags is not None:
            endpoint.tags = dict(tags)
        self.wait(self.client.online_endpoints.begin_create_or_update(endpoint),
                  f"updating endpoint {self.endpoint_name}")

    def wait(self, poller: Any, what: str) -> Any:
        if self.deploy_timeout_s is None:
            return poller.result()
        result = poller.result(timeout=self.deploy_timeout_s)
        done = getattr(poller, "done", None)
        if callable(done) and not done():
            raise TimeoutError(f"{what} did not finish within {self.deploy_timeout_s:g}s")
        return result

    def log_tail(self, slot: str, lines: int = 30) -> None:
        """The container's last lines say why a deployment failed (a missing package, an unpicklable class)."""
        try:
            tail = self.client.online_deployments.get_logs(name=slot, endpoint_name=self.endpoint_name, lines=lines)
        except Exception as exc:
            log.info("no logs for deployment %s: %s", slot, self.describe(exc))
            return
        if tail:
            log.warning("last %d log lines of deployment %s:\n%s", lines, slot, self.redact(str(tail)))

    def describe(self, exc: BaseException) -> str:
        status = status_of(exc)
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        text = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {clip(message, 400)}"
        return self.redact(text)

    def redact(self, text: str) -> str:
        """shared.redaction's rules with `***` as the mask, plus the keys read from this endpoint."""
        return redaction.redact(text, "***", extra=self.secrets)

def without_query(location: str) -> str:
    """A model location fit for a message: an https URL may carry a SAS token in its query."""
    return str(location).split("?", 1)[0]
