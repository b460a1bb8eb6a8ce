"""One LightGBM member of the saved model: its parameters from a configuration the search found (refined to a
lower learning rate) and its fit on the model matrix."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from shared.jobs.training.model import plain

REFINE = 4  # the model: learning rate / REFINE and REFINE x the trees of the found configuration
MAX_TREES = 4000


def native_params(config: Mapping[str, Any], *, seed: int, n_jobs: int, refine: bool = True) -> dict[str, Any]:
    """FLAML's search-space config as LGBMClassifier keyword arguments (FLAML's own mapping, e.g.
    log_max_bin -> max_bin), with a low-learning-rate refinement: learning rate / REFINE and REFINE times
    the trees (capped at MAX_TREES), which trades fit time for a smoother, slightly better model."""
    from flaml.automl.model import LGBMEstimator

    params = {k: plain(v) for k, v in LGBMEstimator(task="binary", n_jobs=n_jobs, **dict(config)).params.items()}
    n_trees = int(params["n_estimators"])
    factor = max(1, min(REFINE, MAX_TREES // max(n_trees, 1))) if refine else 1
    params["n_estimators"] = n_trees * factor
    params["learning_rate"] = float(params["learning_rate"]) / factor
    params["random_state"] = seed
    params["verbose"] = -1
    return params


def fit_member(params: Mapping[str, Any], matrix: np.ndarray, y: np.ndarray):
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(matrix, y)
    model.set_params(n_jobs=1)  # scoring is mostly small batches: no thread-pool start-up per call
    return model
