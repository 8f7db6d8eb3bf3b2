"""Every row of the seven shipped benchmarks: the gold restated as a model writes it grades
correct, a perturbed gold grades wrong, each >= 99.5% per benchmark.

Forms and wrappers rotate over the rows (tests/gold_forms.py), so each row is graded
once right and once wrong; `python bench/bench_grading.py --golds` runs every form
on every row and prints the same table.
"""

import pytest
from gold_forms import BENCHMARKS, cases

from cft.data.adapters import BENCHMARK_FILES, load_problems
from cft.evaluate.grade import grade_responses

THRESHOLD = 0.995


def _table(rates: dict[str, tuple[float, int, float, int]]) -> str:
    lines = ["benchmark        restated correct     perturbed wrong", "-" * 52]
    for name, (right, n_right, wrong, n_wrong) in rates.items():
        lines.append(f"{name:15s}  {right:7.2%} of {n_right:5d}   {wrong:7.2%} of {n_wrong:5d}")
    return "\n".join(lines)


@pytest.mark.timeout(600)
def test_every_benchmark_row_grades_right_restated_and_wrong_perturbed(repo_root):
    all_cases = []
    for name in BENCHMARKS:
        golds = [p.gold_answer for p in load_problems(repo_root / "sources/benchmarks" / BENCHMARK_FILES[name], name, notes=[])]
        all_cases.extend(cases(name, golds))
    results = grade_responses([(c.response, c.gold) for c in all_cases], workers=2)

    rates, misses = {}, []
    for name in BENCHMARKS:
        graded = [(c, r) for c, r in zip(all_cases, results) if c.benchmark == name]
        right = [r.correct for c, r in graded if c.correct]
        wrong = [not r.correct for c, r in graded if not c.correct]
        rates[name] = (sum(right) / len(right), len(right), sum(wrong) / len(wrong), len(wrong))
        misses += [(c, r) for c, r in graded if r.correct != c.correct]
    print("\n" + _table(rates))
    detail = "\n".join(
        f"  {c.benchmark} row {c.row} {c.form}: gold {c.gold!r} extracted {r.extracted!r} graded {r.correct} ({r.error})"
        for c, r in misses[:40]
    )
    low = [name for name, (right, _, wrong, _) in rates.items() if right < THRESHOLD or wrong < THRESHOLD]
    assert not low, f"below {THRESHOLD:.1%}: {low}\n{_table(rates)}\n{detail}"
