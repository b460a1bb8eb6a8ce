"""Blue/green on a managed online endpoint, against an MLClient whose operations are recording doubles.

The doubles keep the workspace state (registered models, the endpoint's traffic and mirror, deployments) and
apply the service's rules that matter here: traffic only to existing deployments and summing to 100, mirror at
most 50 % and never to a live deployment, no deleting a deployment that receives traffic, deployments must
reference a registered model. Every entity is serialized the way azure-ai-ml sends it, so a wrong field type
fails offline. No subscription is needed.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import (
    EndpointAuthKeys,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
)
from azure.ai.ml.operations import (
    ModelOperations,
    OnlineDeploymentOperations,
    OnlineEndpointOperations,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.adapters.azure_online import (
    FALLBACK_RECORD,
    AzureEndpointScorer,
    AzureOnlineDeployer,
    mlflow_request,
    parse_predictions,
)
from shared.adapters.scoring import DeploymentError

ENDPOINT = "bank-scoring"
MODEL = "bankmarketing-classifier"
LOCATION = "westeurope"
WORKSPACE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-retrain/providers/"
             "Microsoft.MachineLearningServices/workspaces/ws-retrain")
KEY = "pK3y-S3cr3t-Th4t-Must-N3ver-L34k"
SECOND_KEY = "s3c0nd-K3y-Als0-S3cr3t"
OUTPUT_URI = ("azureml://subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-retrain/workspaces/"
              "ws-retrain/datastores/workspaceblobstore/paths/azureml/run-{v}/model_dir/model")
RECORDS = [
    dict(FALLBACK_RECORD),
    {**FALLBACK_RECORD, "age": 29, "job": "student", "duration": 88, "poutcome": "failure"},
    {**FALLBACK_RECORD, "age": 63, "job": "retired", "duration": 901, "month": "oct"},
]
READS = (".get", ".list", ".get_keys", ".get_logs")


def http_error(status: int, message: str) -> HttpResponseError:
    error = HttpResponseError(message=message)
    error.status_code = status
    return error


def model_id(version) -> str:
    return f"{WORKSPACE}/models/{MODEL}/versions/{version}"


class Poller:
    """An LROPoller as the operations return it: `.result()` waits, and raises what the operation raised."""

    def __init__(self, value=None, error: Exception | None = None, finished: bool = True):
        self._value, self._error, self._finished = value, error, finished

    def result(self, timeout=None):
        if self._error is not None:
            raise self._error
        return self._value if self._finished else None

    def done(self):
        return self._finished


def operations(real_class, **doubles) -> SimpleNamespace:
    """Doubles that first bind each call to the real azure-ai-ml method's signature, so API drift fails here."""

    def conforming(name, double):
        signature = inspect.signature(getattr(real_class, name))

        def call(*args, **kwargs):
            signature.bind(object(), *args, **kwargs)
            return double(*args, **kwargs)

        return call

    return SimpleNamespace(**{name: conforming(name, double) for name, double in doubles.items()})


