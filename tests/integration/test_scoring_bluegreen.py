"""Blue/green on the local scoring endpoint: deploys go to the idle slot, switches are atomic, rollback is
instant, and an error spike after a deploy rolls back by itself.

The models are small ColumnTransformer -> LightGBM pipelines (about a second each, not a training run). A
"strict" model refuses unseen categories at predict time: it passes its smoke test on known records, then
answers 500 for a record with an unseen job, which is the server-side failure the auto-rollback watches for.

Each server test gets its own real server process (uvicorn on 127.0.0.1, started with --rollback-window /
--rollback-error-rate flags) and deploys what it needs through fixtures, so every test passes alone and in any
order; the in-flight tests run the app in this process, so they can hold a model or a load on purpose. How
long a rollback takes is measured by bench/timings.py, not asserted here.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import requests
import uvicorn

from local.processes import free_port, python_argv, start_on_free_ports
from local.scoring_server import BlueGreen, NothingToRollBack, create_app
from shared.adapters.scoring import DeploymentError, LocalScoringDeployer
from shared.domain import schema
from shared.scoring.model_digest import folder_digest
from shared.scoring.payloads import mlflow_request
from shared.scoring.runtime import ScoringModel
from tests.waiting import wait_for

SCORING_KEY = "bg-score-key-41c2"
ADMIN_KEY = "bg-admin-key-9e77"
UNSEEN_JOB = "astronaut"


def save_pipeline_model(out: Path, frame: pd.DataFrame, *, strict: bool = False, seed: int = 0) -> Path:
    """An MLflow model of a small OrdinalEncoder + LightGBM pipeline; `strict` ones fail on unseen categories."""
    import mlflow.sklearn
    from lightgbm import LGBMClassifier
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    cats = [c for c in schema.FEATURES if schema.COLUMNS[c] == "cat"]
    nums = [c for c in schema.FEATURES if c not in cats]
    encoder = (OrdinalEncoder(handle_unknown="error") if strict
               else OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))
    pipeline = Pipeline([("prep", ColumnTransformer([("cat", encoder, cats), ("num", "passthrough", nums)])),
                         ("model", LGBMClassifier(n_estimators=20, random_state=seed, n_jobs=1, verbose=-1))])
    features = frame[list(schema.FEATURES)]
    pipeline.fit(features, (frame[schema.TARGET] == "yes").astype(int))
    example = features.head(5)
    mlflow.sklearn.save_model(pipeline, str(out), serialization_format="pickle", input_example=example,
                              signature=infer_signature(example, pipeline.predict(example)),
                              pip_requirements=["scikit-learn", "lightgbm"])
    return out


@pytest.fixture(scope="module")
def frame(small_bank_csv) -> pd.DataFrame:
    return pd.read_csv(small_bank_csv, nrows=1200)


@pytest.fixture(scope="module")
def records(frame) -> list[dict]:
    return frame[list(schema.FEATURES)].head(200).to_dict(orient="records")


@pytest.fixture(scope="module")
def models(frame, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bg-models")
    return {"a": save_pipeline_model(root / "a", frame, seed=1), "b": save_pipeline_model(root / "b", frame, seed=2),
            "strict": save_pipeline_model(root / "strict", frame, strict=True, seed=3)}


@pytest.fixture
def server(tmp_path, models):
    """A fresh server with nothing deployed."""
    yield from scoring_server(tmp_path, "--rollback-window", "30", "--rollback-error-rate", "0.2",
                              "--models-root", str(models["a"].parent))


@pytest.fixture
def v1_live(server, models, records):
    """Model a deployed as v1: live on blue, green empty."""
    answer = deploy(server, models["a"], "1", smoke_records=records[:5])
    assert answer.status_code == 200, answer.text
    return server


@pytest.fixture
def v2_live(v1_live, models):
    """Then model b as v2: live on green, v1 still loaded on blue."""
    answer = deploy(v1_live, models["b"], "2")
    assert answer.status_code == 200, answer.text
    return v1_live


@pytest.fixture
def v1_back(v2_live):
    """Then rolled back: v1 live on blue again, v2 loaded on green."""
    answer = admin(v2_live, "POST", "/admin/rollback")
    assert answer.status_code == 200 and answer.json()["rolled_back_to"] == "1", answer.text
    return v2_live


def serve_from_start(model_dir: Path, version: str) -> list[str]:
    """Flags that make a server load `model_dir` at start: its folder is the models root, with its digest."""
    return ["--models-root", str(model_dir.parent), "--model-dir", str(model_dir), "--model-version", version,
            "--model-digest", folder_digest(model_dir)]


def scoring_server(log_dir, *flags: str, scoring_key: str = SCORING_KEY, admin_key: str = ADMIN_KEY,
                   env_extra: dict | None = None):
    """A real scoring server process on a free loopback port, stopped when the fixture ends."""
    env = {"SCORING_KEY": scoring_key, "SCORING_ADMIN_KEY": admin_key, **(env_extra or {})}
    child, (port,) = start_on_free_ports(
        "scoring", 1, lambda ports: python_argv("local.scoring_server", "--port", str(ports[0]), *flags),
        log_dir=log_dir, env=env)
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", log=child.log_path)
    finally:
        child.stop()


def admin(server, method: str, path: str, key: str = ADMIN_KEY, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, server.url + path, headers=headers, timeout=60, **kwargs)


def deploy(server, model_dir: Path, version: str, **extra) -> requests.Response:
    """POST /admin/deploy with the folder's own digest (what the registry would have recorded)."""
    body = {"model_dir": str(model_dir), "version": version, "digest": folder_digest(model_dir), **extra}
    return admin(server, "POST", "/admin/deploy", json=body)


