"""The promotion gate (pure): a challenger becomes champion only when it is better."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def evaluation_average(evaluation: dict | None) -> tuple[float | None, str]:
    """(average, status) from metrics/eval.json's content; the average is None unless the
    evaluation succeeded. status is "ok" or why there is no usable average."""
    if evaluation is None:
        return None, "missing: no evaluation metrics"
    if not isinstance(evaluation, dict):
        return None, "failed: evaluation metrics are not a JSON object"
    if evaluation.get("error") or evaluation.get("status", "ok") != "ok":
        return None, f"failed: {evaluation.get('error') or evaluation.get('status')}"
    average = evaluation.get("average")
    if isinstance(average, bool) or not isinstance(average, (int, float)):
        return None, "missing: no numeric `average` in the evaluation metrics"
    if not math.isfinite(average):
        return None, f"failed: average is {average}"
    return float(average), "ok"


def decide(challenger: float | None, champion: float | None, margin: float) -> Decision:
    """Promote when evaluation succeeded and beats the champion's average by more than `margin`."""
    if challenger is None:
        return Decision(False, "evaluation missing or failed: never promoted")
    if champion is None:
        return Decision(True, f"first evaluated version (average {challenger:.2f})")
    if challenger > champion + margin:
        return Decision(True, f"average {challenger:.2f} beats champion {champion:.2f} by more than margin {margin:.2f}")
    return Decision(False, f"average {challenger:.2f} does not beat champion {champion:.2f} by more than margin {margin:.2f}")
