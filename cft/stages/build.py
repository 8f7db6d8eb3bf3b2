"""Stage build: training files in TRL's conversational prompt-completion format.

    cft build --problems data/problems.jsonl --responses data/responses.jsonl \
        --critiques data/clean/critiques.jsonl --out-dir data/train

`cft.jsonl` holds the CFT rows (critique of a noisy response). `sft.jsonl` holds the
paper's SFT baselines on the same questions, one `mode` per row: `sft_noisy` (every
noisy response), `sft_verified` (responses graded correct) and `sft_teacher`
(reference solutions, where the source has them).
"""

from __future__ import annotations

import random
from pathlib import Path

from cft.config import Params
from cft.critique.templates import cft_example, sft_example
from cft.data.ids import content_id
from cft.data.io import read_jsonl, write_jsonl


def _row(mode: str, prompt: list[dict], completion: list[dict], source_id: str) -> dict:
    return {"id": content_id(mode, source_id), "mode": mode, "source_id": source_id, "prompt": prompt, "completion": completion}


def cft_rows(critiques: list[dict]) -> list[dict]:
    rows = []
    for c in critiques:
        prompt, completion = cft_example(c["question"], c["response"], c["critique"])
        rows.append(_row("cft", prompt, completion, c["id"]))
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
        rows.append(_row("sft_noisy", *sft_example(question, r["response"]), r["id"]))
        if r.get("correct"):
            rows.append(_row("sft_verified", *sft_example(question, r["response"]), r["id"]))
    for pid in sorted(critiqued_problem_ids):
        solution = problems[pid].get("solution")
        if solution:
            rows.append(_row("sft_teacher", *sft_example(problems[pid]["question"], solution), pid))
    return rows


def run(params: Params, problems_path: Path, responses_path: Path, critiques_path: Path, out_dir: Path) -> dict:
    problems = {p["id"]: p for p in read_jsonl(problems_path)}
    critiques = read_jsonl(critiques_path)
    responses = read_jsonl(responses_path)
    rng = random.Random(params.build.seed)
    cft = cft_rows(critiques)
    sft = sft_rows(problems, responses, {c["problem_id"] for c in critiques if c.get("problem_id")})
    rng.shuffle(cft)
    rng.shuffle(sft)
    write_jsonl(out_dir / "cft.jsonl", cft)
    write_jsonl(out_dir / "sft.jsonl", sft)
    counts = {"cft": len(cft)}
    for row in sft:
        counts[row["mode"]] = counts.get(row["mode"], 0) + 1
    return counts
