"""Stage critique: teachers judge every response; existing critique datasets are imported.

    cft critique --problems data/problems.jsonl --responses data/responses.jsonl --out data/critiques.jsonl

Row: id, response_id, problem_id, question, response, gold_answer, response_correct,
teacher, prompt_version, critique, verdict (parsed; null when none is found). An
empty or malformed critique is kept (`empty: true` when the teacher returned no
text): validation judges it. LLM teachers are incremental and resumable exactly like
the respond stage (journal + failures file, compacted when the stage succeeds).

The default teacher, `reference`, is an offline stand-in that only compares final
answers; with a real student model the stage warns that an LLM teacher is needed.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack, closing
from pathlib import Path

from cft.config import Params, TeacherConfig
from cft.critique.reference import PROMPT_VERSION as REFERENCE_VERSION
from cft.critique.reference import reference_critique
from cft.critique.verdict import parse_verdict
from cft.data.ids import content_id
from cft.data.io import DataError, read_jsonl, write_jsonl
from cft.generate.base import Generation, Sampling
from cft.generate.incremental import PlannedRow, generate_journaled
from cft.generate.journal import Journal, failures_path
from cft.stages.respond import journal_path

EMBEDDED_STUDENT = "models/tiny"  # the embedded default's student (the tiny_model stage's output)


def critique_row(resp: dict, problem: dict, teacher: str, prompt_version: str, critique: str, row_id: str) -> dict:
    return {
        "id": row_id,
        "response_id": resp["id"],
        "problem_id": problem["id"],
        "question": problem["question"],
        "response": resp["response"],
        "gold_answer": problem["gold_answer"],
        "response_correct": resp.get("correct"),
        "teacher": teacher,
        "prompt_version": prompt_version,
        "critique": critique,
        "verdict": parse_verdict(critique).label,
    }


def reference_critic_warning(params: Params) -> str | None:
    """Why the reference critic is the wrong teacher for these students, if it is."""
    if not any(t.kind == "reference" for t in params.critique.teachers):
        return None
    real = sorted({m.name_or_path for m in params.respond.models
                   if m.kind == "llm" and Path(m.name_or_path).as_posix().rstrip("/") != EMBEDDED_STUDENT})
    if not real:
        return None
    return (f"critique.teachers uses the offline reference critic with student model(s) {', '.join(real)}: it only "
            "compares final answers and writes a one-line critique, not the step-by-step critiques CFT trains on. "
            "Use an LLM teacher (critique.teachers: [{kind: llm, model: ..., backend: openai|vllm}], see the README, "
            "'Pointing it at a real model').")


def reference_rows(pairs: list[tuple[dict, dict]]) -> list[dict]:
    rows = []
    for resp, problem in pairs:
        text = reference_critique(resp.get("extracted_answer"), problem["gold_answer"], bool(resp.get("correct")))
        rows.append(critique_row(resp, problem, "reference", REFERENCE_VERSION, text, content_id(resp["id"], "reference", REFERENCE_VERSION)))
    return rows


def llm_sampling(teacher: TeacherConfig) -> Sampling:
    from cft.critique.teachers import get_template

    if teacher.sampling is not None:
        return Sampling(**teacher.sampling.model_dump())
    return get_template(teacher.prompt_version).sampling


def plan_llm(pairs: list[tuple[dict, dict]], teacher: TeacherConfig) -> list[PlannedRow]:
    from cft.critique.teachers import get_template

    template = get_template(teacher.prompt_version)
    sampling = llm_sampling(teacher).as_dict()
    return [
        PlannedRow(
            content_id(resp["id"], teacher.model, template.version, sampling),
            template.chat(problem["question"], resp["response"]),
            {"resp": resp, "problem": problem},
        )
        for resp, problem in pairs
    ]


def run(params: Params, problems_path: Path, responses_path: Path, out: Path, metrics_path: Path | None = None) -> dict:
    from cft.data.importers import import_critiques
    from cft.generate import get_generator
    from cft.stages.usage import merge_usage, record_usage, start_usage_logging

    problems = {p["id"]: p for p in read_jsonl(problems_path)}
    pairs = []
    for line, resp in enumerate(read_jsonl(responses_path), start=1):
        if resp.get("problem_id") not in problems:
            raise DataError(f"{responses_path}:{line}: problem_id '{resp.get('problem_id')}' is not in {problems_path}")
        pairs.append((resp, problems[resp["problem_id"]]))

    warning = reference_critic_warning(params)
    if warning:
        print(f"[cft.critique] WARNING: {warning}", file=sys.stderr, flush=True)

    rows: list[dict] = []
    failures: list[dict] = []
    summary: dict = {"teachers": {}, "imported": 0, "import_failures": 0, "failed": 0}
    usage: dict = {}
    llm_ids: list[str] = []
    with Journal(journal_path(out)) as journal, ExitStack() as later:
        usage_log = None
        for teacher in params.critique.teachers:
            if teacher.kind == "reference":
                made = reference_rows(pairs)
                rows.extend(made)
                summary["teachers"]["reference"] = {"rows": len(made)}
                continue
            planned = plan_llm(pairs, teacher)
            llm_ids.extend(p.id for p in planned)
            if all(p.id in journal for p in planned):
                summary["teachers"][f"{teacher.model}:{teacher.prompt_version}"] = {
                    "planned": len(planned), "reused": len(planned), "generated": 0, "failed": 0}
                continue  # nothing to ask: do not even connect (or load a model)

            def make_row(p: PlannedRow, gen: Generation, teacher=teacher) -> dict:
                row = critique_row(p.meta["resp"], p.meta["problem"], teacher.model, teacher.prompt_version, gen.text, p.id)
                if gen.empty:
                    row["empty"] = True  # kept (not paid for again); validation quarantines it
                return row

            usage_log = usage_log or later.enter_context(start_usage_logging(params, "critique"))
            with closing(get_generator(teacher.backend, teacher.model, **teacher.generator_options())) as generator:
                part = generate_journaled(generator, planned, llm_sampling(teacher), journal, make_row,
                                          desc=f"critique {teacher.model}")
                merge_usage(usage, getattr(generator, "usage", dict)())
            summary["teachers"][f"{teacher.model}:{teacher.prompt_version}"] = part
        llm_rows, failures = journal.collect(llm_ids)
        rows.extend(llm_rows)
        summary["failed"] = len(failures)
        for source in params.critique.imports:
            imported, import_failures = import_critiques(source.path, source.format)
            rows.extend(imported)
            # Unreadable imported rows are never dropped silently: they join the failures file.
            failures.extend(import_failures)
            summary["imported"] += len(imported)
            summary["import_failures"] += len(import_failures)
        summary["rows"] = write_jsonl(out, rows)
        write_jsonl(failures_path(out), failures)  # rewritten every run, empty when all done
        journal.compact(llm_ids)  # the output holds every LLM critique worth keeping
        record_usage(summary, usage, metrics_path, usage_log)
    return summary
