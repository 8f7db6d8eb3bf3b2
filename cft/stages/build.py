"""Stage build: training files in TRL's conversational prompt-completion format, and a held-out split.

    cft build --problems data/problems.jsonl --responses data/responses.jsonl \
        --critiques data/validated/clean.jsonl --out-dir data/train

`cft.jsonl` holds the CFT rows (critique of a noisy response). `sft.jsonl` holds the
paper's SFT baselines on the same questions, one `mode` per row: `sft_noisy` (every
noisy response), `sft_verified` (responses graded correct) and `sft_teacher`
(reference solutions, where the source has them).

A fraction of the questions (`build.heldout_fraction`) is set aside for every mode at
once, by question, so no question is on both sides: their rows go to `heldout/cft.jsonl`
and `heldout/sft.jsonl` (held-out loss during training), and their graded responses to
`heldout/critic.jsonl` (question, response, whether it is correct: the critic evaluation).
A question's side depends only on its text and the seed, so it never moves as data grows.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from pathlib import Path

from cft.config import Params
from cft.critique.templates import cft_example, sft_example
from cft.data.ids import content_id
from cft.data.io import read_jsonl, write_jsonl

OUT_DIR = Path("data/train")  # where dvc.yaml's build stage writes
HELDOUT_DIR = "heldout"
CRITIC_FILE = "critic.jsonl"
HELDOUT_CRITIC = OUT_DIR / HELDOUT_DIR / CRITIC_FILE  # what the evaluate stage scores critics on


def _row(mode: str, prompt: list[dict], completion: list[dict], source_id: str, question: str) -> dict:
    return {"id": content_id(mode, source_id), "mode": mode, "source_id": source_id, "question": question,
            "prompt": prompt, "completion": completion}


def cft_rows(critiques: list[dict]) -> list[dict]:
    rows = []
    for c in critiques:
        prompt, completion = cft_example(c["question"], c["response"], c["critique"])
        rows.append(_row("cft", prompt, completion, c["id"], c["question"]))
    return rows


def sft_rows(problems: dict[str, dict], responses: list[dict], critiqued_problem_ids: set[str]) -> list[dict]:
    """Baselines restricted to the questions CFT trains on, so the comparison is fair."""
    # Imported critiques may name no problem of ours: there is nothing to imitate for them.
    critiqued_problem_ids = critiqued_problem_ids & problems.keys()
    rows = []
    for r in responses:
        if r["problem_id"] not in critiqued_problem_ids:
            continue
        question = problems[r["problem_id"]]["question"]
        rows.append(_row("sft_noisy", *sft_example(question, r["response"]), r["id"], question))
        if r.get("correct"):
            rows.append(_row("sft_verified", *sft_example(question, r["response"]), r["id"], question))
    for pid in sorted(critiqued_problem_ids):
        solution = problems[pid].get("solution")
        if solution:
            question = problems[pid]["question"]
            rows.append(_row("sft_teacher", *sft_example(question, solution), pid, question))
    return rows


def question_text(question: str) -> str:
    """A question as the split sees it: spellings that differ only in whitespace are one question."""
    return " ".join(question.split())


def _question_key(question: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the question's text and the seed."""
    digest = hashlib.sha256(f"{seed}\x00{question_text(question)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def heldout_questions(questions: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The questions set aside, as `question_text`s (test membership with it): about `fraction`
    of them, chosen by hash (pure, stable as data grows).

    With at least two distinct questions and 0 < fraction < 1, both sides get at least one.
    """
    keys = {q: _question_key(q, seed) for q in {question_text(q) for q in questions}}
    if fraction <= 0 or not keys:
        return set()
    held = {q for q, k in keys.items() if k < fraction}
    if len(keys) >= 2:
        ranked = sorted(keys, key=keys.get)
        if not held:
            held = {ranked[0]}
        elif len(held) == len(keys):
            held.discard(ranked[-1])
    return held


def critic_pairs(problems: dict[str, dict], responses: list[dict], heldout: set[str]) -> list[dict]:
    """Held-out responses whose correctness grading knows: what a critic is scored on (with the
    problem's `source`, so that the evaluation can take its sample across sources)."""
    pairs = []
    for r in responses:
        problem = problems.get(r["problem_id"])
        if problem is None or question_text(problem["question"]) not in heldout or not isinstance(r.get("correct"), bool):
            continue
        pairs.append({"id": r["id"], "problem_id": r["problem_id"], "source": problem.get("source"), "question": problem["question"],
                      "response": r["response"], "gold_answer": problem["gold_answer"], "correct": r["correct"]})
    return pairs


def run(params: Params, problems_path: Path, responses_path: Path, critiques_path: Path, out_dir: Path) -> dict:
    cfg = params.build
    problems = {p["id"]: p for p in read_jsonl(problems_path)}
    critiques = read_jsonl(critiques_path)
    responses = read_jsonl(responses_path)
    rng = random.Random(cfg.seed)
    cft = cft_rows(critiques)
    sft = sft_rows(problems, responses, {c["problem_id"] for c in critiques if c.get("problem_id")})
    heldout = heldout_questions([r["question"] for r in cft + sft], cfg.heldout_fraction, cfg.seed)
    splits: dict[str, dict[str, list[dict]]] = {"train": {}, HELDOUT_DIR: {}}
    for name, rows in (("cft", cft), ("sft", sft)):
        rng.shuffle(rows)
        splits["train"][name] = [r for r in rows if question_text(r["question"]) not in heldout]
        splits[HELDOUT_DIR][name] = [r for r in rows if question_text(r["question"]) in heldout]
    for name in ("cft", "sft"):
        write_jsonl(out_dir / f"{name}.jsonl", splits["train"][name])
        write_jsonl(out_dir / HELDOUT_DIR / f"{name}.jsonl", splits[HELDOUT_DIR][name])
    critic = critic_pairs(problems, responses, heldout)
    write_jsonl(out_dir / HELDOUT_DIR / CRITIC_FILE, critic)

    def counts(split: dict[str, list[dict]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in split["cft"] + split["sft"]:
            out[row["mode"]] = out.get(row["mode"], 0) + 1
        return out

    return {**counts(splits["train"]), "heldout": {**counts(splits[HELDOUT_DIR]), "questions": len(heldout),
                                                   "critic_pairs": len(critic)}}
