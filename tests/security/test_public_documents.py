"""Against the running local stack: what anyone can read shows no data and no key.

- The scoring endpoint's /swagger.json (served without a key) and the deployed model's input examples carry
  synthetic records, not rows of the training file, once a model trained on that file is live.
- The stack's logs (the Functions host's included) and its spans hold none of the stack's secrets after signed and
  unsigned requests that carry them (keys in the query string and headers, a secret in a parameter), the Event
  Grid deliveries with their system key, and a whole training run.
- Logs, spans and secrets are 0600 in 0700 folders, including the ones that existed with 0644/0755 before the
  stack started.
"""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest
import requests

from local.session import upload_file
from shared.bootstrap import build_stores
from shared.domain import schema
from shared.domain.webhook_signature import sign
from shared.settings import Settings
from tests.e2e.api_stack import start_api_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A stack whose state folder, log folder, log files, secrets file, spans file and runs folder already exist
    world-readable (as an older version left them)."""
    local = tmp_path_factory.mktemp("public-stack")
    for folder in (local, local / "logs", local / "pipeline", local / "pipeline" / "runs"):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    for name in ("logs/functions.log", "logs/scoring.log", "logs/pipeline.log", "spans.jsonl"):
        (local / name).write_text("")
        (local / name).chmod(0o644)
    (local / "secrets.json").write_text("{}")  # keys missing: the stack creates them in the existing file
    (local / "secrets.json").chmod(0o644)
    s = start_api_stack(local)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def live_model(stack, small_bank_csv):
    """A model trained on (a slice of) the training file and deployed by the loop: upload, run, completion."""
    upload_file(stack.config.connection_string, small_bank_csv, f"public-{uuid.uuid4().hex[:6]}.csv")
    models = build_stores(Settings(storage_connection=stack.config.connection_string)).models
    return wait_for(lambda: models.live(), timeout=300, what="a deployed model")


def secrets_of(stack) -> dict[str, str]:
    values = {f"stack secret {k}": v for k, v in stack.secrets.items() if isinstance(v, str) and v}
    values["host master key"] = stack.host_keys.master_key
    values.update({f"function key {k}": v for k, v in stack.host_keys.function_keys.items()})
    values.update({f"system key {k}": v for k, v in stack.host_keys.system_keys.items()})
    assert {"stack secret webhook_secret", "stack secret scoring_key", "stack secret scoring_admin_key",
            "stack secret pipeline_token", "system key eventgrid_extension"} <= set(values)
    return values


def as_tuple(record: dict) -> tuple:
    return tuple(record[c] for c in schema.FEATURES if c in record)


def test_the_swagger_shows_no_training_row(stack, live_model, training_rows):
    answer = requests.get(stack.config.scoring_url + "/swagger.json", timeout=30)  # no key
    assert answer.status_code == 200
    doc = answer.json()
    frame = doc["definitions"]["ServiceInput"]["example"]["input_data"]  # the one request format
    examples = [dict(zip(frame["columns"], row, strict=True)) for row in frame["data"]]
    assert examples
    for record in examples:
        assert set(record) == set(schema.FEATURES)
        assert as_tuple(record) not in training_rows, "the public swagger publishes a training row"
    health = requests.get(stack.config.scoring_url + "/health", timeout=30).json()
    assert health["model_version"] == str(live_model.version)  # the document describes the live model


def test_the_deployed_models_examples_are_synthetic(live_model, training_rows):
    model_dir = Path(live_model.model_dir)
    example = json.loads((model_dir / "input_example.json").read_text())
    serving = json.loads((model_dir / "serving_input_example.json").read_text())["dataframe_split"]
    rows = [dict(zip(example["columns"], r, strict=True)) for r in example["data"]]
    rows += [dict(zip(serving["columns"], r, strict=True)) for r in serving["data"]]
    assert rows
    for row in rows:
        assert as_tuple(row) not in training_rows, "the model's input example is a training row"


def test_logs_and_spans_hold_no_secret_after_requests_that_carry_them(stack, live_model):
    secrets = secrets_of(stack)
    key = stack.host_keys.function_keys["default"]
    url = stack.config.host_url + "/api/retrain"
    # unsigned, the key in the query string (the host logs the request line with its query)
    requests.post(url, params={"code": key}, json={"reason": "unsigned"}, timeout=30)
    # unsigned, a wrong key, and the master key in the query
    requests.post(url, params={"code": stack.host_keys.master_key}, data=b"{}", timeout=30)
    # signed, with secrets as parameter values (refused or not, no log line may repeat them)
    for value in (stack.secrets["scoring_admin_key"], stack.secrets["pipeline_token"]):
        body = json.dumps({"dataset": value, "reason": f"r-{uuid.uuid4().hex}"}).encode()
        requests.post(url, data=body, timeout=30, headers={"x-functions-key": key, "Content-Type": "application/json",
                                                            **sign(stack.secrets["webhook_secret"], body)})
    # a forged Event Grid delivery with the real system key in the query
    events = stack.config.host_url + "/runtime/webhooks/eventgrid"
    requests.post(events, params={"functionName": "run_completed", "code": secrets["system key eventgrid_extension"]},
                  json=[], headers={"aeg-event-type": "Notification"}, timeout=30)
    logs = stack.logs_dir
    host_log = logs / "functions.log"
    wait_for(lambda: "/api/retrain" in host_log.read_text(errors="replace"), timeout=30, what="the request lines")
    texts = {p.name: p.read_text(errors="replace") for p in sorted(logs.glob("*.log"))}
    assert {"functions.log", "scoring.log", "pipeline.log"} <= set(texts)
    spans = stack.config.local_dir / "spans.jsonl"
    texts["spans.jsonl"] = spans.read_text(errors="replace") if spans.exists() else ""
    for run_log in stack.config.runs_dir.glob("*/logs.txt"):
        texts[f"run {run_log.parent.name} logs.txt"] = run_log.read_text(errors="replace")
    for where, text in texts.items():
        for name, value in secrets.items():
            assert value not in text, f"{where} holds the {name}"
    assert "code=[REDACTED]" in texts["functions.log"]  # the request lines were logged, masked


def test_logs_spans_and_secrets_are_private(stack, live_model):
    local = stack.config.local_dir
    assert mode(local) == 0o700
    for folder in (local / "logs", local / "pipeline" / "runs", local / "secrets"):
        assert mode(folder) == 0o700, folder
    files = [*sorted((local / "logs").glob("*.log")), local / "secrets.json", local / "spans.jsonl",
             *sorted((local / "secrets").glob("*.json")), *sorted(stack.config.runs_dir.glob("*/logs.txt"))]
    assert any(p.name == "logs.txt" for p in files), "the training run wrote no log"
    for path in files:
        assert mode(path) == 0o600, f"{path} is {oct(mode(path))}"
    for run in stack.config.runs_dir.iterdir():
        if run.is_dir():
            assert mode(run) == 0o700, run
