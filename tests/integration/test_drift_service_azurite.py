"""The drift check service on real Azurite: reference profile from the model folder, the window of collected
scoring inputs and newer datasets, the report stored in blob storage, and every reason not to retrain."""

from __future__ import annotations

import time
import uuid

import pandas as pd
import pytest

from shared.adapters import storage
from shared.adapters.credentials import StaticTokenCredential
from shared.adapters.outbox import Outbox
from shared.adapters.pipeline_client import PublishedPipelineClient
from shared.bootstrap import build_stores, report_writer
from shared.domain import schema
from shared.domain.profile import REFERENCE_PROFILE, build_profile
from shared.domain.validation import canonical_csv, content_hash
from shared.services.check_drift import DriftCheck, DriftPolicy, check_drift
from shared.services.retrain import PipelineTarget, RetrainDispatch
from tests.isolation import isolated_settings

SUBMIT = "/pipelines/v1.0/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/" \
         "workspaces/w/PipelineRuns/PipelineSubmit/p1"
TARGET = PipelineTarget(experiment="exp", datastore="workspaceblobstore", data_input="training_data", budget_s=5)
POLICY = DriftPolicy(min_rows=200, cooldown_s=3600, critical=("euribor3m",))  # the macro signal decides


@pytest.fixture
def env(azurite, httpserver, small_bank_csv, tmp_path):
    settings = isolated_settings(azurite)
    blobs = storage.blob_service(settings)
    for name in (settings.datasets_container, settings.reports_container):
        storage.ensure_container(blobs, name)
    stores = build_stores(settings)
    frame = pd.read_csv(small_bank_csv)
    first = register(stores, frame)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    build_profile(frame).save(model_dir / REFERENCE_PROFILE)
    model = stores.models.register(run_id="run-0", dataset_version=first.version, model_dir=str(model_dir),
                                   metrics={})
    stores.models.set_live(model.version)
    collected: list[pd.DataFrame] = []
    return {"stores": stores, "frame": frame, "collected": collected,
            "reports": report_writer(blobs.get_container_client(settings.reports_container)), "blobs": blobs,
            "pipeline": PublishedPipelineClient(httpserver.url_for(SUBMIT), StaticTokenCredential("t"), max_retries=0),
            "outbox": Outbox(storage.ensure_table(storage.table_service(settings), settings.outbox_table))}


def register(stores, frame: pd.DataFrame):
    data = canonical_csv(frame)
    return stores.datasets.register(data, content_hash=content_hash(data), rows=len(frame), columns=21,
                                    source_blob=f"t/{uuid.uuid4().hex}.csv", source_etag="e", dialect="comma")


def run(env, models=None, now: float | None = None):
    s = env["stores"]
    retrain = RetrainDispatch(outbox=env["outbox"], runs=s.runs, pipeline=env["pipeline"], datasets=s.datasets,
                              audit=s.audit, models=models or s.models, target=TARGET)
    def collected(since: float, until: float) -> pd.DataFrame:
        return pd.concat(env["collected"]) if env["collected"] else pd.DataFrame()

    drift = DriftCheck(policy=POLICY, retrain=retrain, reports=env["reports"], inference=collected)
    return check_drift(drift, past_due=False, now=now)


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in ("emp.var.rate", "euribor3m", "nr.employed", "cons.price.idx"):
        out[column] = out[column] + 3 * out[column].std()
    out["age"] = out["age"] + 20
    out["contact"] = "telephone"
    return out


def test_nothing_collected_is_not_enough_data(env):
    record = run(env)
    assert record.outcome == "skipped" and record.detail.startswith("not enough data")
    env["collected"].append(env["frame"][list(schema.FEATURES)].head(50))
    small = run(env)
    assert small.outcome == "skipped" and "not enough data" in small.detail and small.data["report"]


def test_scoring_inputs_like_the_training_data_are_no_drift_with_a_stored_report(env):
    env["collected"].append(env["frame"][list(schema.FEATURES)].sample(1500, random_state=1))
    record = run(env)
    assert record.outcome == "no_drift", record.detail
    assert record.data["window"]["collected_rows"] == 1500 and record.data["window"]["reference"] == \
        "model v1 profile"
    container, name = record.data["report"].split("/", 1)
    html = env["blobs"].get_blob_client(container, name).download_blob().readall().decode()
    assert "<svg" in html and "no drift" in html.lower()


def test_drifted_inputs_without_newer_labelled_data_are_recorded_not_retrained(env):
    env["collected"].append(shifted(env["frame"])[list(schema.FEATURES)])
    record = run(env)
    assert record.outcome == "skipped" and "already trained on the newest data" in record.detail
    assert {"euribor3m", "nr.employed", "age", "contact"} <= set(record.data["drift"]["drifted_columns"])


def test_a_drifted_upload_submits_a_retrain_once_then_cools_down(env, httpserver):
    newer = register(env["stores"], shifted(env["frame"]))
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": "drift-run"})
    record = run(env)
    (request, _), *_ = httpserver.log
    assert request.get_json()["ParameterAssignments"]["drift_report"] == record.data["report"]  # lineage
    assert record.outcome == "submitted" and record.run_id == "drift-run", record.detail
    assert record.data["window"]["datasets"] == [newer.version]
    assert record.detail.startswith("drift: ") and f"dataset v{newer.version} submitted (drift)" in record.detail
    assert record.data["drift"]["target"]  # labelled data: label drift is part of the check
    in_flight = run(env)
    assert in_flight.outcome == "skipped" and "already in flight" in in_flight.detail
    finished = env["stores"].runs.get("drift-run")
    finished.status = "Deployed"
    env["stores"].runs.save(finished)
    cooled = run(env)
    assert cooled.outcome == "skipped" and "cooldown 3600 s" in cooled.detail
    httpserver.expect_oneshot_request(SUBMIT, method="POST").respond_with_json({"Id": "drift-run-2"})
    later = run(env, now=time.time() + 7200)  # after the cooldown
    assert later.outcome == "submitted" and later.run_id == "drift-run-2", later.detail


def test_no_live_model_is_a_recorded_skip(env):
    class NoModels:
        @staticmethod
        def live():
            return None

    record = run(env, models=NoModels())
    assert record.outcome == "skipped" and "no live model" in record.detail