def score(server, records: list[dict], session=None) -> requests.Response:
    """POST /score in the one format (an Azure ML no-code MLflow deployment's)."""
    return (session or requests).post(server.url + "/score", json=mlflow_request(records), timeout=30,
                                      headers={"Authorization": f"Bearer {SCORING_KEY}"})


def served(server, records: list[dict]) -> str:
    """The model version that answered, learnt as every client does (shared/adapters/scoring.py): the endpoint
    names the deployment in `azureml-model-deployment`, and the deployment's model is asked for."""
    answer = score(server, records)
    assert answer.status_code == 200, answer.text
    return status(server)["slots"][answer.headers["azureml-model-deployment"]]["version"]


def status(server) -> dict:
    answer = admin(server, "GET", "/admin/status")
    assert answer.status_code == 200, answer.text
    return answer.json()


# ------------------------------------------------------------------------------------ state, no server


def fake_model(version: str) -> SimpleNamespace:
    return SimpleNamespace(version=version, model_dir=Path(f"/models/{version}"))


def test_the_watch_counts_only_server_errors_within_the_window():
    state = BlueGreen(window=10, error_rate=0.2, min_failures=3)
    state.deploy(fake_model("1"))
    new, _ = state.deploy(fake_model("2"))
    for code in (400, 400, 500, 200, 500, 400):
        state.record(new, code)
    assert state.live is new and (new.requests, new.errors) == (6, 2)
    state.record(new, 503)  # 3 of 7 (43 %) > 20 %, and 3 failures: back to v1
    assert state.live.model.version == "1" and state.live.slot == "blue"
    assert state.events[-1]["event"] == "auto_rollback" and state.events[-1]["from_version"] == "2"
    assert "3 of the first 7 requests" in state.events[-1]["reason"]
    state.record(new, 500)  # a late failure of the old generation changes nothing
    assert state.live.model.version == "1" and len(state.events) == 3


def test_failures_after_the_window_or_under_the_rate_do_not_roll_back():
    state = BlueGreen(window=10, error_rate=0.5, min_failures=3)
    state.deploy(fake_model("1"))
    new, _ = state.deploy(fake_model("2"))
    for code in [200] * 3 + [500] * 3:  # 3 of 6 is 50 %: not over the rate
        state.record(new, code)
    for code in [200] * 4 + [500] * 5:  # past the first 10 requests: no longer watched
        state.record(new, code)
    assert state.live is new and state.status()["auto_rollback"]["watching"] is False


