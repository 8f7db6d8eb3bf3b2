"""The promotion gate (pure): a challenger becomes champion only when it is better."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(challenger: float | None, champion: float | None, margin: float) -> Decision:
    """Promote when evaluation succeeded and beats the champion's average by more than `margin`."""
    if challenger is None:
        return Decision(False, "evaluation missing or failed: never promoted")
    if champion is None:
        return Decision(True, f"first evaluated version (average {challenger:.2f})")
    if challenger > champion + margin:
        return Decision(True, f"average {challenger:.2f} beats champion {champion:.2f} by more than margin {margin:.2f}")
    return Decision(False, f"average {challenger:.2f} does not beat champion {champion:.2f} by more than margin {margin:.2f}")
