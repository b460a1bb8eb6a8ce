"""The training step: FLAML searches LightGBM hyperparameters, the best configuration is refit inside a plain
scikit-learn pipeline, evaluated on a stratified holdout and saved as an MLflow model.

The saved model is `Pipeline([ColumnTransformer(OrdinalEncoder for categoricals, numerics passthrough),
LGBMClassifier])` trained on labels `yes` -> 1 / `no` -> 0, so it scores fast and loads with nothing but
scikit-learn and LightGBM. FLAML is only used for the search and never writes files (no log file, no MLflow
autologging).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.domain import schema

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POSITIVE = "yes"
NEGATIVE = "no"
# Exact pins written into the MLflow model's requirements.txt / conda.yaml.
MODEL_REQUIREMENTS = ("scikit-learn", "lightgbm", "pandas", "numpy", "mlflow-skinny")
INPUT_EXAMPLE_ROWS = 5


@dataclass
class TrainResult:
    pipeline: Any  # sklearn.pipeline.Pipeline: ColumnTransformer -> LGBMClassifier, predicts 1 for "yes"
    metrics: dict[str, Any]
    features: list[str]
    excluded_columns: list[str] = field(default_factory=list)
    seed: int = 42
    budget_s: float = 0.0
    best_config: dict[str, Any] = field(default_factory=dict)
    input_example: pd.DataFrame | None = None  # a few training rows (features only), training dtypes


def n_jobs_default() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def code_version() -> str:
    """`git rev-parse HEAD` of the project, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "unknown"


def flaml_automl_class():
    """`flaml.automl.AutoML`, or a clear error when FLAML's AutoML part cannot be imported.

    FLAML 2.7 imports XGBoost when `flaml.automl` loads, even though this step only searches LightGBM. The
    training environment therefore needs an XGBoost build; the CPU-only wheel (`xgboost-cpu`, ~5 MB) is
    enough, instead of `flaml[automl]`'s `xgboost` with its CUDA/NCCL wheels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from flaml.automl.automl import AutoML
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"FLAML AutoML cannot be imported: missing module '{exc.name}' "
                           "(FLAML 2.7 needs XGBoost importable; install `xgboost-cpu`)") from exc
    return AutoML


# --------------------------------------------------------------------------------------------------- data


def _feature_list(exclude_columns: Sequence[str]) -> tuple[list[str], list[str]]:
    excluded = [c.strip() for c in exclude_columns if c and c.strip()]
    if schema.TARGET in excluded:
        raise ValueError(f"the target column '{schema.TARGET}' cannot be excluded")
    unknown = [c for c in excluded if c not in schema.FEATURES]
    if unknown:
        raise ValueError(f"cannot exclude unknown column(s) {', '.join(unknown)}; "
                         f"features are: {', '.join(schema.FEATURES)}")
    features = [c for c in schema.FEATURES if c not in excluded]
    if not features:
        raise ValueError("every feature column is excluded; nothing left to train on")
    return features, list(dict.fromkeys(excluded))


def _target(df: pd.DataFrame) -> np.ndarray:
    if schema.TARGET not in df.columns:
        columns = list(map(str, df.columns))
        hint = ""
        if len(columns) == 1 and ";" in columns[0]:
            hint = " (the header looks semicolon-separated; training expects a comma-separated file)"
        shown = ", ".join(columns[:25]) + (", ..." if len(columns) > 25 else "")
        raise ValueError(f"training data has no target column '{schema.TARGET}'{hint}; columns: {shown}")
    raw = df[schema.TARGET]
    labels = raw.astype("string").str.strip().str.lower()
    bad = labels.isna() | ~labels.isin([POSITIVE, NEGATIVE])
    if bad.any():
        examples = sorted({repr(v) for v in raw[bad].head(50).tolist()})[:5]
        raise ValueError(f"target column '{schema.TARGET}' must be '{POSITIVE}' or '{NEGATIVE}'; "
                         f"{int(bad.sum())} row(s) are not, e.g. {', '.join(examples)}")
    y = (labels == POSITIVE).to_numpy(dtype=np.int64)
    counts = {NEGATIVE: int((y == 0).sum()), POSITIVE: int((y == 1).sum())}
    if min(counts.values()) == 0:
        (present,) = [k for k, v in counts.items() if v]
        raise ValueError(f"target column '{schema.TARGET}' has only one class ('{present}', {len(y)} rows); "
                         f"training needs both '{POSITIVE}' and '{NEGATIVE}'")
    if min(counts.values()) < 10:
        raise ValueError(f"too few rows per class to train and evaluate ({counts}); need at least 10 of each")
    return y


def prepare_features(df: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The feature columns with training dtypes: int64 / float64 numerics, object strings for categoricals."""
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise ValueError(f"training data is missing feature column(s): {', '.join(missing)}")
    out = {}
    for column in features:
        kind = schema.COLUMNS[column]
        values = df[column]
        if kind in ("int", "float"):
            numeric = pd.to_numeric(values, errors="coerce")
            bad = numeric.isna() & values.notna()
            if bad.any():
                example = values[bad].iloc[0]
                raise ValueError(f"column '{column}' must be numeric; {int(bad.sum())} value(s) are not, "
                                 f"e.g. {example!r}")
            if kind == "int" and not numeric.isna().any() and (numeric == np.round(numeric)).all():
                out[column] = numeric.astype(np.int64)
            else:
                out[column] = numeric.astype(np.float64)
        else:
            present = values.notna().to_numpy()
            text = values.astype(str).to_numpy(dtype=object)
            out[column] = pd.Series(np.where(present, text, np.nan), index=df.index, dtype=object)
    return pd.DataFrame(out, index=df.index)


