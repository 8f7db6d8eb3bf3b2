"""Stage ingest: read the problem sources into one problems file.

    cft ingest --out data/problems.jsonl

Row: id, source, question, gold_answer, solution. Ids are content hashes, so the
same problem from two files is kept once.
"""

from __future__ import annotations

from pathlib import Path

from cft.config import Params
from cft.data.adapters import load_problems
from cft.data.io import write_jsonl


def run(params: Params, out: Path) -> dict:
    rows, seen = [], set()
    for src in params.ingest.sources:
        fields = {k: v for k, v in (("question_field", src.question_field), ("answer_field", src.answer_field), ("solution_field", src.solution_field)) if v}
        for problem in load_problems(src.path, src.format, limit=src.limit, **fields):
            if problem.id in seen:
                continue
            seen.add(problem.id)
            rows.append({
                "id": problem.id,
                "source": problem.source,
                "question": problem.question,
                "gold_answer": problem.gold_answer,
                "solution": problem.solution,
            })
    write_jsonl(out, rows)
    return {"problems": len(rows)}
