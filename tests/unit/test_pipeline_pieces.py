"""Pure pieces of the stages: reference critic, training rows, promotion gate."""

from cft.critique.reference import reference_critique
from cft.critique.templates import CFT_USER_TEMPLATE
from cft.critique.verdict import parse_verdict
from cft.registry.promotion import decide
from cft.stages.build import cft_rows, sft_rows


def test_reference_critique_ends_with_canonical_verdict():
    right = reference_critique("4", "4", True)
    wrong = reference_critique("5", "4", False)
    missing = reference_critique(None, "4", False)
    assert right.endswith("Conclusion: right [END]")
    assert parse_verdict(right).label == "right" and not parse_verdict(right).issues
    assert parse_verdict(wrong).label == "wrong" and "correct answer is 4" in wrong
    assert parse_verdict(missing).label == "wrong"


def test_cft_rows_use_the_paper_format():
    critique = {"id": "c1", "problem_id": "p1", "question": "1+1?", "response": "It is 2.", "critique": "Fine.\n\nConclusion: right [END]"}
    (row,) = cft_rows([critique])
    assert row["mode"] == "cft"
    assert row["prompt"] == [{"role": "user", "content": CFT_USER_TEMPLATE.format(question="1+1?", solution="It is 2.")}]
    assert row["prompt"][0]["content"].startswith("Please critique whether the following solution to the question is correct.\n\nQuestion:\n1+1?")
    assert row["completion"] == [{"role": "assistant", "content": "Critique:\nFine.\n\nConclusion: right [END]"}]


def test_sft_baselines_on_the_same_questions():
    problems = {"p1": {"question": "1+1?", "solution": "1+1=2, so \\boxed{2}"}, "p2": {"question": "2+2?", "solution": None}}
    responses = [
        {"id": "r1", "problem_id": "p1", "response": "\\boxed{2}", "correct": True},
        {"id": "r2", "problem_id": "p1", "response": "\\boxed{3}", "correct": False},
        {"id": "r3", "problem_id": "p2", "response": "\\boxed{4}", "correct": True},
    ]
    rows = sft_rows(problems, responses, {"p1"})
    modes = sorted(r["mode"] for r in rows)
    assert modes == ["sft_noisy", "sft_noisy", "sft_teacher", "sft_verified"]
    verified = next(r for r in rows if r["mode"] == "sft_verified")
    assert verified["completion"][0]["content"] == "\\boxed{2}"


def test_promotion_gate():
    assert decide(10.0, None, 0.0).promote
    assert decide(12.0, 10.0, 1.0).promote
    assert not decide(10.5, 10.0, 1.0).promote
    assert not decide(9.0, 10.0, 0.0).promote
    assert not decide(None, None, 0.0).promote
    assert "missing" in decide(None, 3.0, 0.0).reason