def build_preprocessor(features: Sequence[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    categorical = [c for c in features if c in schema.CATEGORICAL]
    numeric = [c for c in features if c in schema.NUMERIC]
    transformers = []
    if categorical:
        transformers.append(("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                                   dtype=np.float64), categorical))
    if numeric:
        transformers.append(("num", "passthrough", numeric))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def lgbm_params(best_config: Mapping[str, Any], *, seed: int, n_jobs: int) -> dict[str, Any]:
    """FLAML's LightGBM search-space config as `LGBMClassifier` keyword arguments."""
    params = dict(best_config)
    if "log_max_bin" in params:
        params["max_bin"] = (1 << int(params.pop("log_max_bin"))) - 1
    for key in ("n_estimators", "num_leaves", "min_child_samples", "max_bin"):
        if key in params:
            params[key] = int(round(params[key]))
    params.update(random_state=seed, n_jobs=n_jobs, verbose=-1)
    return params


# ---------------------------------------------------------------------------------------------- training


def train(df: pd.DataFrame, *, budget_s: float, seed: int = 42, exclude_columns: Sequence[str] = (),
          holdout: float = 0.2, max_iter: int | None = None, n_jobs: int | None = None) -> TrainResult:
    """Search LightGBM hyperparameters with FLAML for `budget_s` seconds on the training split, refit the best
    configuration inside a scikit-learn pipeline and evaluate it on a stratified holdout.

    `max_iter` caps the number of FLAML trials as well; with it, and a budget that is not the binding limit,
    the search (and so `best_config`) is reproducible for a seed. With the time budget alone, how many trials
    fit depends on the machine's speed.
    """
    from lightgbm import LGBMClassifier
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    started = time.perf_counter()
    if budget_s <= 0:
        raise ValueError(f"budget_s must be positive, got {budget_s}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be a fraction between 0 and 1, got {holdout}")
    if max_iter is not None and max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    features, excluded = _feature_list(exclude_columns)
    y = _target(df)
    X = prepare_features(df, features)
    n_jobs = n_jobs or n_jobs_default()

    X_train, X_hold, y_train, y_hold = train_test_split(X, y, test_size=holdout, stratify=y, random_state=seed)
    preprocessor = build_preprocessor(features)
    Xt_train = preprocessor.fit_transform(X_train)

    automl = flaml_automl_class()()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        automl.fit(X_train=Xt_train, y_train=y_train, task="classification", metric="roc_auc",
                   estimator_list=["lgbm"], time_budget=float(budget_s), max_iter=max_iter, seed=seed,
                   n_jobs=n_jobs, verbose=0, log_file_name="", mlflow_logging=False, retrain_full=False,
                   split_type="stratified")
    searched = time.perf_counter()
    best_config = {k: _plain(v) for k, v in (automl.best_config or {}).items()}
    if not best_config:
        raise RuntimeError("FLAML found no LightGBM configuration within the budget; raise budget_s")

    model = LGBMClassifier(**lgbm_params(best_config, seed=seed, n_jobs=n_jobs))
    pipeline = Pipeline([("prep", clone(preprocessor)), ("model", model)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(X_train, y_train)
        model.set_params(n_jobs=1)  # scoring is mostly small batches: one thread avoids OpenMP start-up cost
        p_hold = pipeline.predict_proba(X_hold)[:, 1]
    predicted = (p_hold > 0.5).astype(np.int64)
    auc = float(roc_auc_score(y_hold, p_hold))
    # Azure ML's AUC_weighted: per-class one-vs-rest AUCs weighted by class support. For a binary problem both
    # per-class AUCs equal the positive-class AUC, so it equals `auc`; computed explicitly to mirror Azure.
    support = np.bincount(y_hold, minlength=2)
    auc_weighted = float((support[1] * auc + support[0] * roc_auc_score(1 - y_hold, 1 - p_hold)) / support.sum())

    metrics: dict[str, Any] = {
        "auc": round(auc, 6),
        "accuracy": round(float(accuracy_score(y_hold, predicted)), 6),
        "f1": round(float(f1_score(y_hold, predicted, zero_division=0)), 6),
        "auc_weighted": round(auc_weighted, 6),
        "search_auc": round(1.0 - float(automl.best_loss), 6),
        "search_trials": len(getattr(automl, "config_history", {}) or {}),
        "train_rows": len(X_train),
        "holdout_rows": len(X_hold),
        "positive_rate": round(float(y.mean()), 6),
        "budget_s": float(budget_s),
        "search_seconds": round(searched - started, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "best_estimator": str(automl.best_estimator),
        "best_config": best_config,
    }
    return TrainResult(pipeline=pipeline, metrics=metrics, features=features, excluded_columns=excluded,
                       seed=seed, budget_s=float(budget_s), best_config=best_config,
                       input_example=X_train.head(INPUT_EXAMPLE_ROWS).reset_index(drop=True))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------------------------------------ saving


def pinned_requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in MODEL_REQUIREMENTS]


def save_model(result: TrainResult, out_dir: Path, *, dataset_version: str = "", dataset_hash: str = "",
               run_id: str = "", input_example: pd.DataFrame | None = None) -> Path:
    """Write `out_dir/model/` (an MLflow model: sklearn + pyfunc flavors, signature, 5-row input example,
    exact pins) and `out_dir/metrics.json`. Returns the model directory.

    The model is written to a temporary sibling first and renamed into place, so `out_dir/model` is either
    complete or absent; an existing one is replaced.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    example = input_example if input_example is not None else result.input_example
    if example is None or example.empty:
        raise ValueError("an input example (a few feature rows) is needed to save the model")
    example = prepare_features(example, result.features).head(INPUT_EXAMPLE_ROWS).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mlflow's hint about integer columns and missing values
        signature = infer_signature(example, result.pipeline.predict(example))

    target = out_dir / "model"
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out_dir))
    staging.rmdir()  # mlflow refuses to save into an existing directory
    try:
        with warnings.catch_warnings(), _quiet("mlflow.sklearn", "mlflow.models.model"):
            warnings.simplefilter("ignore")  # the pickle-format caution: skops is not part of the runtime
            mlflow.sklearn.save_model(
                result.pipeline, str(staging), serialization_format="pickle", signature=signature,
                input_example=example, pip_requirements=pinned_requirements(),
                metadata={"dataset_version": str(dataset_version), "dataset_hash": dataset_hash,
                          "run_id": run_id, "features": list(result.features),
                          "positive_label": POSITIVE, "label_encoding": {NEGATIVE: 0, POSITIVE: 1}})
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

    summary = {
        **result.metrics,
        "dataset_version": str(dataset_version),
        "dataset_hash": dataset_hash,
        "run_id": run_id,
        "seed": result.seed,
        "budget_s": result.budget_s,
        "features": list(result.features),
        "excluded_columns": list(result.excluded_columns),
        "code_version": code_version(),
    }
    tmp = out_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    tmp.replace(out_dir / "metrics.json")
    return target


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Silence MLflow's save-time advice (pickle vs skops) that it logs rather than warns."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


# --------------------------------------------------------------------------------------------- tracking


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
            "code_version": code_version(), "mlflow.source.name": "shared.training.job"}
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
