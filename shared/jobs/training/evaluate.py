"""Score a labelled file with a saved model: the figures Azure AutoML reports, computed the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from shared.domain import schema
from shared.domain.validation import validate_csv

BATCH = 5000


class EvaluationError(ValueError):
    pass


def auc_weighted(y_true: np.ndarray, p_yes: np.ndarray) -> float:
    """AutoML's AUC_weighted: one-vs-rest AUC per class, averaged with class support as weights."""
    onehot = np.column_stack([1 - y_true, y_true])
    return float(roc_auc_score(onehot, np.column_stack([1 - p_yes, p_yes]), average="weighted"))


def evaluate(model_dir: Path, data: bytes, *, max_bytes: int = 2 * 1024**3) -> dict:
    from shared.scoring.runtime import ModelLoadError, ScoringModel

    result = validate_csv(data, min_rows=1, max_bytes=max_bytes)
    if not result.ok:
        raise EvaluationError(f"cannot evaluate on this file: {result.reason()}")
    try:
        model = ScoringModel.load(model_dir, version="evaluated")
    except (ModelLoadError, OSError) as exc:
        raise EvaluationError(f"cannot load a model from {model_dir}: {exc}") from None
    return score_frame(model, result.frame)


def score_frame(model, frame) -> dict:
    """AUC / accuracy / F1 / AUC_weighted of a loaded `ScoringModel` on a labelled frame (canonical columns)."""
    return figures(*scored(model, frame))


def scored(model, frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true 0/1, P(yes), predicted 0/1) of a loaded `ScoringModel` on a labelled frame (canonical columns)."""
    from shared.scoring.runtime import ScoringInputError

    records = frame[[c for c in schema.FEATURES if c in model.features]].to_dict(orient="records")
    labels: list[str] = []
    probabilities: list[float] = []
    try:
        for start in range(0, len(records), BATCH):
            answer = model.predict_records(records[start:start + BATCH])
            labels += answer["result"]
            probabilities += answer["probabilities"]
    except ScoringInputError as exc:
        raise EvaluationError(f"the model cannot score this file: {exc}") from None
    y_true = (frame[schema.TARGET].astype(str).str.strip().str.lower() == schema.POSITIVE).to_numpy().astype(int)
    if y_true.min() == y_true.max():
        raise EvaluationError(f"the {len(frame)} labelled rows hold only one class; AUC is undefined")
    return y_true, np.asarray(probabilities, dtype=float), (np.asarray(labels) == schema.POSITIVE).astype(int)


def figures(y_true: np.ndarray, p_yes: np.ndarray, y_pred: np.ndarray) -> dict:
    return {"rows": len(y_true), "auc": round(float(roc_auc_score(y_true, p_yes)), 6),
            "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
            "f1": round(float(f1_score(y_true, y_pred)), 6),
            "auc_weighted": round(auc_weighted(y_true, p_yes), 6)}


BOOTSTRAP_ROUNDS = 200


def paired_auc_difference(y_true: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, *,
                          rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> dict:
    """AUC(new) - AUC(old) on the same rows and its standard error from a paired bootstrap (the same resampled
    rows for both): how much of a difference the held-out rows can tell apart from noise."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        pick = rng.integers(0, len(y_true), len(y_true))
        y = y_true[pick]
        if y.min() == y.max():
            continue
        diffs.append(roc_auc_score(y, p_new[pick]) - roc_auc_score(y, p_old[pick]))
    difference = float(roc_auc_score(y_true, p_new) - roc_auc_score(y_true, p_old))
    se = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None
    return {"auc": round(difference, 6), "se": None if se is None else round(se, 6), "rounds": len(diffs)}
