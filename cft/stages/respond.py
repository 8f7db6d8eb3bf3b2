"""Stage respond: student models answer every problem (the noisy responses CFT critiques).

    cft respond --problems data/problems.jsonl --out data/responses.jsonl

Row: id, problem_id, model, backend, sampling, sample_index, response,
extracted_answer, correct (and `empty: true` when the model returned no text). A row's
id hashes everything that determines it (problem, model, sampling, sample index,
prompt): rows already made are never generated again, each finished row is journaled
at once (a killed run resumes where it stopped), and rows that still fail go to
`<out>.failures.jsonl` and are retried on the next run. Each model is loaded once for
all its samples, and released before the next model loads. When the stage succeeds
the journal is compacted to the rows the output holds.

A `kind: reference` student runs no model: it answers with reference solutions, a seeded
share of them with a broken final answer (`cft.generate.reference_student`), so the
embedded default has right and wrong responses for critics and the SFT baselines.
"""

from __future__ import annotations

from contextlib import ExitStack, closing
from pathlib import Path

from cft.config import Params, StudentModel
from cft.data.ids import content_id
from cft.data.io import read_jsonl
from cft.generate.base import Generation, Sampling
from cft.generate.incremental import PlannedRow, generate_journaled
from cft.generate.journal import Journal


def journal_path(out: Path) -> Path:
    """Beside the outputs but not one of them: DVC deletes outputs before a re-run."""
    return out.parent / "cache" / f"{out.stem}.journal.jsonl"


def plan(problems: list[dict], student: StudentModel, system_prompt: str) -> list[PlannedRow]:
    # A reference student has no prompt or sampling: its rows depend on its error rate.
    how = student.sampling.model_dump() if student.kind == "llm" else {"error_rate": student.error_rate}
    rows = []
    for problem in problems:
        chat = [{"role": "system", "content": system_prompt}, {"role": "user", "content": problem["question"]}]
        for k in range(student.samples):
            row_id = content_id(problem["id"], student.name_or_path, how, k, chat if student.kind == "llm" else None)
            rows.append(PlannedRow(row_id, chat, {"problem": problem, "sample_index": k}))
    return rows


def _make_row(student: StudentModel):
    def make_row(planned: PlannedRow, gen: Generation) -> dict:
        row = {
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
        if gen.empty:
            row["empty"] = True  # kept, not asked again: graded wrong like any answer without one
        return row

    return make_row


def grade_new_rows(journal: Journal, planned_ids: list[str], gold_by_problem: dict[str, str]) -> int:
    """Grade the planned rows that have no grade yet; grades are journaled too (done once)."""
    from cft.evaluate.grade import grade_responses

    rows = journal.rows()
    ungraded = [rows[i] for i in dict.fromkeys(planned_ids)
                if i in rows and "correct" not in rows[i] and rows[i]["problem_id"] in gold_by_problem]
    grades = grade_responses([(row["response"], gold_by_problem[row["problem_id"]]) for row in ungraded])
    journal.append_many({**row, "extracted_answer": g.extracted, "correct": g.correct} for row, g in zip(ungraded, grades, strict=True))
    return len(ungraded)


def reference_student_rows(student: StudentModel, todo: list[PlannedRow]) -> list[dict]:
    """The offline student's rows (no model): see cft.generate.reference_student."""
    from cft.generate.reference_student import reference_response

    make_row = _make_row(student)
    rows = []
    for p in todo:
        problem = p.meta["problem"]
        text = reference_response(problem["gold_answer"], problem.get("solution"), p.id, student.error_rate)
        rows.append({**make_row(p, Generation(text, 0, 0)), "backend": "reference", "sampling": None})
    return rows


def generate_student(student: StudentModel, todo: list[PlannedRow], journal: Journal) -> tuple[int, dict]:
    """Generate a student's missing rows with one model load: (rows generated, token usage)."""
    from cft.generate import get_generator

    generated = 0
    by_sample: dict[int, list[PlannedRow]] = {}
    for p in todo:
        by_sample.setdefault(p.meta["sample_index"], []).append(p)
    with closing(get_generator(student.backend, student.name_or_path, **student.generator_options())) as generator:
        # Each sample index gets its own seed, so n samples of one problem differ.
        for k, rows in sorted(by_sample.items()):
            sampling = Sampling(**{**student.sampling.model_dump(), "seed": student.sampling.seed + k})
            desc = f"respond {student.name_or_path}" + (f" sample {k + 1}/{student.samples}" if student.samples > 1 else "")
            part = generate_journaled(generator, rows, sampling, journal, _make_row(student), desc=desc)
            generated += part["generated"]
        usage = getattr(generator, "usage", dict)()
    return generated, usage


def run(params: Params, problems_path: Path, out: Path, metrics_path: Path | None = None) -> dict:
    from cft.stages.usage import merge_usage, record_usage, start_usage_logging

    cfg = params.respond
    problems = read_jsonl(problems_path)
    summary: dict = {"planned": 0, "reused": 0, "generated": 0}
    usage: dict = {}
    planned_ids: list[str] = []
    with Journal(journal_path(out)) as journal, ExitStack() as later:
        usage_log = None
        for student in cfg.models:
            planned = plan(problems, student, cfg.system_prompt)
            planned_ids.extend(p.id for p in planned)
            todo = [p for p in planned if p.id not in journal]
            if todo and student.kind == "reference":
                summary["generated"] += journal.append_many(reference_student_rows(student, todo))
            elif todo:
                usage_log = usage_log or later.enter_context(start_usage_logging(params, "respond"))
                generated, student_usage = generate_student(student, todo, journal)
                summary["generated"] += generated
                merge_usage(usage, student_usage)
            summary["planned"] += len(planned)
            summary["reused"] += len(planned) - len(todo)
        summary["graded"] = grade_new_rows(journal, planned_ids, {p["id"]: p["gold_answer"] for p in problems})
        final = journal.finalize(planned_ids, out)
        journal.compact(planned_ids)  # the output holds every row worth keeping
        summary["rows"] = final["rows"]
        summary["failed"] = final["failed"]
        record_usage(summary, usage, metrics_path, usage_log)
    return summary
