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


def test_heldout_split_is_by_question_stable_and_never_one_sided():
    from cft.stages.build import heldout_questions

    questions = [f"question {i}?" for i in range(400)]
    held = heldout_questions(questions, 0.2, seed=0)
    assert 40 < len(held) < 120  # about a fifth, chosen by hash
    # Growing the data never moves a question across the split.
    grown = heldout_questions(questions + [f"new {i}?" for i in range(400)], 0.2, seed=0)
    assert held == grown & set(questions)
    assert heldout_questions(questions, 0.2, seed=1) != held
    # Whitespace differences are the same question.
    assert heldout_questions(["a  b?", "c?"], 0.5, 0) in ({"a b?"}, {"c?"})
    assert len(heldout_questions(["only?", "two?"], 0.001, 0)) == 1
    assert len(heldout_questions(["only?", "two?"], 0.999, 0)) == 1
    assert heldout_questions(questions, 0.0, 0) == set()


def _build_split(tmp_path, problems, responses, critiques, heldout_fraction):
    """Run the build stage on these rows; returns (counts, train rows, held-out rows, out dir)."""
    from cft.config import BuildConfig
    from cft.data.io import read_jsonl, write_jsonl
    from cft.stages import build

    for name, rows in (("problems", problems), ("responses", responses), ("critiques", critiques)):
        write_jsonl(tmp_path / f"{name}.jsonl", rows)

    class P:
        build = BuildConfig(seed=0, heldout_fraction=heldout_fraction)

    out = tmp_path / "train"
    counts = build.run(P, tmp_path / "problems.jsonl", tmp_path / "responses.jsonl", tmp_path / "critiques.jsonl", out)
    train = read_jsonl(out / "cft.jsonl") + read_jsonl(out / "sft.jsonl")
    held = read_jsonl(out / "heldout/cft.jsonl") + read_jsonl(out / "heldout/sft.jsonl")
    return counts, train, held, out


def test_whitespace_twins_go_to_one_side_when_the_split_must_hold_one_out(tmp_path):
    from cft.data.io import read_jsonl
    from cft.stages import build

    twins, other = ["What is 1 + 1?", "What is  1 +\n1?"], "What is 5 + 5?"
    # By hash no question is held out at this fraction, so the rule "at least one held out"
    # picks the lowest-ranked one: the twins' (one question, two spellings).
    assert build._question_key(twins[0], 0) < build._question_key(other, 0) and build._question_key(twins[0], 0) >= 0.1
    problems = [{"id": f"p{i}", "source": "s", "question": q, "gold_answer": "2"} for i, q in enumerate([*twins, other])]
    responses = [{"id": f"r{i}", "problem_id": f"p{i}", "response": "\\boxed{2}", "correct": True} for i in range(3)]
    critiques = [{"id": f"c{i}", "problem_id": f"p{i}", "question": problems[i]["question"], "response": "\\boxed{2}",
                  "critique": "Checked.\n\nConclusion: right [END]"} for i in range(3)]
    counts, train, held, out = _build_split(tmp_path, problems, responses, critiques, 0.1)
    assert {r["question"] for r in held} == set(twins) and {r["question"] for r in train} == {other}
    assert {c["problem_id"] for c in read_jsonl(out / "heldout/critic.jsonl")} == {"p0", "p1"}
    assert counts["heldout"]["questions"] == 1


def test_build_puts_each_question_on_one_side_for_every_mode(tmp_path):
    from cft.data.io import read_jsonl

    problems = [{"id": f"p{i}", "question": f"What is {i} + {i}?", "gold_answer": str(2 * i),
                 "solution": f"{i}+{i}={2 * i}, so \\boxed{{{2 * i}}}"} for i in range(60)]
    responses = [{"id": f"r{i}{k}", "problem_id": f"p{i}", "response": f"\\boxed{{{2 * i + k}}}", "correct": k == 0}
                 for i in range(60) for k in range(2)]
    critiques = [{"id": f"c{r['id']}", "problem_id": r["problem_id"], "question": problems[int(r["problem_id"][1:])]["question"],
                  "response": r["response"], "critique": "Checked.\n\nConclusion: wrong [END]"} for r in responses]
    counts, train, held, out = _build_split(tmp_path, problems, responses, critiques, 0.25)
    train_q, held_q = {r["question"] for r in train}, {r["question"] for r in held}
    assert train_q and held_q and not train_q & held_q
    assert {r["mode"] for r in held} == {"cft", "sft_noisy", "sft_verified", "sft_teacher"}
    assert len(train) + len(held) == 120 + 120 + 60 + 60  # cft + noisy + verified + teacher: nothing lost
    critic = read_jsonl(out / "heldout/critic.jsonl")
    assert {c["question"] for c in critic} == held_q and {c["correct"] for c in critic} == {True, False}
    assert counts["heldout"]["questions"] == len(held_q) and counts["heldout"]["critic_pairs"] == len(critic)
