"""Recording a training run in MLflow tracking: params, numeric metrics, tags and the model folder as artifacts
(a local `file:` store under `.local/mlruns` in the local stack, the workspace's tracking server in Azure ML)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.jobs.training.provenance import code_version
from shared.jobs.training.train import TrainResult


@contextlib.contextmanager
def _file_store_allowed(tracking_uri: str):
    """MLflow >= 3.x refuses the filesystem tracking store unless MLFLOW_ALLOW_FILE_STORE is set; the
    database stores need SQLAlchemy, which mlflow-skinny does not ship. Allow it for this call only."""
    is_file = tracking_uri.startswith("file:") or "://" not in tracking_uri
    previous = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    if is_file and previous is None:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if is_file and previous is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def log_to_mlflow(result: TrainResult, tracking_uri: str, experiment: str, run_name: str | None = None,
                  params: Mapping[str, Any] | None = None, model_dir: Path | None = None) -> str:
    """Record the run in MLflow tracking (a local `file:` store under `.local/mlruns` in the local stack):
    params (budget, seed, excluded columns, best_config.*, plus `params` such as dataset_version and
    dataset_hash), the numeric metrics, tags (run_id, dataset_version, code_version) and `model_dir` as the
    run's `model` artifacts. Returns the MLflow run id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    context = {k: v for k, v in (params or {}).items() if v is not None}
    all_params: dict[str, Any] = {
        "budget_s": result.budget_s,
        "seed": result.seed,
        "excluded_columns": ",".join(result.excluded_columns),
        "features": ",".join(result.features),
        "best_estimator": result.metrics.get("best_estimator", "lgbm"),
        **{f"best_config.{k}": v for k, v in result.best_config.items()},
        **context,
    }
    tags = {"run_id": str(context.get("run_id", "")), "dataset_version": str(context.get("dataset_version", "")),
            "code_version": code_version(), "mlflow.source.name": "shared.jobs.training.job"}
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in result.metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool)]

    with _file_store_allowed(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run = client.create_run(experiment_id, run_name=run_name or None, tags=tags)
        mlflow_run_id = run.info.run_id
        try:
            client.log_batch(mlflow_run_id, metrics=metrics,
                             params=[Param(k, str(v)[:6000]) for k, v in all_params.items()],
                             tags=[RunTag(k, v) for k, v in tags.items()])
            if model_dir is not None:
                client.log_artifacts(mlflow_run_id, str(model_dir), artifact_path="model")
                metrics_file = Path(model_dir).parent / "metrics.json"
                if metrics_file.exists():
                    client.log_artifact(mlflow_run_id, str(metrics_file))
        except Exception:
            client.set_terminated(mlflow_run_id, status="FAILED")
            raise
        client.set_terminated(mlflow_run_id, status="FINISHED")
    return mlflow_run_id
