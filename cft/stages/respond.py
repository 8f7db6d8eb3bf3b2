"""Stage respond: student models answer every problem (the noisy responses CFT critiques).

    cft respond --problems data/problems.jsonl --out data/responses.jsonl

Row: id, problem_id, model, backend, sampling, sample_index, response,
extracted_answer, correct. A row's id hashes everything that determines it (problem,
model, sampling, sample index, prompt): rows already made are never generated again,
each finished row is journaled at once (a killed run resumes where it stopped), and
rows that still fail go to `<out>.failures.jsonl` and are retried on the next run.
"""

from __future__ import annotations

from pathlib import Path

from cft.config import Params, StudentModel
from cft.data.ids import content_id
from cft.data.io import read_jsonl, write_json
from cft.generate.base import Sampling
from cft.generate.journal import Journal
from cft.generate.incremental import PlannedRow, generate_journaled


def journal_path(out: Path) -> Path:
    """Beside the outputs but not one of them: DVC deletes outputs before a re-run."""
    return out.parent / "cache" / f"{out.stem}.journal.jsonl"


def plan(problems: list[dict], student: StudentModel, system_prompt: str) -> list[PlannedRow]:
    sampling = student.sampling.model_dump()
    rows = []
    for problem in problems:
        chat = [{"role": "system", "content": system_prompt}, {"role": "user", "content": problem["question"]}]
        for k in range(student.samples):
            row_id = content_id(problem["id"], student.name_or_path, sampling, k, chat)
            rows.append(PlannedRow(row_id, chat, {"problem": problem, "sample_index": k}))
    return rows


def _make_row(student: StudentModel):
    def make_row(planned: PlannedRow, gen) -> dict:
        return {
            "id": planned.id,
            "problem_id": planned.meta["problem"]["id"],
            "model": student.name_or_path,
            "backend": student.backend,
            "sampling": student.sampling.model_dump(),
            "sample_index": planned.meta["sample_index"],
            "response": gen.text,
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.completion_tokens,
        }

    return make_row


def grade_new_rows(journal: Journal, gold_by_problem: dict[str, str]) -> int:
    """Grade journaled rows that have no grade yet; grades are journaled too (done once)."""
    from cft.evaluate.grade import grade_responses

    ungraded = [row for row in journal.rows().values() if "correct" not in row and row["problem_id"] in gold_by_problem]
    grades = grade_responses([(row["response"], gold_by_problem[row["problem_id"]]) for row in ungraded])
    journal.append_many({**row, "extracted_answer": g.extracted, "correct": g.correct} for row, g in zip(ungraded, grades))
    return len(ungraded)


def run(params: Params, problems_path: Path, out: Path, metrics_path: Path | None = None) -> dict:
    from cft.generate import get_generator
    from cft.stages.usage import log_usage

    cfg = params.respond
    problems = read_jsonl(problems_path)
    summary: dict = {"planned": 0, "reused": 0, "generated": 0}
    usage: dict = {}
    planned_ids: list[str] = []
    with Journal(journal_path(out)) as journal:
        for student in cfg.models:
            planned = plan(problems, student, cfg.system_prompt)
            planned_ids.extend(p.id for p in planned)
            todo = [p for p in planned if p.id not in journal.done_ids()]
            if todo:
                generator = get_generator(student.backend, student.name_or_path, **student.generator_options())
                # Each sample index gets its own seed, so n samples of one problem differ.
                for k in sorted({p.meta["sample_index"] for p in todo}):
                    sampling = Sampling(**{**student.sampling.model_dump(), "seed": student.sampling.seed + k})
                    part = generate_journaled(generator, [p for p in todo if p.meta["sample_index"] == k], sampling, journal, _make_row(student), desc=f"respond {student.name_or_path}")
                    summary["generated"] += part["generated"]
                usage.update(getattr(generator, "usage", dict)())
            summary["planned"] += len(planned)
            summary["reused"] += len(planned) - len(todo)
        summary["graded"] = grade_new_rows(journal, {p["id"]: p["gold_answer"] for p in problems})
        final = journal.finalize(planned_ids, out)
    summary["rows"] = final["rows"]
    summary["failed"] = final["failed"]
    if usage:
        summary["usage"] = usage
        log_usage(params, "respond", usage)
    if metrics_path:
        write_json(metrics_path, summary)
    return summary
