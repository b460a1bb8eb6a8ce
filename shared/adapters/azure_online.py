"""Blue/green redeploys of the MLflow model on an Azure ML managed online endpoint (azure-ai-ml v2).

Same interface as `LocalScoringDeployer`, so the completion handler can use either. A deploy registers the
model, creates it as the idle colour's deployment (no-code: MLflow models need no scoring script or
environment), optionally mirrors live traffic to it, smoke-tests it directly, and only then moves 100 % of the
traffic in one endpoint update and deletes the old deployment. Anything failing before that update leaves the
traffic as it was and removes the half-made deployment, so a bad model never serves.

Azure keeps one deployment after a success, so which model version is live and which was live before is kept
in tags: `model_version` on each deployment, `live_model_version` / `previous_model_version` on the endpoint.
`rollback()` redeploys the previous version through the same path.

The `MLClient` is built elsewhere (credential from azure-identity). The endpoint key is only ever fetched for
the scoring client; it is never logged, and every message built from a service error is redacted first.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from shared import redaction
from shared.adapters.scoring import DeploymentError
from shared.domain import schema

log = logging.getLogger(__name__)

SLOTS = ("blue", "green")
VERSION_TAG = "model_version"  # on deployments: the registered model version they serve
MODEL_TAG = "model_name"
LIVE_TAG = "live_model_version"  # on the endpoint, written with each traffic shift
PREVIOUS_TAG = "previous_model_version"
PREVIOUS_MODEL_TAG = "previous_model"  # azureml:<name>:<version>, for a previous model registered under another name
MAX_MIRROR_PERCENT = 50  # the service's ceiling for mirrored traffic
RETRYABLE_STATUS = frozenset({408, 424, 429, 500, 502, 503, 504})
DEPLOYMENT_HEADER = "azureml-model-deployment"  # request: pin a deployment; response: who answered
# Used when a deploy gets no smoke records and the model directory is not local (or has no input example).
FALLBACK_RECORD: dict[str, Any] = dict(schema.EXAMPLE_RECORD)

_ARM_MODEL = re.compile(r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$")
_SHORT_MODEL = re.compile(r"^azureml:(?P<name>[^:/]+):(?P<version>[^:/]+)$")


# ------------------------------------------------------------------------------------------------ helpers


def mlflow_request(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The body MLflow no-code deployments read: a pandas DataFrame in split orientation under `input_data`."""
    columns: list[str] = []
    for record in records:
        columns.extend(c for c in record if c not in columns)
    data = [[_jsonable(record.get(c)) for c in columns] for record in records]
    return {"input_data": {"columns": columns, "index": list(range(len(records))), "data": data}}


def parse_predictions(raw: Any, rows: int) -> list[Any]:
    """The scoring answer as a list of one prediction per row; ValueError says what is wrong with it."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    answer = raw
    if isinstance(raw, str):
        try:
            answer = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"the answer is not JSON: {_clip(raw, 200)!r}") from None
        if isinstance(answer, str):  # some scoring scripts JSON-encode their JSON once more
            try:
                answer = json.loads(answer)
            except json.JSONDecodeError:
                raise ValueError(f"the answer is a string, not predictions: {_clip(answer, 200)!r}") from None
    if isinstance(answer, dict):
        for key in ("predictions", "result", "output"):
            if key in answer:
                answer = answer[key]
                break
    if not isinstance(answer, list):
        raise ValueError(f"expected a JSON list of {rows} predictions, got {_type_name(answer)}")
    if len(answer) != rows:
        raise ValueError(f"expected {rows} predictions (one per smoke record), got {len(answer)}")
    for index, value in enumerate(answer):
        scalar = isinstance(value, str | int | float | bool) and not (isinstance(value, float) and math.isnan(value))
        if not (scalar or isinstance(value, dict)):
            raise ValueError(f"prediction {index} is {_type_name(value)}, not a label or score")
    return answer


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


def model_identity(deployment: Any) -> tuple[str | None, str | None]:
    """(registered model name, version) a deployment serves: our tags, else its model reference.

    The reference also covers deployments made by hand or by the studio (an endpoint we take over).
    """
    tags = getattr(deployment, "tags", None) or {}
    model = getattr(deployment, "model", None)
    reference = model if isinstance(model, str) else getattr(model, "id", None) or ""
    name, version = _parse_model_reference(reference)
    if not name and model is not None and not isinstance(model, str):
        name, version = getattr(model, "name", None), getattr(model, "version", None)
    version = tags.get(VERSION_TAG) or version
    name = tags.get(MODEL_TAG) or name
    return (str(name) if name else None), (str(version) if version else None)


def model_version_of(deployment: Any) -> str | None:
    return model_identity(deployment)[1]


def _parse_model_reference(reference: str) -> tuple[str | None, str | None]:
    reference = reference.removeprefix("azureml:") if reference.startswith("azureml:/") else reference
    match = _ARM_MODEL.search(reference) or _SHORT_MODEL.match(reference)
    return (match.group("name"), match.group("version")) if match else (None, None)


def _live(traffic: Mapping[str, Any] | None) -> dict[str, int]:
    return {name.lower(): int(share) for name, share in (traffic or {}).items() if share and int(share) > 0}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy / pandas scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _transient(exc: BaseException) -> bool:
    """Worth another smoke attempt: the container may still be warming up behind the front door."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    status = _status(exc)
    if status is not None:
        return status in RETRYABLE_STATUS
    return isinstance(exc, ServiceRequestError | ServiceResponseError | ConnectionError | TimeoutError)