class RecordingMLClient:
    """MLClient's `models`, `online_endpoints` and `online_deployments`, recording each call in order."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []
        self.models_store: dict[tuple[str, str], Model] = {}
        self.endpoint: dict | None = None  # name, auth_mode, tags, traffic, mirror
        self.deployments: dict[str, ManagedOnlineDeployment] = {}
        self.fail_deployment: str | None = None  # the service's error message for the next deployment
        self.hang_deployment = False  # the next deployment's poller is still running when `.result()` returns
        self.fail_register: Exception | None = None
        self.answer = self.default_answer  # (request body, deployment name) -> response text, or raises
        self.wire: list[dict] = []  # every entity as azure-ai-ml would put it on the wire
        self.models = operations(ModelOperations, create_or_update=self.models_create_or_update, get=self.models_get)
        self.online_endpoints = operations(
            OnlineEndpointOperations, get=self.endpoint_get, begin_create_or_update=self.endpoint_update,
            get_keys=self.endpoint_keys, invoke=self.endpoint_invoke)
        self.online_deployments = operations(
            OnlineDeploymentOperations, begin_create_or_update=self.deployment_update, get=self.deployment_get,
            list=self.deployment_list, begin_delete=self.deployment_delete, get_logs=self.deployment_logs)

    # ---------------------------------------------------------------------------------------- models

    def models_create_or_update(self, model):
        self.calls.append(("models.create_or_update", copy.deepcopy(model)))
        self.wire.append(model._to_rest_object().as_dict())
        if self.fail_register is not None:
            raise self.fail_register
        if (model.name, model.version) in self.models_store:
            raise http_error(409, f"model {model.name}:{model.version} already exists")
        registered = Model(id=model_id(model.version), name=model.name, version=model.version, type=model.type,
                           path=model.path, tags=dict(model.tags or {}))
        self.models_store[(model.name, model.version)] = registered
        return registered

    def models_get(self, name, version=None, label=None):
        self.calls.append(("models.get", (name, version)))
        if (name, str(version)) not in self.models_store:
            raise ResourceNotFoundError(f"model {name}:{version} not found")
        return self.models_store[(name, str(version))]

    # ---------------------------------------------------------------------------------------- endpoint

    def _endpoint_entity(self) -> ManagedOnlineEndpoint:
        state = self.endpoint
        traffic = dict(state["traffic"])
        for name in self.deployments:  # like the SDK: deployments without traffic or mirror show up with 0
            if name not in traffic and name not in state["mirror"]:
                traffic[name] = 0
        return ManagedOnlineEndpoint(
            name=state["name"], auth_mode=state["auth_mode"], tags=dict(state["tags"]), traffic=traffic,
            mirror_traffic=dict(state["mirror"]), provisioning_state="Succeeded",
            scoring_uri=f"https://{state['name']}.{LOCATION}.inference.ml.azure.com/score")

    def endpoint_get(self, name, *, local=False):
        self.calls.append(("online_endpoints.get", name))
        if self.endpoint is None or self.endpoint["name"] != name:
            raise ResourceNotFoundError(f"online endpoint {name} not found")
        return self._endpoint_entity()

    def endpoint_update(self, endpoint, *, local=False):
        self.calls.append(("online_endpoints.begin_create_or_update", copy.deepcopy(endpoint)))
        strip = {k.lower(): int(v) for k, v in (endpoint.traffic or {}).items() if v and int(v) != 0}
        mirror = {k.lower(): int(v) for k, v in (endpoint.mirror_traffic or {}).items() if v and int(v) != 0}
        endpoint.traffic, endpoint.mirror_traffic = strip, mirror  # the SDK strips zeroes before sending
        self.wire.append(endpoint._to_rest_online_endpoint(location=LOCATION).as_dict())
        problems = [f"deployment {n} does not exist" for n in [*strip, *mirror] if n not in self.deployments]
        if strip and sum(strip.values()) != 100:
            problems.append(f"traffic must add up to 100, got {sum(strip.values())}")
        problems += [f"mirror to {n} exceeds 50%" for n, v in mirror.items() if v > 50]
        problems += [f"{n} cannot receive live and mirrored traffic" for n in mirror if n in strip]
        if problems:
            return Poller(error=http_error(400, "; ".join(problems)))
        self.endpoint = {"name": endpoint.name, "auth_mode": endpoint.auth_mode, "tags": dict(endpoint.tags or {}),
                         "traffic": strip, "mirror": mirror}
        return Poller(self._endpoint_entity())

    def endpoint_keys(self, name):
        self.calls.append(("online_endpoints.get_keys", name))
        return EndpointAuthKeys(primary_key=KEY, secondary_key=SECOND_KEY)

    def endpoint_invoke(self, endpoint_name, *, request_file=None, deployment_name=None, **kwargs):
        with open(request_file) as f:  # the SDK reads the file the same way
            body = json.load(f)
        self.calls.append(("online_endpoints.invoke", {"endpoint": endpoint_name, "deployment": deployment_name,
                                                       "body": body}))
        if deployment_name not in self.deployments:
            raise http_error(404, f"deployment {deployment_name} not found")
        return self.answer(body, deployment_name)

    @staticmethod
    def default_answer(body, deployment):
        """A real MLflow sklearn deployment answers a JSON list, one int64 prediction per row."""
        rows = body["input_data"]["data"]
        return json.dumps([i % 2 for i in range(len(rows))])

    # ---------------------------------------------------------------------------------------- deployments

    def deployment_update(self, deployment, *, local=False, **kwargs):
        self.calls.append(("online_deployments.begin_create_or_update", copy.deepcopy(deployment)))
        if self.endpoint is None or self.endpoint["name"] != deployment.endpoint_name:
            raise ResourceNotFoundError(f"online endpoint {deployment.endpoint_name} not found")
        self.wire.append(deployment._to_rest_object(location=LOCATION).as_dict())
        if deployment.model not in {m.id for m in self.models_store.values()}:
            return Poller(error=http_error(400, f"model {deployment.model} is not registered"))
        stored = copy.deepcopy(deployment)
        stored._provisioning_state = "Failed" if self.fail_deployment else "Succeeded"  # read-only property
        self.deployments[deployment.name] = stored
        if self.fail_deployment:
            message, self.fail_deployment = self.fail_deployment, None
            return Poller(error=http_error(400, message))
        if self.hang_deployment:
            self.hang_deployment = False
            return Poller(stored, finished=False)
        return Poller(stored)

    def deployment_get(self, name, endpoint_name, *, local=False):
        self.calls.append(("online_deployments.get", name))
        if name not in self.deployments:
            raise ResourceNotFoundError(f"deployment {name} not found")
        return self.deployments[name]

    def deployment_list(self, endpoint_name, *, local=False):
        self.calls.append(("online_deployments.list", endpoint_name))
        return list(self.deployments.values())

    def deployment_delete(self, name, endpoint_name, *, local=False):
        self.calls.append(("online_deployments.begin_delete", name))
        if name not in self.deployments:
            raise ResourceNotFoundError(f"deployment {name} not found")
        if self.endpoint["traffic"].get(name) or self.endpoint["mirror"].get(name):
            return Poller(error=http_error(400, f"deployment {name} still receives traffic"))
        del self.deployments[name]
        return Poller(None)

    def deployment_logs(self, name, endpoint_name, lines, *, container_type=None, local=False):
        self.calls.append(("online_deployments.get_logs", name))
        return "Traceback (most recent call last):\nModuleNotFoundError: No module named 'shared'"

    # ---------------------------------------------------------------------------------------- views

    def writes(self) -> list[str]:
        return [name for name, _ in self.calls if not name.endswith(READS)]

    def entities(self, name: str) -> list:
        return [payload for call, payload in self.calls if call == name]

    def reset_calls(self):
        self.calls.clear()
        self.wire.clear()


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def client():
    return RecordingMLClient()


@pytest.fixture
def clock():
    return FakeClock()


def deployer(client, clock, **kwargs) -> AzureOnlineDeployer:
    return AzureOnlineDeployer(client, ENDPOINT, MODEL, sleep=clock.sleep, clock=clock, **kwargs)


def live_on(client, *versions) -> AzureOnlineDeployer:
    """An endpoint that went through a deploy of each version; the recordings start empty afterwards."""
    d = AzureOnlineDeployer(client, ENDPOINT, MODEL, sleep=lambda s: None)
    for version in versions:
        d.deploy(model_dir=OUTPUT_URI.format(v=version), version=version, smoke_records=RECORDS)
    client.reset_calls()
    return d


# ------------------------------------------------------------------------------------------------ rollouts


def test_first_deploy_creates_the_endpoint_and_goes_blue(client, clock):
    result = deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=1), version=1, smoke_records=RECORDS)

    assert client.writes() == ["models.create_or_update", "online_endpoints.begin_create_or_update",
                               "online_deployments.begin_create_or_update", "online_endpoints.invoke",
                               "online_endpoints.begin_create_or_update"]
    [model] = client.entities("models.create_or_update")
    assert isinstance(model, Model) and model.type == AssetTypes.MLFLOW_MODEL == "mlflow_model"
    assert (model.name, model.version, model.path) == (MODEL, "1", OUTPUT_URI.format(v=1))
    created, shifted = client.entities("online_endpoints.begin_create_or_update")
    assert isinstance(created, ManagedOnlineEndpoint)
    assert (created.name, created.auth_mode) == (ENDPOINT, "key") and not created.traffic
    [deployment] = client.entities("online_deployments.begin_create_or_update")
    assert isinstance(deployment, ManagedOnlineDeployment)
    assert (deployment.name, deployment.endpoint_name) == ("blue", ENDPOINT)
    assert deployment.model == model_id(1)  # the registered model, by its ARM id
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_DS3_v2", 1)
    assert deployment.tags == {"model_version": "1", "model_name": MODEL}
    assert deployment.environment is None and deployment.code_configuration is None  # no-code MLflow deployment
    # Azure ML's data collector on for the collections the drift check reads, rolled hourly
    # (https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data)
    collector = deployment.data_collector
    assert {name: c.enabled for name, c in collector.collections.items()} == {"model_inputs": "true",
                                                                             "model_outputs": "true"}
    assert collector.rolling_rate == "Hour"  # the wire form: test_entities_serialize_as_azure_ai_ml_sends_them
    [smoke] = client.entities("online_endpoints.invoke")
    assert smoke["deployment"] == "blue" and smoke["endpoint"] == ENDPOINT
    assert shifted.traffic == {"blue": 100} and shifted.mirror_traffic == {}
    assert shifted.tags["live_model_version"] == "1" and "previous_model_version" not in shifted.tags

    assert result["deployed"] == "1" and result["previous"] is None
    assert (result["slot"], result["previous_slot"], result["endpoint"]) == ("blue", None, ENDPOINT)
    assert result["smoke"]["ok"] is True and result["smoke"]["rows"] == 3 and result["smoke"]["deployment"] == "blue"
    assert result["cleanup"] == [] and isinstance(result["seconds"], float)
    assert client.endpoint["traffic"] == {"blue": 100} and list(client.deployments) == ["blue"]


def test_second_deploy_goes_green_and_deletes_blue_after_the_shift(client, clock):
    live_on(client, 1)
    result = deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)

    assert client.writes() == ["models.create_or_update", "online_deployments.begin_create_or_update",
                               "online_endpoints.invoke", "online_endpoints.begin_create_or_update",
                               "online_deployments.begin_delete"]
    [deployment] = client.entities("online_deployments.begin_create_or_update")
    assert deployment.name == "green" and deployment.model == model_id(2) and deployment.tags["model_version"] == "2"
    assert client.entities("online_endpoints.invoke")[0]["deployment"] == "green"
    [shift] = client.entities("online_endpoints.begin_create_or_update")
    assert shift.traffic == {"green": 100} and shift.mirror_traffic == {}
    assert shift.tags["live_model_version"] == "2" and shift.tags["previous_model_version"] == "1"
    assert client.entities("online_deployments.begin_delete") == ["blue"]
    assert result == {**result, "deployed": "2", "previous": "1", "slot": "green", "previous_slot": "blue",
                      "endpoint": ENDPOINT, "cleanup": [{"deployment": "blue", "deleted": True}]}
    assert list(client.deployments) == ["green"] and client.endpoint["traffic"] == {"green": 100}


def test_third_deploy_goes_back_to_blue(client, clock):
    live_on(client, 1, 2)
    result = deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=3), version=3, smoke_records=RECORDS)
    assert (result["slot"], result["previous_slot"], result["previous"]) == ("blue", "green", "2")
    assert list(client.deployments) == ["blue"] and client.endpoint["tags"]["previous_model_version"] == "2"


def test_failed_deployment_leaves_traffic_and_removes_the_failed_deployment(client, clock, caplog):
    live_on(client, 1)
    client.fail_deployment = "ResourceNotReady: User container has crashed or terminated"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DeploymentError) as failure:
        deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)

    message = str(failure.value)
    assert message.startswith(f"deployment green of {MODEL} v2 on endpoint {ENDPOINT} failed: HttpResponseError")
    assert "User container has crashed" in message and "live traffic unchanged (blue 100%)" in message
    assert client.writes() == ["models.create_or_update", "online_deployments.begin_create_or_update",
                               "online_deployments.begin_delete"]
    assert client.entities("online_deployments.begin_delete") == ["green"]
    assert ("online_deployments.get_logs", "green") in client.calls
    assert "No module named 'shared'" in caplog.text  # the container's reason, in the log
    assert client.endpoint["traffic"] == {"blue": 100} and list(client.deployments) == ["blue"]
    assert client.endpoint["tags"]["live_model_version"] == "1"


def test_failed_first_deployment_leaves_an_empty_endpoint(client, clock):
    client.fail_deployment = "ImageBuildFailure"
    with pytest.raises(DeploymentError, match=r"deployment blue .* failed: .*ImageBuildFailure.*no live deployment"):
        deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=1), version=1, smoke_records=RECORDS)
    assert client.deployments == {} and client.endpoint["traffic"] == {}


def test_a_deployment_that_outlives_its_timeout_is_abandoned(client, clock):
    live_on(client, 1)
    client.hang_deployment = True
    with pytest.raises(DeploymentError, match=r"deployment green .* failed: TimeoutError: deployment green did not "
                                              r"finish within 900s; live traffic unchanged \(blue 100%\)"):
        deployer(client, clock, deploy_timeout_s=900).deploy(model_dir=OUTPUT_URI.format(v=2), version=2,
                                                             smoke_records=RECORDS)
    assert client.entities("online_deployments.begin_delete") == ["green"] and list(client.deployments) == ["blue"]


@pytest.mark.parametrize(("answer", "expected"), [
    ("<html>502 Bad Gateway</html>", "the answer is not JSON"),
    (json.dumps({"error": "boom"}), "expected a JSON list of 3 predictions, got an object"),
    (json.dumps([1]), "expected 3 predictions (one per smoke record), got 1"),
    (json.dumps([0, None, 1]), "prediction 1 is null"),
])
def test_malformed_smoke_answer_fails_without_touching_traffic(client, clock, answer, expected):
    live_on(client, 1)
    client.answer = lambda body, deployment: answer
    with pytest.raises(DeploymentError) as failure:
        deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)
    assert str(failure.value).startswith("smoke test of deployment green (model v2) returned malformed output: ")
    assert expected in str(failure.value) and "live traffic unchanged (blue 100%)" in str(failure.value)
    assert client.writes() == ["models.create_or_update", "online_deployments.begin_create_or_update",
                               "online_endpoints.invoke", "online_deployments.begin_delete"]
    assert client.entities("online_deployments.begin_delete") == ["green"]
    assert client.endpoint["traffic"] == {"blue": 100} and list(client.deployments) == ["blue"]


def test_smoke_refused_by_the_model_fails_at_once(client, clock):
    live_on(client, 1)

    def refuse(body, deployment):
        raise http_error(400, "Input data columns do not match the model signature")

    client.answer = refuse
    with pytest.raises(DeploymentError, match=r"smoke test of deployment green \(model v2\) was refused: "
                                              r"HttpResponseError \(HTTP 400\): Input data columns"):
        deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)
    assert len(client.entities("online_endpoints.invoke")) == 1 and clock.sleeps == []
    assert client.endpoint["traffic"] == {"blue": 100} and list(client.deployments) == ["blue"]


def test_smoke_retries_while_the_deployment_warms_up(client, clock):
    live_on(client, 1)
    answers = iter([http_error(503, "Service Unavailable"), http_error(502, "Bad Gateway"), None])

    def warming(body, deployment):
        error = next(answers)
        if error:
            raise error
        return RecordingMLClient.default_answer(body, deployment)

    client.answer = warming
    result = deployer(client, clock, smoke_interval_s=5).deploy(model_dir=OUTPUT_URI.format(v=2), version=2,
                                                                smoke_records=RECORDS)
    assert result["smoke"]["attempts"] == 3 and clock.sleeps == [5, 5] and result["slot"] == "green"
    assert client.endpoint["traffic"] == {"green": 100}


def test_smoke_gives_up_after_its_timeout(client, clock):
    live_on(client, 1)

    def down(body, deployment):
        raise http_error(503, "upstream connect error")

    client.answer = down
    with pytest.raises(DeploymentError, match=r"smoke test of deployment green \(model v2\) got no answer within "
                                              r"30s \(4 attempts\); last error: .*503"):
        deployer(client, clock, smoke_timeout_s=30, smoke_interval_s=10).deploy(
            model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)
    assert clock.sleeps == [10, 10, 10]
    assert client.endpoint["traffic"] == {"blue": 100} and list(client.deployments) == ["blue"]


def test_smoke_request_is_the_documented_mlflow_input_format(client, clock):
    deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=1), version=1, smoke_records=RECORDS)
    [smoke] = client.entities("online_endpoints.invoke")
    body = smoke["body"]
    assert list(body) == ["input_data"] and list(body["input_data"]) == ["columns", "index", "data"]
    assert body["input_data"]["columns"] == list(FALLBACK_RECORD)
    assert body["input_data"]["index"] == [0, 1, 2]
    assert body["input_data"]["data"][1] == [RECORDS[1][c] for c in FALLBACK_RECORD]


def test_smoke_records_default_to_the_models_input_example(client, clock, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    example = {"columns": list(FALLBACK_RECORD), "data": [list(FALLBACK_RECORD.values())] * 2}
    (model_dir / "input_example.json").write_text(json.dumps(example))
    result = deployer(client, clock).deploy(model_dir=str(model_dir), version=1)
    assert result["smoke"]["rows"] == 2
    assert client.entities("models.create_or_update")[0].path == str(model_dir)
    assert client.entities("online_endpoints.invoke")[0]["body"]["input_data"]["data"] == example["data"]


def test_mirror_is_set_before_the_smoke_test_and_cleared_by_the_shift(client, clock):
    live_on(client, 1)
    result = deployer(client, clock, mirror_percent=10, mirror_hold_s=60).deploy(
        model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)

    assert client.writes() == ["models.create_or_update", "online_deployments.begin_create_or_update",
                               "online_endpoints.begin_create_or_update", "online_endpoints.invoke",
                               "online_endpoints.begin_create_or_update", "online_deployments.begin_delete"]
    mirror, shift = client.entities("online_endpoints.begin_create_or_update")
    assert mirror.traffic == {"blue": 100} and mirror.mirror_traffic == {"green": 10}
    assert shift.traffic == {"green": 100} and shift.mirror_traffic == {}
    assert clock.sleeps == [60]  # the mirror ran for mirror_hold_s before the smoke test
    assert result["slot"] == "green" and client.endpoint["mirror"] == {}


def test_mirror_is_cleared_before_a_failed_deployment_is_deleted(client, clock):
    live_on(client, 1)
    client.answer = lambda body, deployment: "not json"
    with pytest.raises(DeploymentError, match="malformed output"):
        deployer(client, clock, mirror_percent=20).deploy(model_dir=OUTPUT_URI.format(v=2), version=2,
                                                          smoke_records=RECORDS)
    assert client.writes() == ["models.create_or_update", "online_deployments.begin_create_or_update",
                               "online_endpoints.begin_create_or_update", "online_endpoints.invoke",
                               "online_endpoints.begin_create_or_update", "online_deployments.begin_delete"]
    mirror, restore = client.entities("online_endpoints.begin_create_or_update")
    assert mirror.mirror_traffic == {"green": 20}
    assert restore.traffic == {"blue": 100} and restore.mirror_traffic == {}
    assert client.endpoint["traffic"] == {"blue": 100} and client.endpoint["mirror"] == {}
    assert list(client.deployments) == ["blue"]


def test_no_mirror_on_a_fresh_endpoint(client, clock):
    deployer(client, clock, mirror_percent=10).deploy(model_dir=OUTPUT_URI.format(v=1), version=1,
                                                      smoke_records=RECORDS)
    assert all(not e.mirror_traffic for e in client.entities("online_endpoints.begin_create_or_update"))


def test_rollback_redeploys_the_previous_registered_version(client, clock):
    live_on(client, 1, 2)
    result = deployer(client, clock).rollback(smoke_records=RECORDS)

    assert client.writes() == ["online_deployments.begin_create_or_update", "online_endpoints.invoke",
                               "online_endpoints.begin_create_or_update", "online_deployments.begin_delete"]
    assert ("models.get", (MODEL, "1")) in client.calls  # the registered version is reused, not re-registered
    [deployment] = client.entities("online_deployments.begin_create_or_update")
    assert (deployment.name, deployment.model, deployment.tags["model_version"]) == ("blue", model_id(1), "1")
    [shift] = client.entities("online_endpoints.begin_create_or_update")
    assert shift.traffic == {"blue": 100}
    assert shift.tags["live_model_version"] == "1" and shift.tags["previous_model_version"] == "2"
    assert client.entities("online_deployments.begin_delete") == ["green"]
    assert result["rolled_back"] is True
    assert (result["deployed"], result["previous"], result["slot"], result["previous_slot"]) == ("1", "2", "blue",
                                                                                                 "green")


def test_rollback_from_a_version_that_is_no_longer_live_is_refused(client, clock):
    live_on(client, 1, 2)  # v2 live, v1 before it
    with pytest.raises(DeploymentError, match="v3 is no longer live"):
        deployer(client, clock).rollback(smoke_records=RECORDS, from_version=3)
    assert client.writes() == []
    assert deployer(client, clock).rollback(smoke_records=RECORDS, from_version=2)["deployed"] == "1"


def test_rollback_without_a_previous_version_fails(client, clock):
    with pytest.raises(DeploymentError, match=f"endpoint {ENDPOINT} does not exist"):
        deployer(client, clock).rollback()
    live_on(client, 1)
    with pytest.raises(DeploymentError, match="records no previous model version"):
        deployer(client, clock).rollback()
    assert client.writes() == [] and client.endpoint["traffic"] == {"blue": 100}


def test_a_redelivered_version_reuses_its_registration(client, clock):
    live_on(client, 1)
    client.endpoint["traffic"] = {"blue": 100}
    result = deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=1), version=1, smoke_records=RECORDS)
    assert ("models.get", (MODEL, "1")) in client.calls
    assert result["slot"] == "green" and result["previous"] == "1"


def test_a_failed_registration_touches_nothing_and_keeps_sas_tokens_out(client, clock, caplog):
    caplog.set_level(logging.DEBUG)
    live_on(client, 1)
    url = "https://acct.blob.core.windows.net/azureml/run-2/model?sv=2024-08-04&sig=S4sS1gn4ture%3D"
    client.fail_register = http_error(403, f"AuthorizationPermissionMismatch reading {url}")
    with pytest.raises(DeploymentError, match=rf"registering {MODEL} v2 from https://acct.blob.core.windows.net/"
                                              r"azureml/run-2/model failed: HttpResponseError \(HTTP 403\)") as failure:
        deployer(client, clock).deploy(model_dir=url, version=2, smoke_records=RECORDS)
    assert client.writes() == ["models.create_or_update"] and client.endpoint["traffic"] == {"blue": 100}
    assert "S4sS1gn4ture" not in str(failure.value) and "sig=***" in str(failure.value)
    assert "S4sS1gn4ture" not in caplog.text


def test_an_endpoint_split_by_hand_is_left_alone(client, clock):
    live_on(client, 1)
    client.deployments["green"] = copy.deepcopy(client.deployments["blue"])
    client.deployments["green"].name = "green"
    client.endpoint["traffic"] = {"blue": 50, "green": 50}
    with pytest.raises(DeploymentError, match=r"splits live traffic blue 50%, green 50%"):
        deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)
    assert client.writes() == ["models.create_or_update"]


def test_an_endpoint_made_in_the_studio_is_taken_over_and_can_be_rolled_back_to(client, clock):
    automl_id = f"{WORKSPACE}/models/AutoMLbank42/versions/1"  # the model the studio deployed, no tags of ours
    client.models_store[("AutoMLbank42", "1")] = Model(id=automl_id, name="AutoMLbank42", version="1",
                                                       type="mlflow_model", path=OUTPUT_URI.format(v=0))
    client.deployments["automl-best"] = ManagedOnlineDeployment(
        name="automl-best", endpoint_name=ENDPOINT, model=automl_id, instance_type="Standard_DS3_v2",
        instance_count=1, provisioning_state="Succeeded")
    client.endpoint = {"name": ENDPOINT, "auth_mode": "key", "tags": {}, "traffic": {"automl-best": 100},
                       "mirror": {}}
    result = deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=1), version=1, smoke_records=RECORDS)
    assert (result["slot"], result["previous_slot"], result["previous"]) == ("blue", "automl-best", "1")
    assert client.entities("online_deployments.begin_delete") == ["automl-best"]
    assert client.endpoint["tags"]["previous_model"] == "azureml:AutoMLbank42:1"

    client.reset_calls()
    rolled = deployer(client, clock).rollback(smoke_records=RECORDS)
    assert ("models.get", ("AutoMLbank42", "1")) in client.calls
    [deployment] = client.entities("online_deployments.begin_create_or_update")
    assert (deployment.name, deployment.model) == ("green", automl_id)
    assert deployment.tags == {"model_version": "1", "model_name": "AutoMLbank42"}
    assert (rolled["deployed"], rolled["previous"]) == ("1", "1")
    assert client.endpoint["tags"]["previous_model"] == f"azureml:{MODEL}:1"


def test_the_live_version_is_read_fresh_when_several_app_instances_deploy(client, clock):
    first, second = deployer(client, clock), deployer(client, clock)
    first.deploy(model_dir=OUTPUT_URI.format(v=1), version=1, smoke_records=RECORDS)  # blue = 1
    second.deploy(model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)  # green = 2
    second.deploy(model_dir=OUTPUT_URI.format(v=3), version=3, smoke_records=RECORDS)  # blue = 3
    result = first.deploy(model_dir=OUTPUT_URI.format(v=4), version=4, smoke_records=RECORDS)
    assert (result["previous_slot"], result["previous"]) == ("blue", "3")  # not the "1" it saw there itself


def test_status_reports_traffic_and_model_versions(client, clock):
    assert deployer(client, clock).status() == {"endpoint": ENDPOINT, "exists": False, "traffic": {},
                                                "mirror_traffic": {}, "deployments": []}
    live_on(client, 1, 2)
    status = deployer(client, clock).status()
    assert status["traffic"] == {"green": 100} and status["mirror_traffic"] == {}
    assert (status["live_version"], status["previous_version"], status["auth_mode"]) == ("2", "1", "key")
    assert status["scoring_uri"] == f"https://{ENDPOINT}.{LOCATION}.inference.ml.azure.com/score"
    [green] = status["deployments"]
    assert green == {"name": "green", "model_version": "2", "model": model_id(2), "instance_type": "Standard_DS3_v2",
                     "instance_count": 1, "provisioning_state": "Succeeded", "traffic": 100, "mirror": 0}


def test_constructor_rejects_what_the_service_would():
    with pytest.raises(ValueError, match="mirror_percent"):
        AzureOnlineDeployer(object(), ENDPOINT, MODEL, mirror_percent=60)
    with pytest.raises(ValueError, match="instance_count"):
        AzureOnlineDeployer(object(), ENDPOINT, MODEL, instance_count=0)


# ------------------------------------------------------------------------------------------------ entities


def test_entities_serialize_as_azure_ai_ml_sends_them(client, clock):
    live_on(client, 1)
    deployer(client, clock, instance_type="Standard_F4s_v2", instance_count=2, mirror_percent=10).deploy(
        model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)
    model, deployment, mirror, shift = client.wire
    assert model["properties"]["modelType"] == "mlflow_model"
    assert model["properties"]["modelUri"] == OUTPUT_URI.format(v=2)
    assert deployment == {
        "location": LOCATION,
        "properties": {"model": model_id(2), "properties": {}, "environmentVariables": {},
                       "appInsightsEnabled": False, "instanceType": "Standard_F4s_v2",
                       "endpointComputeType": "Managed", "description": f"{MODEL} v2",
                       "dataCollector": {"collections": {"model_inputs": {"dataCollectionMode": "enabled"},
                                                         "model_outputs": {"dataCollectionMode": "enabled"}},
                                         "rollingRate": "Hour"}},
        "tags": {"model_version": "2", "model_name": MODEL},
        "sku": {"name": "Default", "capacity": 2},
    }
    assert "environmentId" not in deployment["properties"] and "codeConfiguration" not in deployment["properties"]
    assert mirror["properties"]["authMode"] == "Key"
    assert mirror["properties"]["traffic"] == {"blue": 100} and mirror["properties"]["mirrorTraffic"] == {"green": 10}
    assert shift["properties"]["traffic"] == {"green": 100} and shift["properties"]["mirrorTraffic"] == {}
    assert shift["tags"]["live_model_version"] == "2" and shift["tags"]["previous_model_version"] == "1"
    assert all(isinstance(v, str) for v in shift["tags"].values())


def test_new_endpoint_serializes_with_key_auth(client, clock):
    deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=1), version=1, smoke_records=RECORDS)
    endpoint = client.wire[1]
    assert endpoint["properties"]["authMode"] == "Key" and endpoint["location"] == LOCATION
    assert endpoint["tags"] == {"model_name": MODEL}


def test_mlflow_request_makes_numpy_values_and_nan_json():
    body = mlflow_request([{"age": np.int64(41), "euribor3m": np.float64(float("nan")), "job": "admin."}])
    assert json.dumps(body, allow_nan=False)
    assert body["input_data"]["data"] == [[41, None, "admin."]]


def test_parse_predictions_accepts_the_service_shapes():
    assert parse_predictions("[0, 1]", 2) == [0, 1]
    assert parse_predictions(json.dumps(json.dumps(["no", "yes"])), 2) == ["no", "yes"]
    assert parse_predictions(b'{"predictions": [1]}', 1) == [1]


# ------------------------------------------------------------------------------------------------ secrets


def test_endpoint_key_never_appears_in_errors_or_logs(client, clock, caplog):
    caplog.set_level(logging.DEBUG)
    live_on(client, 1)
    d = deployer(client, clock)
    assert d.primary_key() == KEY  # handed to the scoring client only

    def leaky(body, deployment):  # a service error that echoes the request headers
        raise http_error(401, f"Unauthorized; request headers: Authorization: Bearer {KEY}, "
                              f"x-api-key={SECOND_KEY}, {{\"primaryKey\": \"{KEY}\"}}")

    client.answer = leaky
    with pytest.raises(DeploymentError) as failure:
        d.deploy(model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)
    logging.getLogger("handler").exception("completion failed: %s", failure.value)  # as on_run_completed logs it
    for text in (str(failure.value), caplog.text, json.dumps(d.status())):
        assert KEY not in text and SECOND_KEY not in text
    assert "Bearer ***" in str(failure.value) and "HTTP 401" in str(failure.value)
    assert failure.value.__suppress_context__  # the unredacted service error is not chained into tracebacks


def test_bearer_tokens_are_redacted_even_before_the_key_was_read(client, clock, caplog):
    caplog.set_level(logging.DEBUG)
    live_on(client, 1)
    client.fail_deployment = f"probe failed: GET /score with Authorization: Bearer {KEY}"
    with pytest.raises(DeploymentError) as failure:
        deployer(client, clock).deploy(model_dir=OUTPUT_URI.format(v=2), version=2, smoke_records=RECORDS)
    assert KEY not in str(failure.value) and KEY not in caplog.text


# ------------------------------------------------------------------------------------------------ scoring


class FakeSession:
    def __init__(self, status=200, text="[1]", headers=None):
        self.requests = []
        self.response = SimpleNamespace(status_code=status, text=text, headers=headers or {})

    def post(self, url, **kwargs):
        self.requests.append((url, kwargs))
        return self.response


def test_scorer_speaks_mlflow_and_reports_the_answering_version(client, clock):
    live_on(client, 1, 2)
    session = FakeSession(text="[1, 0]", headers={"azureml-model-deployment": "green"})
    scorer = deployer(client, clock).scorer(session=session)
    answer = scorer.score(RECORDS[:2])
    assert answer == {"result": ["yes", "no"], "model_version": "2", "deployment": "green"}
    [(url, kwargs)] = session.requests
    assert url == f"https://{ENDPOINT}.{LOCATION}.inference.ml.azure.com/score"
    assert kwargs["headers"]["Authorization"] == f"Bearer {KEY}"
    assert kwargs["json"] == mlflow_request(RECORDS[:2])


def test_scorer_errors_do_not_echo_the_key():
    session = FakeSession(status=401, text=f"bad key {KEY}")
    with pytest.raises(DeploymentError, match="scoring request answered 401") as failure:
        AzureEndpointScorer("https://x/score", KEY, session=session).score(RECORDS[:1])
    assert KEY not in str(failure.value)


def test_scoring_base_url_fits_scoring_client(client, clock):
    live_on(client, 1)
    assert deployer(client, clock).scoring_base_url() == f"https://{ENDPOINT}.{LOCATION}.inference.ml.azure.com"
