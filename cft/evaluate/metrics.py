"""Benchmark metrics (pure): accuracy, pass@k, majority vote, per-benchmark summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cft.evaluate.answers import normalise_answer


def accuracy(correct: Sequence[bool]) -> float:
    """Fraction correct, in [0, 1]; an empty list is an error, not 0."""
    if len(correct) == 0:
        raise ValueError("accuracy of an empty list is undefined")
    return sum(bool(c) for c in correct) / len(correct)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021).

    1 - C(n-c, k) / C(n, k), computed as a product so large n does not overflow.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent answer; ties go to the first seen; None if none.

    Votes count normalised answers (`normalise_answer`), so equivalent spellings
    vote together: 25, "25.0", "\\frac{50}{2}", "x = 25", "25 \\text{ cm}".
    """
    counts: dict[str, int] = {}
    first_form: dict[str, str] = {}
    for answer in answers:
        if answer is None:
            continue
        key = normalise_answer(answer)
        if not key:
            continue
        counts[key] = counts.get(key, 0) + 1
        first_form.setdefault(key, answer)
    if not counts:
        return None
    best = max(counts.values())
    winner = next(key for key in first_form if counts[key] == best)  # dicts keep first-seen order
    return first_form[winner]


def summarise(per_benchmark: Mapping[str, Sequence[bool]]) -> dict:
    """Per-benchmark accuracy on the paper's 0-100 scale, n, and the unweighted average.

    Returns {"benchmarks": {name: {"accuracy": float, "n": int}}, "average": float}.
    """
    if not per_benchmark:
        raise ValueError("no benchmarks to summarise")
    benchmarks = {
        name: {"accuracy": 100.0 * accuracy(correct), "n": len(correct)} for name, correct in per_benchmark.items()
    }
    average = sum(b["accuracy"] for b in benchmarks.values()) / len(benchmarks)
    return {"benchmarks": benchmarks, "average": average}


def sampled_metrics(samples: Sequence[Sequence[tuple[str | None, bool]]], ks: Sequence[int]) -> dict[str, float]:
    """pass@k (for each k) and maj@n, 0-100, over questions with n (answer, correct) samples each.

    The majority answer's correctness is that of a sample giving it, so nothing is regraded.
    """
    n = min(len(s) for s in samples)
    out: dict[str, float] = {}
    for k in ks:
        out[f"pass@{k}"] = 100.0 * sum(pass_at_k(len(s), sum(c for _, c in s), k) for s in samples) / len(samples)
    majority_correct = []
    for s in samples:
        winner = majority_vote([a for a, _ in s])
        key = normalise_answer(winner) if winner is not None else None
        majority_correct.append(any(c for a, c in s if a is not None and normalise_answer(a) == key) if key else False)
    out[f"maj@{n}"] = 100.0 * accuracy(majority_correct)
    return out
