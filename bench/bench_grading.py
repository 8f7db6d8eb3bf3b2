"""Grading: throughput, sanity, the gold restatement matrix, and extraction time on growing inputs.

Throughput: in-process (workers=0) vs worker processes (1 and the pool). Each
mode is timed in a fresh process (math-verify caches parses, so a second run in
one process would be flattered); imports and the forkserver start are untimed.
Workloads on MATH-500 (one run, ratios measured side by side):
- reference: each row's reference solution graded against its own gold answer
  (settled in the calling process by the rules of `answers.py`, so all modes
  measure extraction);
- mismatched: each solution graded against the *next* row's gold, so symbolic
  answers go through math-verify's parse + verify.

Sanity: reference solutions vs gold must score >= 99% on MATH-500 and
Minerva-Math; failing rows are printed.

Golds (`--only golds`): every row of the seven benchmarks, every restatement of its
gold (LaTeX numbers, \\times 10^{}, units, percent, boxed or not, markdown,
Minerva's format, several boxes) must grade correct and every perturbation
(another number, a dropped answer, another choice) wrong, >= 99.5% per
benchmark; prints the table, per-form counts and every miss.

Extraction (`--only extraction`): time of `extract_answer` + `normalise_answer`
on pathological texts of 25K..400K characters; the ratio per doubling is ~2 for
linear time (the old period-stripping was quadratic: ~4, and 12 s at 400K).

Exit code 1 if a sanity or golds threshold is missed.

Usage: OMP_NUM_THREADS=1 python bench/bench_grading.py [--only throughput|sanity|golds|extraction] [--limit N] [--workers W]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # gold_forms: the restatement oracle shared with the tests

from cft.data.adapters import BENCHMARK_FILES, load_problems  # noqa: E402
from cft.evaluate.extract import extract_answer, normalise_answer  # noqa: E402
from cft.evaluate.grade import default_workers, grade_responses  # noqa: E402

SANITY_THRESHOLD = 0.99
GOLDS_THRESHOLD = 0.995


def _load(name: str, limit: int | None):
    return load_problems(REPO / "sources" / "benchmarks" / BENCHMARK_FILES[name], name, limit=limit, notes=[])


def _timed_run(items, workers: int, timeout_s: float) -> tuple[float, list[bool]]:
    """Grade in this (fresh) process: import math-verify / start the forkserver untimed, then time one call."""
    grade_responses(items[: max(1, workers)], workers=workers, timeout_s=timeout_s)
    started = time.perf_counter()
    results = grade_responses(items, workers=workers, timeout_s=timeout_s)
    return time.perf_counter() - started, [r.correct for r in results]


def _rate(items, workers: int, timeout_s: float) -> tuple[float, list[bool]]:
    """Gradings per second, measured in a fresh process so no mode inherits warm parse caches."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as executor:
        elapsed, correct = executor.submit(_timed_run, items, workers, timeout_s).result()
    return len(items) / elapsed, correct


def _sanity(name: str, limit: int | None, workers: int, timeout_s: float) -> bool:
    problems = _load(name, limit)
    results = grade_responses([(p.solution, p.gold_answer) for p in problems], workers=workers, timeout_s=timeout_s)
    failed = [(i, p, r) for i, (p, r) in enumerate(zip(problems, results)) if not r.correct]
    acc = 1 - len(failed) / len(problems)
    ok = acc >= SANITY_THRESHOLD
    print(f"sanity {name}: {acc:.2%} of {len(problems)} reference solutions graded correct ({'ok' if ok else 'FAIL'})")
    for i, p, r in failed:
        print(f"  residue row {i}: gold={p.gold_answer!r} extracted={r.extracted!r} error={r.error}")
    return ok