def test_the_first_deploy_is_not_watched_and_rollback_needs_a_second_model():
    state = BlueGreen()
    with pytest.raises(NothingToRollBack, match="no model has been deployed yet"):
        state.rollback()
    first, previous = state.deploy(fake_model("1"))
    assert previous is None and first.slot == "blue" and first.watch == 0
    with pytest.raises(NothingToRollBack, match="slot green is empty"):
        state.rollback()
    for _ in range(5):
        state.record(first, 500)
    assert state.live is first


# ------------------------------------------------------------------------------------------ the server


def test_admin_routes_need_the_admin_key(server):
    for method, path in (("POST", "/admin/rollback"), ("GET", "/admin/status"), ("POST", "/admin/deploy")):
        for key in (None, SCORING_KEY, "wrong"):
            answer = admin(server, method, path, key=key)
            assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
            assert SCORING_KEY not in answer.text and ADMIN_KEY not in answer.text


def test_rollback_before_any_deploy_is_409(server):
    answer = admin(server, "POST", "/admin/rollback")
    assert answer.status_code == 409
    assert answer.json() == {"error": "nothing to roll back: no model has been deployed yet"}
    body = status(server)
    assert body["live"] is None and body["counters"] is None and body["events"] == []
    assert body["auto_rollback"] == {"window": 30, "error_rate": 0.2, "min_failures": 3, "watching": False}


def test_first_deploy_goes_to_blue_and_rollback_has_nowhere_to_go(server, models, records):
    answer = deploy(server, models["a"], "1", smoke_records=records[:5])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["deployed"], body["previous"], body["slot"], body["previous_slot"]) == ("1", None, "blue", None)
    assert body["smoke"] == {"rows": 5, "ok": True} and body["seconds"] >= 0
    answer = admin(server, "POST", "/admin/rollback")
    assert answer.status_code == 409
    assert answer.json()["error"] == ("nothing to roll back to: slot green is empty (only model v1 has been "
                                      "deployed)")
    assert served(server, records[:1]) == "1"


def test_second_deploy_goes_to_the_idle_slot_and_keeps_the_previous_loaded(v1_live, models, records):
    server = v1_live
    answer = deploy(server, models["b"], "2")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["deployed"], body["previous"], body["slot"], body["previous_slot"]) == ("2", "1", "green", "blue")
    scored = score(server, records[:2])
    assert scored.status_code == 200 and len(scored.json()) == 2
    assert scored.headers["azureml-model-deployment"] == "green" and "x-model-version" not in scored.headers
    assert served(server, records[:2]) == "2"
    state = status(server)
    assert state["live"] == "green"
    assert state["slots"]["blue"]["version"] == "1" and state["slots"]["blue"]["live"] is False
    assert state["slots"]["blue"]["model_dir"] == str(models["a"]) and state["slots"]["blue"]["loaded_at"]
    assert state["slots"]["green"] == {"live": True, "version": "2", "model_dir": str(models["b"]),
                                       "loaded_at": state["slots"]["green"]["loaded_at"]}
    assert state["counters"]["slot"] == "green" and state["counters"]["requests"] == 2
    assert state["counters"]["errors"] == 0 and state["auto_rollback"]["watching"] is True
    assert [e["event"] for e in state["events"]] == ["deploy", "deploy"]
    assert state["events"][-1] | {"at": None} == {"event": "deploy", "at": None, "slot": "green", "version": "2",
                                                  "from_slot": "blue", "from_version": "1", "reason": None}


def test_rollback_goes_to_the_previous_version(v2_live, records):
    server = v2_live
    answer = admin(server, "POST", "/admin/rollback")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"rolled_back_to": "1", "from": "2", "slot": "blue", "from_slot": "green"}
    assert served(server, records[:1]) == "1"
    assert requests.get(server.url + "/health", timeout=10).json() == {"status": "ok", "model_version": "1"}
    state = status(server)
    assert state["live"] == "blue" and state["counters"]["requests"] == 1
    assert state["slots"]["green"]["version"] == "2"  # nothing unloaded: the swap only moves the reference
    assert state["events"][-1]["event"] == "rollback" and state["events"][-1]["version"] == "1"
    # and forward again: the other slot still holds v2
    assert admin(server, "POST", "/admin/rollback").json()["rolled_back_to"] == "2"


