"""The promotion gate (pure): a challenger becomes champion only when it is better.

Better on `register.metric`: a key of the evaluation metrics (`average`, the benchmark
average, by default; nested keys are dotted: `benchmarks.math-500.accuracy`,
`critic.balanced_accuracy`), in the direction `register.higher_is_better` says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def lookup(evaluation: dict, metric: str):
    """The value at a dotted key of the evaluation metrics (None when a part is missing)."""
    value = evaluation
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def evaluation_score(evaluation: dict | None, metric: str = "average") -> tuple[float | None, str]:
    """(score, status) from metrics/eval/<model>.json's content; the score is None unless the
    evaluation succeeded and has a finite number at `metric`. status is "ok" or why not."""
    if evaluation is None:
        return None, "missing: no evaluation metrics"
    if not isinstance(evaluation, dict):
        return None, "failed: evaluation metrics are not a JSON object"
    if evaluation.get("error") or evaluation.get("status", "ok") != "ok":
        return None, f"failed: {evaluation.get('error') or evaluation.get('status')}"
    value = lookup(evaluation, metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"missing: no numeric `{metric}` in the evaluation metrics"
    if not math.isfinite(value):
        return None, f"failed: {metric} is {value}"
    return float(value), "ok"


def decide(challenger: float | None, champion: float | None, margin: float, *,
           higher_is_better: bool = True, metric: str = "average") -> Decision:
    """Promote when evaluation succeeded and beats the champion on `metric` by more than `margin`."""
    if challenger is None:
        return Decision(False, "evaluation missing or failed: never promoted")
    if champion is None:
        return Decision(True, f"first evaluated version ({metric} {challenger:.4g})")
    gain = challenger - champion if higher_is_better else champion - challenger
    direction = "higher" if higher_is_better else "lower"
    verdict = "beats" if gain > margin else "does not beat"
    return Decision(gain > margin, f"{metric} {challenger:.4g} {verdict} champion {champion:.4g} by more than "
                                   f"margin {margin:.4g} ({direction} is better)")