def _golds(limit: int | None, workers: int, timeout_s: float) -> bool:
    from collections import Counter

    from gold_forms import BENCHMARKS, cases

    print(f"{'benchmark':15s} {'restated correct':>22s} {'perturbed wrong':>20s}   seconds")
    ok, misses, forms = True, [], Counter()
    for name in BENCHMARKS:
        all_cases = cases(name, [p.gold_answer for p in _load(name, limit)], full=True)
        started = time.perf_counter()
        results = grade_responses([(c.response, c.gold) for c in all_cases], workers=workers, timeout_s=timeout_s)
        elapsed = time.perf_counter() - started
        right = [r.correct for c, r in zip(all_cases, results) if c.correct]
        wrong = [not r.correct for c, r in zip(all_cases, results) if not c.correct]
        rate_right, rate_wrong = sum(right) / len(right), sum(wrong) / len(wrong)
        ok &= rate_right >= GOLDS_THRESHOLD and rate_wrong >= GOLDS_THRESHOLD
        print(f"{name:15s} {rate_right:8.2%} of {len(right):6d}   {rate_wrong:8.2%} of {len(wrong):5d}   {elapsed:7.1f}")
        forms.update(c.form.split("/")[0] for c in all_cases)
        misses += [(c, r) for c, r in zip(all_cases, results) if r.correct != c.correct]
    print("forms graded: " + ", ".join(f"{f} {n}" for f, n in sorted(forms.items())))
    for c, r in misses:
        print(f"  miss {c.benchmark} row {c.row} {c.form}: gold {c.gold!r} extracted {r.extracted!r} graded {r.correct} ({r.error})")
    print(f"golds: {'ok' if ok else 'FAIL'} (threshold {GOLDS_THRESHOLD:.1%} per benchmark)")
    return ok


PATHOLOGICAL = {
    "periods in box": lambda n: "\\boxed{5" + " ." * (n // 2) + "}",
    "periods": lambda n: "The answer is 5" + " ." * (n // 2),
    "marker spaces": lambda n: "answer" + " " * n + "x",
    "markers": lambda n: "final answer is " * (n // 16),
    "unclosed boxes": lambda n: "\\boxed{" * (n // 7),
    "chained boxes": lambda n: "\\boxed{1} and " * (n // 14),
    "nested boxes": lambda n: "\\boxed{" * (n // 16) + "1" + "}" * (n // 16),
    "header lines": lambda n: "answer\n" * (n // 7),
    "long answer": lambda n: "\\boxed{" + "1+" * (n // 2) + "1}",
}


def _extraction() -> None:
    sizes = [25_000, 50_000, 100_000, 200_000, 400_000]
    print("extract_answer + normalise_answer, ms by input size (ratio per doubling; ~2 means linear)")
    print(f"{'text':15s} " + " ".join(f"{n // 1000:>6d}K" for n in sizes) + "   ratios")
    for name, make in PATHOLOGICAL.items():
        times = []
        for n in sizes:
            text = make(n)
            started = time.perf_counter()
            answer = extract_answer(text)
            normalise_answer(answer or text)
            times.append(time.perf_counter() - started)
        ratios = " ".join(f"{b / a:4.1f}" for a, b in zip(times, times[1:]))
        print(f"{name:15s} " + " ".join(f"{t * 1000:7.0f}" for t in times) + f"   {ratios}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["throughput", "sanity", "golds", "extraction"], default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each benchmark")
    parser.add_argument("--workers", type=int, default=None, help=f"pool size (default {default_workers()})")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-item timeout in seconds")
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cpus={os.cpu_count()} load average={load} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    ok = True
    if args.only in (None, "throughput"):
        _throughput(args.limit, workers, args.timeout)
    if args.only in (None, "sanity"):
        ok &= all([_sanity(name, args.limit, workers, args.timeout) for name in ("math-500", "minerva_math")])
    if args.only in (None, "golds"):
        ok &= _golds(args.limit, workers, args.timeout)
    if args.only in (None, "extraction"):
        _extraction()
    return 0 if ok else 1


def _throughput(limit: int | None, workers: int, timeout_s: float) -> None:
    problems = _load("math-500", limit)
    workloads = {
        "reference": [(p.solution, p.gold_answer) for p in problems],
        "mismatched": [(p.solution, problems[(i + 1) % len(problems)].gold_answer) for i, p in enumerate(problems)],
    }
    for name, items in workloads.items():
        rates, verdicts = {}, {}
        for workers_here in dict.fromkeys([0, 1, workers]):
            rates[workers_here], verdicts[workers_here] = _rate(items, workers_here, timeout_s)
        same = all(v == verdicts[0] for v in verdicts.values())
        cells = " | ".join(f"workers={w}: {r:6.1f}/s" for w, r in rates.items())
        print(
            f"{name:10s} n={len(items)} | {cells} | pool({workers})/single {rates[workers] / rates[0]:.2f}x | "
            f"accuracy {sum(verdicts[0]) / len(items):.2%} | same verdicts: {same}"
        )


if __name__ == "__main__":
    sys.exit(main())