def _not_found(exc: BaseException) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    return isinstance(exc, ResourceNotFoundError) or _status(exc) == 404


# ------------------------------------------------------------------------------------------------ deployer


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
        self._secrets: set[str] = set()  # keys seen through get_keys, scrubbed from every message
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
            model_ref = self._register(model_dir, version, digest)
            endpoint = self._endpoint(create=True)
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
            endpoint = self._endpoint(create=False)
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
            name = _parse_model_reference(tags.get(PREVIOUS_MODEL_TAG) or "")[0] or self.model_name
            try:
                model = self._client.models.get(name=name, version=str(previous))
            except Exception as exc:
                raise DeploymentError(f"rollback to {name} v{previous} impossible: the registered model could not "
                                      f"be read: {self._describe(exc)}") from None
            model_ref = getattr(model, "id", None) or f"azureml:{name}:{previous}"
            result = self._roll_out(endpoint, model_ref, name, str(previous),
                                    smoke_records or [dict(FALLBACK_RECORD)])
        result["rolled_back"] = True
        result["seconds"] = round(self._clock() - started, 3)
        return result

    def status(self) -> dict:
        """Traffic, mirror and each deployment's model version, as the service reports them."""
        endpoint = self._endpoint(create=False)
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
            deployments.append({"name": name, "model_version": version, "model": _model_ref(deployment),
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
        endpoint = self._endpoint(create=False)
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
                                  f"{self._describe(exc)}") from None
        primary = getattr(keys, "primary_key", None)
        if not primary:
            raise DeploymentError(f"endpoint {self.endpoint_name} does not use key authentication "
                                  f"(auth_mode must be 'key' for the scoring client)")
        found = [k for k in (primary, getattr(keys, "secondary_key", None)) if k]
        self._secrets.update(found)
        redaction.register(*found)  # every log line and span of the process masks them too
        return str(primary)

    def scorer(self, *, session: Any = None, timeout_s: float = 30) -> AzureEndpointScorer:
        """A scoring client for the live endpoint that reports which model version answered."""
        return AzureEndpointScorer(self.scoring_uri(), self.primary_key(), version_of=self.slot_version,
                                   session=session, timeout_s=timeout_s, redact=self._redact)

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
            log.info("model of deployment %s unknown: %s", slot, self._describe(exc))
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
                self._update_endpoint(endpoint, traffic=live, mirror={slot: self.mirror_percent})
            except Exception as exc:
                self._abandon(endpoint, slot, live, mirrored=False,
                              reason=f"mirroring {self.mirror_percent}% of traffic to {slot} failed: "
                                     f"{self._describe(exc)}")
            log.info("mirroring %d%% of live traffic to %s", self.mirror_percent, slot)
            if self.mirror_hold_s:
                self._sleep(self.mirror_hold_s)
        try:
            smoke = self._smoke(slot, version, records)
        except DeploymentError as exc:
            self._abandon(endpoint, slot, live, mirrored=mirrored, reason=str(exc))
        except Exception as exc:
            self._abandon(endpoint, slot, live, mirrored=mirrored,
                          reason=f"smoke test of deployment {slot} (model v{version}) failed: {self._describe(exc)}")

        tags = {**(endpoint.tags or {}), LIVE_TAG: version, MODEL_TAG: model_name}
        for key in (PREVIOUS_TAG, PREVIOUS_MODEL_TAG):
            tags.pop(key, None)
        if previous:
            tags[PREVIOUS_TAG] = str(previous)
            tags[PREVIOUS_MODEL_TAG] = f"azureml:{previous_name or self.model_name}:{previous}"
        try:
            self._update_endpoint(endpoint, traffic={slot: 100}, mirror={}, tags=tags)
        except Exception as exc:
            self._abandon(endpoint, slot, live, mirrored=mirrored,
                          reason=f"shifting traffic to {slot} (model v{version}) failed: {self._describe(exc)}")
        self._slot_versions[slot] = version
        log.info("endpoint %s: 100%% of traffic on %s (model v%s)", self.endpoint_name, slot, version)

        cleanup = []
        for old in old_slots:
            try:
                self._wait(self._client.online_deployments.begin_delete(name=old, endpoint_name=self.endpoint_name),
                           f"deleting deployment {old}")
                self._slot_versions.pop(old, None)
                cleanup.append({"deployment": old, "deleted": True})
            except Exception as exc:  # the new model serves already; a leftover deployment only costs money
                problem = self._describe(exc)
                log.warning("old deployment %s was not deleted: %s", old, problem)
                cleanup.append({"deployment": old, "deleted": False, "error": problem})
        return {"deployed": version, "model": model_name, "previous": str(previous) if previous else None,
                "slot": slot, "previous_slot": previous_slot, "endpoint": self.endpoint_name, "smoke": smoke,
                "cleanup": cleanup}

    def _register(self, model_dir: str, version: str, digest: str = "") -> str:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        if not model_dir or not str(model_dir).strip():
            raise DeploymentError(f"model v{version} has no location to register")
        model = Model(path=str(model_dir), type=AssetTypes.MLFLOW_MODEL, name=self.model_name, version=version,
                      description="bank-marketing classifier trained by the retraining pipeline",
                      tags={"registered_by": "azureml-retrain", **({"content_digest": digest} if digest else {})})
        try:
            registered = self._client.models.create_or_update(model)
        except Exception as exc:
            registered = self._existing_model(version)  # a redelivered event: the version is registered already
            if registered is None:
                raise DeploymentError(f"registering {self.model_name} v{version} from {_without_query(model_dir)} "
                                      f"failed: {self._describe(exc)}") from None
            log.info("%s v%s was registered before; deploying that registration", self.model_name, version)
        return getattr(registered, "id", None) or f"azureml:{self.model_name}:{version}"

    def _existing_model(self, version: str) -> Any:
        try:
            return self._client.models.get(name=self.model_name, version=version)
        except Exception:
            return None

    def _endpoint(self, *, create: bool) -> Any:
        try:
            return self._client.online_endpoints.get(name=self.endpoint_name)
        except Exception as exc:
            if not _not_found(exc):
                raise DeploymentError(f"endpoint {self.endpoint_name} could not be read: "
                                      f"{self._describe(exc)}") from None
        if not create:
            return None
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        endpoint = ManagedOnlineEndpoint(name=self.endpoint_name, auth_mode="key",
                                         description=f"{self.model_name}, blue/green by azureml-retrain",
                                         tags={MODEL_TAG: self.model_name})
        log.info("creating managed online endpoint %s", self.endpoint_name)
        try:
            created = self._wait(self._client.online_endpoints.begin_create_or_update(endpoint),
                                 f"creating endpoint {self.endpoint_name}")
        except Exception as exc:
            raise DeploymentError(f"creating endpoint {self.endpoint_name} failed: {self._describe(exc)}") from None
        return created if created is not None else endpoint

    def _create_deployment(self, endpoint: Any, slot: str, model_ref: str, model_name: str, version: str,
                           live: dict) -> None:
        from azure.ai.ml.entities import ManagedOnlineDeployment

        deployment = ManagedOnlineDeployment(
            name=slot, endpoint_name=self.endpoint_name, model=model_ref, instance_type=self.instance_type,
            instance_count=self.instance_count, tags={VERSION_TAG: version, MODEL_TAG: model_name},
            description=f"{model_name} v{version}")
        try:
            created = self._wait(self._client.online_deployments.begin_create_or_update(deployment),
                                 f"deployment {slot}")
        except Exception as exc:
            self._log_tail(slot)
            self._abandon(endpoint, slot, live, mirrored=False,
                          reason=f"deployment {slot} of {model_name} v{version} on endpoint "
                                 f"{self.endpoint_name} failed: {self._describe(exc)}")
        state = getattr(created, "provisioning_state", None)
        if state and str(state).lower() != "succeeded":
            self._log_tail(slot)
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
                    problem = self._describe(exc)
                    if not _transient(exc):
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
            raise DeploymentError(f"{what} returned malformed output: {self._redact(str(exc))}") from None
        log.info("%s passed: %d rows scored", what, len(records))
        return {"rows": len(records), "ok": True, "deployment": slot, "attempts": attempt,
                "predictions": predictions[:5]}

    def _abandon(self, endpoint: Any, slot: str, live: dict[str, int], *, mirrored: bool, reason: str) -> NoReturn:
        """Undo a rollout that failed before the shift: live traffic as it was, the new deployment gone."""
        notes = []
        if mirrored:
            try:
                self._update_endpoint(endpoint, traffic=live, mirror={})
            except Exception as exc:
                notes.append(f"mirrored traffic to {slot} could not be cleared: {self._describe(exc)}")
        try:
            self._wait(self._client.online_deployments.begin_delete(name=slot, endpoint_name=self.endpoint_name),
                       f"deleting deployment {slot}")
        except Exception as exc:
            if not _not_found(exc):
                notes.append(f"the failed deployment {slot} could not be deleted: {self._describe(exc)}")
        self._slot_versions.pop(slot, None)
        message = f"{reason}; live traffic unchanged ({_fmt(live) or 'no live deployment'})"
        if notes:
            message += "; " + "; ".join(notes)
        message = self._redact(message)
        log.warning("%s", message)
        raise DeploymentError(message) from None

    def _update_endpoint(self, endpoint: Any, *, traffic: Mapping[str, int], mirror: Mapping[str, int],
                         tags: Mapping[str, str] | None = None) -> None:
        endpoint.traffic = dict(traffic)
        endpoint.mirror_traffic = dict(mirror)
        if tags is not None:
            endpoint.tags = dict(tags)
        self._wait(self._client.online_endpoints.begin_create_or_update(endpoint),
                   f"updating endpoint {self.endpoint_name}")

    def _wait(self, poller: Any, what: str) -> Any:
        if self.deploy_timeout_s is None:
            return poller.result()
        result = poller.result(timeout=self.deploy_timeout_s)
        done = getattr(poller, "done", None)
        if callable(done) and not done():
            raise TimeoutError(f"{what} did not finish within {self.deploy_timeout_s:g}s")
        return result

    def _log_tail(self, slot: str, lines: int = 30) -> None:
        """The container's last lines say why a deployment failed (a missing package, an unpicklable class)."""
        try:
            tail = self._client.online_deployments.get_logs(name=slot, endpoint_name=self.endpoint_name, lines=lines)
        except Exception as exc:
            log.info("no logs for deployment %s: %s", slot, self._describe(exc))
            return
        if tail:
            log.warning("last %d log lines of deployment %s:\n%s", lines, slot, self._redact(str(tail)))

    def _describe(self, exc: BaseException) -> str:
        status = _status(exc)
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        text = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {_clip(message, 400)}"
        return self._redact(text)

    def _redact(self, text: str) -> str:
        """shared.redaction's rules with `***` as the mask, plus the keys read from this endpoint."""
        return redaction.redact(text, "***", extra=self._secrets)


def _without_query(location: str) -> str:
    """A model location fit for a message: an https URL may carry a SAS token in its query."""
    return str(location).split("?", 1)[0]


def _fmt(traffic: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {share}%" for name, share in sorted(traffic.items()))


def _model_ref(deployment: Any) -> str | None:
    model = getattr(deployment, "model", None)
    return model if isinstance(model, str) or model is None else getattr(model, "id", None) or str(model)


# ------------------------------------------------------------------------------------------------ scoring


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
        self._redact = redact or (lambda text: text)

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            response = self._session.post(self.scoring_uri, json=mlflow_request(records), timeout=self._timeout,
                                          headers={"Authorization": f"Bearer {self._key}",
                                                   "Content-Type": "application/json"})
        except Exception as exc:
            raise DeploymentError(f"scoring endpoint {self.scoring_uri} unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            body = self._redact(_clip(response.text, 300))
            body = body.replace(self._key, "***") if self._key else body
            raise DeploymentError(f"scoring request answered {response.status_code}: {body}")
        try:
            predictions = parse_predictions(response.text, len(records))
        except ValueError as exc:
            raise DeploymentError(f"scoring answer malformed: {exc}") from None
        deployment = (response.headers.get(DEPLOYMENT_HEADER) or "").lower() or None
        version = self._version_of(deployment) if (deployment and self._version_of) else None
        return {"result": [_label(p) for p in predictions], "model_version": version, "deployment": deployment}


def _label(prediction: Any) -> Any:
    """Our classifier predicts 0/1 (label encoding no=0, yes=1); answer with the labels like the local server."""
    if isinstance(prediction, bool) or not isinstance(prediction, int | float):
        return prediction
    return schema.TARGET_VALUES[int(prediction)] if prediction in (0, 1) else prediction
