"""Grading: math-verify equivalence, worker processes, timeouts, threads, and grade_file."""

import json
import signal
import threading
import time

import pytest

from cft.data.io import DataError
from cft.evaluate.grade import GradeResult, grade_responses, is_equivalent
from cft.evaluate.grade_file import grade_file
from cft.evaluate.pool import GradingPool

# Uninterruptible-looking work for sympy: beside a symbol, the power with ~85 million digits
# is computed exactly (a lone constant is compared by magnitude, which is quick).
HUGE = "x + 7^{10^{8}}"


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "\\frac12"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("27", "27.0"),
        ("27.0", "27"),
        ("1600", "1,600"),
        ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}"),
        ("[1, 2)", "[1,2)"),
        ("(-\\infty, 3]", "(-\\infty,3]"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("x^2+2x+1", "(x+1)^2"),
        ("\\text{True}", "True"),
    ],
)
def test_equivalent(pred, gold):
    assert is_equivalent(pred, gold)


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("\\frac{1}{3}", "0.5"),
        ("28", "27"),
        ("(1, 2)", "[1, 2]"),  # open vs closed interval
        ("\\{1, 2\\}", "\\{1, 2, 3\\}"),
        ("\\sqrt{2}", "2"),
        ("False", "True"),
        (None, "1"),
        ("1", ""),
    ],
)
def test_not_equivalent(pred, gold):
    assert not is_equivalent(pred, gold)


# issue 12's table: correct answers written the way models write them, graded wrong before.
ISSUE_12 = [
    ("So $L \\simeq \\boxed{4.5\\times10^{33}}$ ergs/s.", "4.5e33"),  # e-notation gold
    ("The power is $\\boxed{-\\frac{1}{3}}$.", "-1./3"),  # Python-syntax gold
    ("The chance is $\\boxed{50\\%}$.", "50"),  # percent
    ("$\\boxed{62.5\\%}$", "62.5\\%"),  # OlympiadBench unit '%'
    ("Rounded: $\\boxed{3.1416}$", "3.14159"),  # rounded numeric gold
    ("The values are $\\boxed{2}$ and $\\boxed{5}$.", "2, 5"),  # several boxes
    ("Work.\n**Final Answer:** 130", "130"),  # markdown
    ("$\\boxed{\\textbf{(073)}}$", "73"),  # AIME bold/lettered
    ("Final Answer: The final answer is $25$. I hope it is correct.", "25"),  # Minerva's format
]


@pytest.mark.parametrize("response, gold", ISSUE_12)
def test_issue_12_forms_grade_correct(response, gold):
    [result] = grade_responses([(response, gold)], workers=0)
    assert result.correct, result


def test_issue_12_wrong_answers_stay_wrong():
    items = [
        ("$\\boxed{5.5\\times10^{33}}$", "4.5e33"),
        ("$\\boxed{2}$", "2, 5"),  # a dropped answer
        ("$\\boxed{70001}$", "70000"),  # within 1e-4, but integers are exact
        ("$\\boxed{3.14}$", "3.14159"),  # 5e-4 away
        ("$\\boxed{10^{-24}}$", "2 \\times 10^{-24}"),  # math-verify alone would chop both to 0
        ("$\\boxed{2^{1009}}$", "3^{1009}"),
    ]
    assert [r.correct for r in grade_responses(items, workers=0)] == [False] * len(items)


def test_unparseable_answer_is_reported_beside_a_wrong_verdict():
    [result] = grade_responses([("\\boxed{\\frac{}{}}", "5")], workers=0)
    assert result.correct is False
    assert result.error is not None and result.error.startswith("unparseable answer")


def test_grade_responses_in_process():
    items = [
        ("We get \\boxed{\\frac{1}{2}}.", "0.5"),
        ("The answer is 27.", "27.0"),
        ("I give up.", "3"),
        ("\\boxed{5}", "6"),
    ]
    assert grade_responses(items, workers=0) == [
        GradeResult("\\frac{1}{2}", True, None),
        GradeResult("27", True, None),
        GradeResult(None, False, None),
        GradeResult("5", False, None),
    ]


def test_model_output_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # workers inherit it; the payload would create the file here
    marker = tmp_path / "hacked_by_model"
    payload = "__import__('os').system('touch hacked_by_model')"
    # os.system returns 0: if the payload ran, it could even grade "correct" against 0.
    items = [(payload, "0"), (f"\\boxed{{{payload}}}", "0"), (f"The answer is {payload}", "0")]
    for workers in (0, 1):
        results = grade_responses(items, workers=workers)
        assert [r.correct for r in results] == [False, False, False]
    assert not is_equivalent(payload, "0")
    assert not marker.exists()


def test_pool_results_keep_item_order():
    items = [(f"\\boxed{{{i}}}", str(i if i % 3 else i + 1)) for i in range(10)]
    items.insert(4, (f"\\boxed{{{HUGE}}}", "5"))
    expected = [i % 3 != 0 for i in range(10)]
    expected.insert(4, False)
    results = grade_responses(items, workers=2, timeout_s=0.5)
    assert [r.correct for r in results] == expected
    assert [r.extracted for r in results][:4] == ["0", "1", "2", "3"]
    assert results[4].error == "timeout"
    assert results[4].extracted == HUGE


