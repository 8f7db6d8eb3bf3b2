"""Critic evaluation (pure): how well a model judges solutions whose correctness grading knows.

A model critiques (question, response) pairs with the CFT training prompt; the verdict is
parsed with the project's verdict parser and compared with the graded truth. "wrong" is
the positive class (a critic's job is to catch wrong solutions). A critique without a
verdict counts as a miss in accuracy and recall, and is reported separately.
"""

from __future__ import annotations

from collections.abc import Sequence

from cft.critique.templates import cft_example
from cft.critique.verdict import parse_verdict


def critic_chat(question: str, response: str) -> list[dict[str, str]]:
    """The chat a CFT-trained model saw in training, without the critique: what it now completes."""
    prompt, _ = cft_example(question, response, "")
    return prompt


def verdict_of(critique: str) -> str | None:
    """'right', 'wrong', or None when the critique gives no (unambiguous) verdict."""
    return parse_verdict(critique).label


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def critic_metrics(truth: Sequence[bool], verdicts: Sequence[str | None]) -> dict:
    """Verdict accuracy, balanced accuracy, F1 of "wrong" and the no-verdict rate (all 0-1).

    `truth[i]` is whether response i is correct. Balanced accuracy averages the recall of
    the classes present in `truth`; a value that is undefined (no rows, no wrong verdicts
    at all) is None rather than a misleading 0.
    """
    if len(truth) != len(verdicts):
        raise ValueError(f"got {len(truth)} truths for {len(verdicts)} verdicts")
    n = len(truth)
    actual = ["right" if t else "wrong" for t in truth]
    hits = sum(a == v for a, v in zip(actual, verdicts))
    recalls = []
    for label in ("right", "wrong"):
        support = sum(a == label for a in actual)
        if support:
            recalls.append(sum(a == v == label for a, v in zip(actual, verdicts)) / support)
    # F1 = 2TP / (2TP + FP + FN): 0.0 for a critic that never says "wrong" about wrong
    # solutions; undefined only when there is nothing wrong and it never says "wrong".
    true_wrong = sum(a == v == "wrong" for a, v in zip(actual, verdicts))
    said_wrong, are_wrong = sum(v == "wrong" for v in verdicts), sum(a == "wrong" for a in actual)
    f1 = _ratio(2 * true_wrong, said_wrong + are_wrong)
    return {
        "n": n,
        "accuracy": _ratio(hits, n),
        "balanced_accuracy": sum(recalls) / len(recalls) if recalls else None,
        "f1_wrong": f1,
        "no_verdict_rate": _ratio(sum(v is None for v in verdicts), n),
        "wrong_fraction": _ratio(sum(a == "wrong" for a in actual), n),
    }
