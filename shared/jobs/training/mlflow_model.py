"""Writing the trained model as an MLflow model folder (sklearn + pyfunc flavors, signature, synthetic input
example, exact pins, its own copy of the code it unpickles) and the run's metrics.json beside it."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import pandas as pd

from shared.domain import schema
from shared.jobs.training.features import INPUT_EXAMPLE_ROWS, prepare_features
from shared.jobs.training.provenance import PROJECT_ROOT, code_version
from shared.jobs.training.train import TrainResult

# Exact pins written into the MLflow model's requirements.txt / conda.yaml.
MODEL_REQUIREMENTS = ("scikit-learn", "lightgbm", "pandas", "numpy", "mlflow-skinny")
# What unpickling the model imports from this project: shipped inside the model (MLflow `code_paths`), so a
# serving environment without this project (an Azure ML no-code deployment, `mlflow models serve`) can load it.
# The pickle names `shared.jobs.training.model.BankEnsemble`; these are that module and the packages above it.
MODEL_CODE = ("shared/__init__.py", "shared/domain/__init__.py", "shared/domain/schema.py",
              "shared/jobs/__init__.py", "shared/jobs/training/__init__.py", "shared/jobs/training/model.py")


def pinned_requirements() -> list[str]:
    """`name==version` of what loading the model needs; for alternatives (the CPU-only XGBoost wheel or the
    full one), the installed distribution."""
    pins = []
    for entry in MODEL_REQUIREMENTS:
        names = entry if isinstance(entry, tuple) else (entry,)
        for name in names:
            try:
                pins.append(f"{name}=={metadata.version(name)}")
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            raise RuntimeError(f"none of {', '.join(names)} is installed; the model cannot be saved with pins")
    return pins


def save_model(result: TrainResult, out_dir: Path, *, dataset_version: str = "", dataset_hash: str = "",
               run_id: str = "", input_example: pd.DataFrame | None = None) -> Path:
    """Write `out_dir/model/` (an MLflow model: sklearn + pyfunc flavors, signature, 5-row synthetic input example,
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
    code = model_code(Path(tempfile.mkdtemp(prefix=".code-", dir=out_dir)))
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out_dir))
    staging.rmdir()  # mlflow refuses to save into an existing directory
    try:
        with warnings.catch_warnings(), _quiet("mlflow.sklearn", "mlflow.models.model"):
            warnings.simplefilter("ignore")  # the pickle-format caution: skops is not part of the runtime
            mlflow.sklearn.save_model(
                result.pipeline, str(staging), serialization_format="pickle", signature=signature,
                input_example=example, pip_requirements=pinned_requirements(), code_paths=[str(code)],
                metadata={"dataset_version": str(dataset_version), "dataset_hash": dataset_hash,
                          "run_id": run_id, "features": list(result.features),
                          "positive_label": schema.POSITIVE,
                          "label_encoding": {schema.NEGATIVE: 0, schema.POSITIVE: 1},
                          "threshold": float(result.pipeline.threshold),
                          "model_class": f"{type(result.pipeline).__module__}.{type(result.pipeline).__qualname__}"})
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(code.parent, ignore_errors=True)
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


def model_code(folder: Path) -> Path:
    """Copy MODEL_CODE into `folder`; returns the `shared` package folder to hand MLflow as a code path."""
    for relative in MODEL_CODE:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / relative, target)
    return folder / "shared"


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
