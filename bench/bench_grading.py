"""Grading throughput: in-process (workers=0) vs worker processes (1 and the pool), plus a sanity check.

Each mode is timed in a fresh process (math-verify caches parses, so a second
run in one process would be flattered); imports and the forkserver start are untimed.

Workloads on MATH-500 (one run, ratios measured side by side):
- reference: each row's reference solution graded against its own gold answer
  (on MATH-500 every item is settled in the calling process by the
  exact-match-after-normalising shortcut, so all modes measure extraction);
- mismatched: each solution graded against the *next* row's gold, so nearly
  every item goes through math-verify's parse + verify.

Sanity: reference solutions vs gold must score >= 99% on MATH-500 and
Minerva-Math; failing rows are printed. Exit code 1 if not.

Usage: OMP_NUM_THREADS=1 python bench/bench_grading.py [--limit N] [--workers W]
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

from cft.data.adapters import BENCHMARK_FILES, load_problems  # noqa: E402
from cft.evaluate.grade import default_workers, grade_responses  # noqa: E402

SANITY_THRESHOLD = 0.99


def _load(name: str, limit: int | None):
    return load_problems(REPO / "sources" / "benchmarks" / BENCHMARK_FILES[name], name, limit=limit)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each benchmark")
    parser.add_argument("--workers", type=int, default=None, help=f"pool size (default {default_workers()})")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-item timeout in seconds")
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()

    problems = _load("math-500", args.limit)
    workloads = {
        "reference": [(p.solution, p.gold_answer) for p in problems],
        "mismatched": [(p.solution, problems[(i + 1) % len(problems)].gold_answer) for i, p in enumerate(problems)],
    }
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cpus={os.cpu_count()} load average={load} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")

    for name, items in workloads.items():
        rates, verdicts = {}, {}
        for workers_here in dict.fromkeys([0, 1, workers]):
            rates[workers_here], verdicts[workers_here] = _rate(items, workers_here, args.timeout)
        same = all(v == verdicts[0] for v in verdicts.values())
        cells = " | ".join(f"workers={w}: {r:6.1f}/s" for w, r in rates.items())
        print(
            f"{name:10s} n={len(items)} | {cells} | pool({workers})/single {rates[workers] / rates[0]:.2f}x | "
            f"accuracy {sum(verdicts[0]) / len(items):.2%} | same verdicts: {same}"
        )

    ok = all([_sanity(name, args.limit, workers, args.timeout) for name in ("math-500", "minerva_math")])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