@pytest.mark.parametrize("workers", [0, 1])
def test_pathological_input_is_cut_by_timeout(workers):
    started = time.monotonic()
    [result] = grade_responses([(f"so \\boxed{{{HUGE}}}", "5")], timeout_s=0.3, workers=workers)
    assert result == GradeResult(HUGE, False, "timeout")
    assert time.monotonic() - started < 5


def test_hung_worker_is_killed_and_replaced():
    # Worker's own timer set far away: only the parent's kill can stop the item.
    with GradingPool(1, timeout_s=60, kill_after_s=0.5) as pool:
        results = pool.verify([(HUGE, "5"), ("\\frac{1}{2}", "0.5"), ("3", "4")])
        assert pool.kills == 1
    assert results == [(False, "timeout"), (True, None), (False, None)]


def test_grading_from_a_thread_works():
    out = {}

    def run():
        out["in_process"] = grade_responses([("\\boxed{0.5}", "\\frac{1}{2}")], workers=0)
        out["equivalent"] = is_equivalent("2\\sqrt{2}", "\\sqrt{8}")

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert out == {"in_process": [GradeResult("0.5", True, None)], "equivalent": True}


def test_outer_timer_survives_grading():
    # math-verify's signal.alarm would cancel a caller's timer; ours re-arms it.
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 100.0)
        assert is_equivalent("\\frac{1}{2}", "0.5")
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90 < left <= 100
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not fired


def test_bad_arguments():
    with pytest.raises(ValueError, match="timeout_s"):
        grade_responses([("\\boxed{1}", "1")], timeout_s=0)
    with pytest.raises(ValueError, match="workers"):
        grade_responses([("\\boxed{1}", "1")], workers=-1)
    assert grade_responses([], workers=2) == []


def test_grade_file(tmp_path):
    src = tmp_path / "responses.jsonl"
    rows = [
        {"id": "a", "response": "so \\boxed{\\dfrac{1}{2}}", "gold_answer": "0.5"},
        {"id": "b", "response": "The answer is 28.", "gold_answer": 27.0},
        {"id": "c", "response": "no idea", "gold_answer": "3"},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "graded.jsonl"
    summary = grade_file(src, out, workers=0)
    assert summary == {"n": 3, "correct": 1, "accuracy": 1 / 3, "errors": 0}
    graded = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(g["id"], g["extracted_answer"], g["correct"], g["grading_error"]) for g in graded] == [
        ("a", "\\dfrac{1}{2}", True, None),
        ("b", "28", False, None),
        ("c", None, False, None),
    ]


@pytest.mark.parametrize("field", ["gold", "answer", "gold_answer"])
def test_grade_file_finds_the_usual_gold_fields(tmp_path, field):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"response": "\\boxed{4}", field: "4"}) + "\n", encoding="utf-8")
    assert grade_file(src, tmp_path / "o.jsonl", workers=0)["correct"] == 1


def test_grade_file_says_which_gold_fields_it_looked_for(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"response": "\\boxed{4}", "target": "4"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.jsonl:1: no gold answer; looked for fields gold_answer, gold, answer"):
        grade_file(src, tmp_path / "o.jsonl", workers=0)


def test_grade_file_keeps_each_rows_grading_error(tmp_path):
    src = tmp_path / "p.jsonl"
    rows = [{"response": f"so \\boxed{{{HUGE}}}", "gold": "5"}, {"response": "\\boxed{5}", "gold": "5"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = grade_file(src, tmp_path / "o.jsonl", workers=1, timeout_s=0.3)
    graded = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(g["correct"], g["grading_error"]) for g in graded] == [(False, "timeout"), (True, None)]
    assert summary["errors"] == 1


def test_grade_file_custom_fields_and_strict_errors(tmp_path):
    src = tmp_path / "r.jsonl"
    src.write_text(json.dumps({"text": "\\boxed{4}", "gold": "4"}) + "\n" + json.dumps({"text": "\\boxed{4}"}) + "\n")
    with pytest.raises(DataError, match=r"r\.jsonl:2: missing required field 'gold'"):
        grade_file(src, tmp_path / "o.jsonl", response_field="text", gold_field="gold", workers=0)
    assert not (tmp_path / "o.jsonl").exists()
    src.write_text(json.dumps({"text": "\\boxed{4}", "gold": "4"}) + "\n{broken\n")
    with pytest.raises(DataError, match=r"r\.jsonl:2: malformed JSON"):
        grade_file(src, tmp_path / "o.jsonl", response_field="text", gold_field="gold", workers=0)


@pytest.mark.parametrize("benchmark", ["math-500", "minerva_math"])
def test_reference_solutions_grade_as_correct(repo_root, benchmark):
    """Sanity of extraction + grading: each benchmark's own solutions match its gold answers."""
    from cft.data.adapters import BENCHMARK_FILES, load_problems

    items = load_problems(repo_root / "sources/benchmarks" / BENCHMARK_FILES[benchmark], benchmark)
    grades = grade_responses([(it.solution, it.gold_answer) for it in items], workers=2)
    residue = [it.id for it, g in zip(items, grades) if not g.correct]
    assert len(residue) / len(items) <= 0.01, residue
