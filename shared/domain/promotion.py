"""Champion/challenger: whether a newly trained model replaces the live one.

Both models are scored on the same evaluation rows (`evaluation_slice`). The challenger is promoted when its
AUC is not worse than the champion's by more than `margin` and at least `floor`; the first model only needs the
floor. When the run measured the paired difference's standard error on those rows (`noise`), the challenger is
only refused when it is worse by more than the margin plus `noise_z` standard errors: under drift a newer model
refused on noise costs the next period (bench/replay.py, docs/benchmarks.md#prequential-replay). Pure policy:
the figures come from the training run's evaluation, the decision is recorded with both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from shared.domain.outcomes import Outcome

PROMOTED = Outcome.PROMOTED  # a Decision's outcome, recorded in the audit record's data["decision"]
KEPT_CHAMPION = Outcome.KEPT_CHAMPION


@dataclass(frozen=True)
class PromotionPolicy:
    margin: float = 0.005  # PROMOTION_MARGIN: AUC the challenger may lose against the champion
    floor: float = 0.75  # PROMOTION_FLOOR: AUC the challenger must reach on the evaluation rows
    metric: str = "auc"
    noise_z: float = 1.0  # standard errors of the paired AUC difference added to the margin, when measured

    def __post_init__(self):
        if not 0 <= self.margin < 1:
            raise ValueError(f"promotion margin must be in [0, 1), got {self.margin}")
        if not 0 <= self.floor <= 1:
            raise ValueError(f"promotion floor must be in [0, 1], got {self.floor}")


@dataclass(frozen=True)
class Decision:
    outcome: str  # PROMOTED | KEPT_CHAMPION
    reason: str
    challenger: dict[str, Any] = field(default_factory=dict)
    champion: dict[str, Any] | None = None

    @property
    def promote(self) -> bool:
        return self.outcome == PROMOTED

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason, "challenger": self.challenger,
                "champion": self.champion}


def finite_number(value: Any) -> float | None:
    """A stored figure as a float, or None when it is missing, not a number (a bool is not one) or not finite."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _figure(metrics: dict[str, Any] | None, name: str) -> float | None:
    return finite_number((metrics or {}).get(name))


def decide(policy: PromotionPolicy, challenger: dict[str, Any], champion: dict[str, Any] | None,
           *, champion_version: int | None = None, noise: float | None = None) -> Decision:
    """`challenger` / `champion`: metrics on the same evaluation rows ({"auc": ..., "accuracy": ..., "rows": ...});
    `champion` None when nothing is live yet."""
    metric = policy.metric
    new = _figure(challenger, metric)
    if new is None:
        return Decision(KEPT_CHAMPION, f"the new model has no evaluation {metric}; not deploying it",
                        challenger, champion)
    if new < policy.floor:
        return Decision(KEPT_CHAMPION, f"{metric} {new:.4f} is below the floor {policy.floor:.4f}",
                        challenger, champion)
    if champion_version is None:
        return Decision(PROMOTED, f"first model: {metric} {new:.4f} passes the floor {policy.floor:.4f}",
                        challenger, champion)
    old = _figure(champion, metric)
    if old is None:
        return Decision(KEPT_CHAMPION, f"the live model v{champion_version} was not scored on the evaluation rows; "
                        "not replacing it blindly (promote by hand with `retrain promote`)", challenger, champion)
    delta = new - old
    noisy = noise is not None and math.isfinite(noise) and noise > 0
    allowance = policy.margin + (policy.noise_z * noise if noisy else 0.0)
    shown = f"({delta:+.4f}, SE {noise:.4f})" if noisy else f"({delta:+.4f})"
    limit = f"the margin {policy.margin:.4f}" + (f" + {policy.noise_z:g} SE" if noisy else "")
    if delta < -allowance:
        return Decision(KEPT_CHAMPION, f"{metric} {new:.4f} vs live v{champion_version} {old:.4f} "
                        f"{shown} is worse by more than {limit}", challenger, champion)
    verdict = "is not worse" if delta >= 0 else f"is within {limit}"
    return Decision(PROMOTED, f"{metric} {new:.4f} vs live v{champion_version} {old:.4f} {shown} {verdict}",
                    challenger, champion)
