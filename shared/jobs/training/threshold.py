"""The decision threshold of the saved model: the P(yes) cut that maximizes accuracy on the out-of-fold
predictions (the model predicts "yes" where P(yes) > threshold)."""

from __future__ import annotations

import numpy as np

THRESHOLD_WINDOW = 0.05  # the threshold is the middle of the best accuracy plateau (see accuracy_threshold)


def accuracy_threshold(y: np.ndarray, p_yes: np.ndarray, *, window: float = 0.0) -> float:
    """The P(yes) cut that maximizes accuracy of `p > cut` on (y, p_yes).

    With `window` = 0, the exact best cut: halfway between the score at which the best accuracy is reached and
    the next lower score, so `>` and `>=` agree on these rows. With `window` > 0, the cut (on a 0.001 grid)
    whose accuracy averaged over cuts within +-`window` is highest: the middle of the best plateau. Near its
    maximum the accuracy curve is flat and jagged, so the exact best cut moves a lot with the rows' noise (from
    one seed to the next by 0.05 on 26,000 rows) while the plateau's middle does not.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y, p_yes, drop_intermediate=False)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    correct = tpr * positives + (1.0 - fpr) * negatives
    if window > 0:
        grid = np.round(np.arange(0.001, 1.0, 0.001), 3)
        # correct(cut) for `p > cut`: the ROC point of the lowest threshold still above the cut
        index = np.searchsorted(-thresholds, -grid, side="left") - 1
        at = np.where(index >= 0, correct[np.clip(index, 0, None)], negatives)
        k = max(1, int(round(window / 0.001)))
        smoothed = np.convolve(np.pad(at, k, mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), mode="valid")
        return float(grid[int(np.argmax(smoothed))])
    best = int(np.argmax(correct))  # first (highest) cut on ties
    if best == 0:
        return float(min(1.0, np.nextafter(thresholds[1], 2.0))) if len(thresholds) > 1 else 0.5
    lower = thresholds[best + 1] if best + 1 < len(thresholds) else 0.0
    return float((thresholds[best] + lower) / 2.0)
