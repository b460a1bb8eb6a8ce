"""The blue/green rollout on a managed online endpoint: register, create the idle colour's deployment, mirror,
smoke-test it directly, shift all traffic in one update, delete the old deployment; undo anything that fails
before the shift."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from shared import redaction
from shared.adapters.azure_online.endpoint_client import EndpointClient
from shared.adapters.azure_online.model_refs import (
    LIVE_TAG,
    MODEL_TAG,
    PREVIOUS_MODEL_TAG,
    PREVIOUS_TAG,
    VERSION_TAG,
    deployment_model_ref,
    model_identity,
    model_version_of,
    parse_model_reference,
)
from shared.adapters.azure_online.payloads import (
    FALLBACK_RECORD,
    example_records,
    mlflow_request,
    parse_predictions,
)
from shared.adapters.azure_online.scorer import AzureEndpointScorer
from shared.adapters.azure_online.service_errors import not_found, transient
from shared.adapters.scoring import DeploymentError
from shared.domain.collected_data import Collection

if TYPE_CHECKING:
    from azure.ai.ml.entities import DataCollector

log = logging.getLogger("shared.adapters.azure_online")

SLOTS = ("blue", "green")
MAX_MIRROR_PERCENT = 50  # the service's ceiling for mirrored traffic
ROLLING_RATE = "Hour"  # the collector's folders per hour (REST RollingRateType: Year, Month, Day, Hour, Minute)


def data_collector() -> DataCollector:
    """Azure ML's data collector on for the two collections its MLflow scoring script logs (a no-code MLflow
    deployment is auto-instrumented when collection is on), rolled hourly: the drift check reads
    `modelDataCollector/{endpoint}/{deployment}/model_inputs/{yyyy}/{MM}/{dd}/{HH}/` of the workspace blob store
    (shared.adapters.inference_data).
    https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data ("Collect data for MLflow
    models", "Update your deployment YAML", "Store collected data in Blob Storage"); the entities:
    Azure/azure-sdk-for-python sdk/ml/azure-ai-ml/azure/ai/ml/entities/_deployment/data_collector.py and
    deployment_collection.py (`enabled` "true" -> REST data_collection_mode "enabled")."""
    from azure.ai.ml.entities import DataCollector, DeploymentCollection

    return DataCollector(collections={str(c): DeploymentCollection(enabled="true") for c in Collection},
                         rolling_rate=ROLLING_RATE)


class AzureOnlineDeployer:
    """Blue/green on one managed online endpoint; collaborators (client, clock, sleep) come in from outside."""

    def __init__(self, ml_client: Any, endpoint_name: str, model_name: str, *,
                 instance_type: str = "Standard_DS3_v2", instance_count: int = 1, mirror_percent: int = 0,
                 mirror_hold_s: float = 0.0, smoke_timeout_s: float = 120.0, smoke_interval_s: float = 10.0,
                 deploy_timeout_s: float | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        if not endpoint_name or not model_name:
            raise ValueError("an endpoint name and a registered model name are required")
        if isinstance(mirror_percent, bool) or not isinstance(mirror_percent, int) or \
                not 0 <= mirror_percent <= MAX_MIRROR_PERCENT:
            raise ValueError(f"mirror_percent must be an integer from 0 to {MAX_MIRROR_PERCENT}, "
                             f"got {mirror_percent!r}")
        if isinstance(instance_count, bool) or not isinstance(instance_count, int) or instance_count < 1:
            raise ValueError(f"instance_count must be a positive integer, got {instance_count!r}")
        self._client = ml_client
        self.endpoint_name = endpoint_name
        self.model_name = model_name
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.mirror_percent = mirror_percent
        self.mirror_hold_s = mirror_hold_s
        self.smoke_timeout_s = smoke_timeout_s
        self.smoke_interval_s = smoke_interval_s
        self.deploy_timeout_s = deploy_timeout_s
        self._sleep = sleep
        self._clock = clock
        self._ops = EndpointClient(ml_client, endpoint_name, model_name, deploy_timeout_s=deploy_timeout_s)
        self._slot_versions: dict[str, str] = {}  # what this process last saw; the scorer's lookup
        self._lock = threading.Lock()  # one rollout at a time per process (see README for several instances)

    # -------------------------------------------------------------------------------------- public API

    def deploy(self, *, model_dir: str, version: int | str, smoke_records: list[dict[str, Any]] | None = None,
               digest: str = "") -> dict:
        """Register `model_dir` as `model_name:version` and roll it out blue/green; DeploymentError if it can't.
        `digest` (the registry's content hash, written by the training step) is recorded as a model tag; it is
        not checked here: the folder lives in Azure ML and the online deployment loads it there."""
        started = self._clock()
        version = str(version)
        with self._lock:
            model_ref = self._ops.register(model_dir, version, digest)
            endpoint = self._ops.endpoint(create=True)
            records = smoke_records or example_records(model_dir)
            result = self._roll_out(endpoint, model_ref, self.model_name, version, records)
        result["seconds"] = round(self._clock() - started, 3)
        return result

    def rollback(self, *, smoke_records: list[dict[str, Any]] | None = None,
                 from_version: int | str | None = None) -> dict:
        """Redeploy the version that was live before the last shift (the old deployment is gone by then). With
        `from_version`, only while that version is live: a second rollback must not bring a bad model back."""
        started = self._clock()
        with self._lock:
            endpoint = self._ops.endpoint(create=False)
            if endpoint is None:
                raise DeploymentError(f"endpoint {self.endpoint_name} does not exist; there is nothing to roll back")
            tags = endpoint.tags or {}
            if from_version is not None and str(tags.get(LIVE_TAG)) != str(from_version):
                raise DeploymentError(f"v{from_version} is no longer live on {self.endpoint_name} "
                                      f"(live: v{tags.get(LIVE_TAG)}); not rolling back")
            previous = tags.get(PREVIOUS_TAG)
            if not previous:
                raise DeploymentError(f"endpoint {self.endpoint_name} records no previous model version "
                                      f"(tag {PREVIOUS_TAG}); there is nothing to roll back to")
            name = parse_model_reference(tags.get(PREVIOUS_MODEL_TAG) or "")[0] or self.model_name
            try:
                model = self._client.models.get(name=name, version=str(previous))
            except Exception as exc:
                raise DeploymentError(f"rollback to {name} v{previous} impossible: the registered model could not "
                                      f"be read: {self._ops.describe(exc)}") from None
            model_ref = getattr(model, "id", None) or f"azureml:{name}:{previous}"
            result = self._roll_out(endpoint, model_ref, name, str(previous),
                                    smoke_records or [dict(FALLBACK_RECORD)])
        result["rolled_back"] = True
        result["seconds"] = round(self._clock() - started, 3)
        return result

    def status(self) -> dict:
        """Traffic, mirror and each deployment's model version, as the service reports them."""
        endpoint = self._ops.endpoint(create=False)
        if endpoint is None:
            return {"endpoint": self.endpoint_name, "exists": False, "traffic": {}, "mirror_traffic": {},
                    "deployments": []}
        traffic = {k.lower(): int(v or 0) for k, v in (endpoint.traffic or {}).items()}
        mirror = {k.lower(): int(v or 0) for k, v in (endpoint.mirror_traffic or {}).items()}
        deployments = []
        for deployment in self._client.online_deployments.list(endpoint_name=self.endpoint_name):
            name = deployment.name.lower()
            version = model_version_of(deployment)
            if version:
                self._slot_versions[name] = version
            deployments.append({"name": name, "model_version": version, "model": deployment_model_ref(deployment),
                                "instance_type": deployment.instance_type,
                                "instance_count": deployment.instance_count,
                                "provisioning_state": getattr(deployment, "provisioning_state", None),
                                "traffic": traffic.get(name, 0), "mirror": mirror.get(name, 0)})
        tags = endpoint.tags or {}
        return {"endpoint": self.endpoint_name, "exists": True, "scoring_uri": endpoint.scoring_uri,
                "auth_mode": endpoint.auth_mode, "provisioning_state": getattr(endpoint, "provisioning_state", None),
                "traffic": traffic, "mirror_traffic": mirror, "live_version": tags.get(LIVE_TAG),
                "previous_version": tags.get(PREVIOUS_TAG), "deployments": sorted(deployments, key=lambda d: d["name"])}

    def scoring_uri(self) -> str:
        endpoint = self._ops.endpoint(create=False)
        if endpoint is None or not endpoint.scoring_uri:
            raise DeploymentError(f"endpoint {self.endpoint_name} does not exist (yet); no scoring URI")
        return str(endpoint.scoring_uri)

    def scoring_base_url(self) -> str:
        """The scoring URI without its `/score`, for clients that append it themselves (ScoringClient)."""
        uri = self.scoring_uri().rstrip("/")
        return uri[: -len("/score")] if uri.endswith("/score") else uri

    def primary_key(self) -> str:
        """The endpoint's primary key, for a scoring client. Never log or print it."""
        try:
            keys = self._client.online_endpoints.get_keys(name=self.endpoint_name)
        except Exception as exc:
            raise DeploymentError(f"keys of endpoint {self.endpoint_name} could not be read: "
                                  f"{self._ops.describe(exc)}") from None
        primary = getattr(keys, "primary_key", None)
        if not primary:
            raise DeploymentError(f"endpoint {self.endpoint_name} does not use key authentication "
                                  f"(auth_mode must be 'key' for the scoring client)")
        found = [k for k in (primary, getattr(keys, "secondary_key", None)) if k]
        self._ops.secrets.update(found)
        redaction.register(*found)  # every log line and span of the process masks them too
        return str(primary)

    def scorer(self, *, session: Any = None, timeout_s: float = 30) -> AzureEndpointScorer:
        """A scoring client for the live endpoint that reports which model version answered."""
        return AzureEndpointScorer(self.scoring_uri(), self.primary_key(), version_of=self.slot_version,
                                   session=session, timeout_s=timeout_s, redact=self._ops.redact)

    def slot_version(self, slot: str) -> str | None:
        """The model version a deployment serves: what this process last deployed or saw there, else asks."""
        slot = slot.lower()
        if slot not in self._slot_versions:
            version = self._slot_model(slot)[1]
            if version is None:
                return None
            self._slot_versions[slot] = version
        return self._slot_versions[slot]

    def _slot_model(self, slot: str) -> tuple[str | None, str | None]:
        try:
            deployment = self._client.online_deployments.get(name=slot, endpoint_name=self.endpoint_name)
        except Exception as exc:
            log.info("model of deployment %s unknown: %s", slot, self._ops.describe(exc))
            return None, None
        return model_identity(deployment)

    # -------------------------------------------------------------------------------------- the rollout

    def _roll_out(self, endpoint: Any, model_ref: str, model_name: str, version: str,
                  records: list[dict[str, Any]]) -> dict:
        live = _live(endpoint.traffic)
        slot = "green" if "blue" in live else "blue"
        if slot in live:
            raise DeploymentError(f"endpoint {self.endpoint_name} splits live traffic {_fmt(live)}; finish or undo "
                                  f"that rollout before deploying model v{version}")
        old_slots = sorted(live, key=lambda name: (-live[name], name))
        previous_slot = old_slots[0] if old_slots else None
        # Asked fresh, not cached: another instance of the app may have deployed since this one last looked.
        previous_name, previous = self._slot_model(previous_slot) if previous_slot else (None, None)
        if previous_slot and previous is None:
            previous = (endpoint.tags or {}).get(LIVE_TAG)
        log.info("rolling out %s v%s to %s/%s (live: %s)", model_name, version, self.endpoint_name, slot,
                 _fmt(live) or "nothing")

        self._create_deployment(endpoint, slot, model_ref, model_name, version, live)
        mirrored = bool(self.mirror_percent and live)  # nothing to mirror on a fresh endpoint
        if mirrored:
            try:
                self._ops.update_endpoint(endpoint, traffic=live, mirror={slot: self.mirror_percent})
            except Exception as exc:
                self._abandon(endpoint, slot, live, mirrored=False,
                              reason=f"mirroring {self.mirror_percent}% of traffic to {slot} failed: "
                                     f"{self._ops.describe(exc)}")
            log.info("mirroring %d%% of live traffic to %s", self.mirror_percent, slot)
            if self.mirror_hold_s:
                self._sleep(self.mirror_hold_s)
        try:
            smoke = self._smoke(slot, version, records)
        except DeploymentError as exc:
            self._abandon(endpoint, slot, live, mirrored=mirrored, reason=str(exc))
        except Exception as exc:
            problem = self._ops.describe(exc)
            self._abandon(endpoint, slot, live, mirrored=mirrored,
                          reason=f"smoke test of deployment {slot} (model v{version}) failed: {problem}")

        tags = {**(endpoint.tags or {}), LIVE_TAG: version, MODEL_TAG: model_name}
        for key in (PREVIOUS_TAG, PREVIOUS_MODEL_TAG):
            tags.pop(key, None)
        if previous:
            tags[PREVIOUS_TAG] = str(previous)
            tags[PREVIOUS_MODEL_TAG] = f"azureml:{previous_name or self.model_name}:{previous}"
        try:
            self._ops.update_endpoint(endpoint, traffic={slot: 100}, mirror={}, tags=tags)
        except Exception as exc:
            self._abandon(endpoint, slot, live, mirrored=mirrored,
                          reason=f"shifting traffic to {slot} (model v{version}) failed: {self._ops.describe(exc)}")
        self._slot_versions[slot] = version
        log.info("endpoint %s: 100%% of traffic on %s (model v%s)", self.endpoint_name, slot, version)

        cleanup = []
        for old in old_slots:
            try:
                self._ops.wait(self._client.online_deployments.begin_delete(name=old, endpoint_name=self.endpoint_name),
                               f"deleting deployment {old}")
                self._slot_versions.pop(old, None)
                cleanup.append({"deployment": old, "deleted": True})
            except Exception as exc:  # the new model serves already; a leftover deployment only costs money
                problem = self._ops.describe(exc)
                log.warning("old deployment %s was not deleted: %s", old, problem)
                cleanup.append({"deployment": old, "deleted": False, "error": problem})
        return {"deployed": version, "model": model_name, "previous": str(previous) if previous else None,
                "slot": slot, "previous_slot": previous_slot, "endpoint": self.endpoint_name, "smoke": smoke,
                "cleanup": cleanup}

    def _create_deployment(self, endpoint: Any, slot: str, model_ref: str, model_name: str, version: str,
                           live: dict) -> None:
        from azure.ai.ml.entities import ManagedOnlineDeployment

        deployment = ManagedOnlineDeployment(
            name=slot, endpoint_name=self.endpoint_name, model=model_ref, instance_type=self.instance_type,
            instance_count=self.instance_count, tags={VERSION_TAG: version, MODEL_TAG: model_name},
            description=f"{model_name} v{version}", data_collector=data_collector())
        try:
            created = self._ops.wait(self._client.online_deployments.begin_create_or_update(deployment),
                                     f"deployment {slot}")
        except Exception as exc:
            self._ops.log_tail(slot)
            self._abandon(endpoint, slot, live, mirrored=False,
                          reason=f"deployment {slot} of {model_name} v{version} on endpoint "
                                 f"{self.endpoint_name} failed: {self._ops.describe(exc)}")
        state = getattr(created, "provisioning_state", None)
        if state and str(state).lower() != "succeeded":
            self._ops.log_tail(slot)
            self._abandon(endpoint, slot, live, mirrored=False,
                          reason=f"deployment {slot} of {model_name} v{version} ended {state}")

    def _smoke(self, slot: str, version: str, records: list[dict[str, Any]]) -> dict:
        """Score real rows on the new deployment itself (not through the traffic split) before it goes live."""
        what = f"smoke test of deployment {slot} (model v{version})"
        with tempfile.TemporaryDirectory(prefix="retrain-smoke-") as folder:
            request = Path(folder) / "request.json"
            request.write_text(json.dumps(mlflow_request(records)))
            deadline = self._clock() + self.smoke_timeout_s
            attempt = 0
            while True:
                attempt += 1
                try:
                    raw = self._client.online_endpoints.invoke(endpoint_name=self.endpoint_name,
                                                               deployment_name=slot, request_file=str(request))
                    break
                except Exception as exc:
                    problem = self._ops.describe(exc)
                    if not transient(exc):
                        raise DeploymentError(f"{what} was refused: {problem}") from None
                    if self._clock() + self.smoke_interval_s > deadline:
                        raise DeploymentError(f"{what} got no answer within {self.smoke_timeout_s:g}s "
                                              f"({attempt} attempts); last error: {problem}") from None
                    log.info("%s: attempt %d failed (%s); retrying in %gs", what, attempt, problem,
                             self.smoke_interval_s)
                    self._sleep(self.smoke_interval_s)
        try:
            predictions = parse_predictions(raw, len(records))
        except ValueError as exc:
            raise DeploymentError(f"{what} returned malformed output: {self._ops.redact(str(exc))}") from None
        log.info("%s passed: %d rows scored", what, len(records))
        return {"rows": len(records), "ok": True, "deployment": slot, "attempts": attempt,
                "predictions": predictions[:5]}

    def _abandon(self, endpoint: Any, slot: str, live: dict[str, int], *, mirrored: bool, reason: str) -> NoReturn:
        """Undo a rollout that failed before the shift: live traffic as it was, the new deployment gone."""
        notes = []
        if mirrored:
            try:
                self._ops.update_endpoint(endpoint, traffic=live, mirror={})
            except Exception as exc:
                notes.append(f"mirrored traffic to {slot} could not be cleared: {self._ops.describe(exc)}")
        try:
            self._ops.wait(self._client.online_deployments.begin_delete(name=slot, endpoint_name=self.endpoint_name),
                           f"deleting deployment {slot}")
        except Exception as exc:
            if not not_found(exc):
                notes.append(f"the failed deployment {slot} could not be deleted: {self._ops.describe(exc)}")
        self._slot_versions.pop(slot, None)
        message = f"{reason}; live traffic unchanged ({_fmt(live) or 'no live deployment'})"
        if notes:
            message += "; " + "; ".join(notes)
        message = self._ops.redact(message)
        log.warning("%s", message)
        raise DeploymentError(message) from None



def _fmt(traffic: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {share}%" for name, share in sorted(traffic.items()))



def _live(traffic: Mapping[str, Any] | None) -> dict[str, int]:
    return {name.lower(): int(share) for name, share in (traffic or {}).items() if share and int(share) > 0}