def test_the_deployer_adapter_rolls_back_and_reads_status(v2_live):
    server = v2_live
    deployer = LocalScoringDeployer(server.url, ADMIN_KEY)
    assert deployer.rollback(from_version=2)["rolled_back_to"] == "1"
    with pytest.raises(DeploymentError, match=r"refused \(409\).*model v2 is not live \(v1 is, on slot blue\)"):
        deployer.rollback(from_version=2)  # already done (say, by the auto-rollback): not undone
    assert deployer.status()["live"] == "blue"
    assert deployer.rollback()["rolled_back_to"] == "2" and deployer.rollback()["rolled_back_to"] == "1"
    answer = admin(server, "POST", "/admin/rollback", json={"from_version": True})
    assert answer.status_code == 400 and "from_version" in answer.json()["error"]
    with pytest.raises(DeploymentError, match=r"refused \(401\)") as info:
        LocalScoringDeployer(server.url, "not-the-key").rollback()
    assert "not-the-key" not in str(info.value)
    with pytest.raises(DeploymentError, match="unreachable"):
        LocalScoringDeployer(f"http://127.0.0.1:{free_port()}", ADMIN_KEY, timeout_s=2).status()


def test_switches_under_load_fail_no_request(v1_back, models, records):
    server = v1_back
    failures: list[str] = []
    answered: list[str] = []  # the deployment (slot) that answered each request
    stop = threading.Event()

    def keep_scoring(offset: int) -> None:
        session, i = requests.Session(), offset
        while not stop.is_set():
            try:
                answer = score(server, records[i % 100: i % 100 + 1 + i % 3], session)
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code}: {answer.text[:200]}")
                else:
                    answered.append(answer.headers["azureml-model-deployment"])
            except requests.RequestException as exc:
                failures.append(repr(exc))
            i += 1

    clients = [threading.Thread(target=keep_scoring, args=(n * 17,)) for n in range(3)]
    for client in clients:
        client.start()
    try:
        outcomes = []
        for model, version in ((models["b"], "3"), (models["a"], "4")):
            outcomes.append(deploy(server, model, version).json()["slot"])
            greens = answered.count("green")
            wait_for(lambda g=greens: answered.count("green") > g, timeout=30,
                     what=f"a client answered by v{version} (green)")
            outcomes.append(admin(server, "POST", "/admin/rollback").json())
        after = len(answered)
        wait_for(lambda: len(answered) >= after + 10, timeout=30, what="ten more answers after the last switch")
    finally:
        stop.set()
        for client in clients:
            client.join(30)
    assert failures == []
    assert outcomes[0] == "green" and outcomes[1]["rolled_back_to"] == "1" and outcomes[2] == "green"
    assert outcomes[3] == {"rolled_back_to": "1", "from": "4", "slot": "blue", "from_slot": "green"}
    assert set(answered) == {"blue", "green"}


def test_a_failed_smoke_test_leaves_traffic_where_it_was(v1_back, models, records):
    server = v1_back
    before = status(server)
    bad = [{k: v for k, v in records[0].items() if k != "age"}]
    answer = deploy(server, models["b"], "5", smoke_records=bad)
    assert answer.status_code == 422 and answer.json()["serving"] == "1"
    after = status(server)
    assert after["live"] == before["live"] == "blue" and after["slots"] == before["slots"]
    assert after["events"] == before["events"]


def test_an_error_spike_after_a_deploy_rolls_back_automatically(v1_back, models, records):
    server = v1_back
    answer = deploy(server, models["strict"], "6", smoke_records=records[:5])
    assert answer.status_code == 200 and answer.json()["slot"] == "green", answer.text
    unseen = {**records[0], "job": UNSEEN_JOB}
    bad_input = {**records[0], "age": "old"}
    for _ in range(5):  # a request the runtime refuses (Azure: 500 inside too) is not the model's fault
        refused = score(server, [bad_input])
        assert (refused.status_code, refused.headers["ms-azureml-model-error-statuscode"]) == (424, "500")
    assert score(server, records[:3]).status_code == 200
    for _ in range(2):
        failed = score(server, [unseen])
        assert (failed.status_code, failed.headers["ms-azureml-model-error-statuscode"]) == (424, "500")
        assert failed.json() == {"message": "An unexpected error occurred in scoring script. Check the logs for "
                                            "more info."}
    assert status(server)["live"] == "green"  # 2 failures: fewer than 3
    assert score(server, [unseen]).status_code == 424  # 3 of 9 (33 %) > 20 %: roll back
    assert served(server, [unseen]) == "1"
    state = status(server)
    assert state["live"] == "blue" and state["slots"]["green"]["version"] == "6"
    event = state["events"][-1]
    assert event["event"] == "auto_rollback" and (event["version"], event["from_version"]) == ("1", "6")
    assert event["reason"].startswith("3 of the first 9 requests on model v6 failed with a server error")
    assert "auto-rollback to model v1 (slot blue)" in server.log.read_text()


def test_keys_never_reach_the_log(v1_back):
    server = v1_back
    text = server.log.read_text(errors="replace")
    assert "deployed model v2" in text and "rolled back from model v2" in text
    assert SCORING_KEY not in text and ADMIN_KEY not in text


# ------------------------------------------------------------------------------- in-flight, in-process


@pytest.fixture
def inproc(models):
    """The app under uvicorn in a thread of this process, so a test can slow a model or a load down."""
    app = create_app(SCORING_KEY, ADMIN_KEY, rollback_window=0, models_root=models["a"].parent)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))  # binds at start
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20, every=0.02, what="the in-process server to start")
    try:
        port = server.servers[0].sockets[0].getsockname()[1]
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", app=app)
    finally:
        server.should_exit = True
        thread.join(10)


def held(function, entered: threading.Event, release: threading.Event):
    """`function` that, once called, says so and waits for the test to let it go on."""
    def hold(*args, **kwargs):
        entered.set()
        release.wait(30)
        return function(*args, **kwargs)
    return hold


def test_a_request_in_flight_keeps_its_model_through_a_rollback(inproc, models, records):
    assert deploy(inproc, models["a"], "1").status_code == 200
    assert deploy(inproc, models["b"], "2").status_code == 200
    v2 = inproc.app.state.slots.live.model
    entered, release = threading.Event(), threading.Event()
    v2.predict_records = held(v2.predict_records, entered, release)  # over 64 records: scored off the event loop
    answers: list[requests.Response] = []
    in_flight = threading.Thread(target=lambda: answers.append(score(inproc, records[:100])))
    in_flight.start()
    try:
        assert entered.wait(30), "the request never reached the model"
        rolled = admin(inproc, "POST", "/admin/rollback")  # answered while v2 still holds the request
        assert rolled.status_code == 200 and in_flight.is_alive()
        assert served(inproc, records[:1]) == "1"
    finally:
        release.set()
    in_flight.join(10)
    (answer,) = answers
    assert answer.status_code == 200 and answer.headers["azureml-model-deployment"] == "green"  # v2's slot
    assert len(answer.json()) == 100


def test_scoring_and_rollback_never_wait_for_a_deploy(inproc, models, records, monkeypatch):
    assert deploy(inproc, models["a"], "1").status_code == 200
    assert deploy(inproc, models["b"], "2").status_code == 200
    entered, release = threading.Event(), threading.Event()
    monkeypatch.setattr(ScoringModel, "load", held(ScoringModel.load, entered, release))
    deploying: list[requests.Response] = []
    slow_deploy = threading.Thread(target=lambda: deploying.append(deploy(inproc, models["a"], "3")))
    slow_deploy.start()
    try:
        assert entered.wait(30), "the deploy never started loading"
        # all three are answered while the load is held
        assert status(inproc)["deploying"] == "3"
        assert served(inproc, records[:1]) == "2"
        assert admin(inproc, "POST", "/admin/rollback").json()["rolled_back_to"] == "1"
        assert slow_deploy.is_alive()
    finally:
        release.set()
    slow_deploy.join(30)
    body = deploying[0].json()
    # the new model goes to the slot that is idle when it is ready: v1 stays loaded for a rollback
    assert (body["deployed"], body["slot"], body["previous"], body["previous_slot"]) == ("3", "green", "1", "blue")
    assert status(inproc)["slots"]["blue"]["version"] == "1"
