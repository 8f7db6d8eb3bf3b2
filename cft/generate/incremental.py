"""Resumable generation: skip rows already journaled, journal each row as it finishes.

This is the loop the respond and critique stages share:

    journal = Journal(respond.journal_path(out))   # cft.stages.respond: data/cache/responses.journal.jsonl
    summary = generate_journaled(generator, planned, sampling, journal, make_row)
    journal.finalize([p.id for p in planned], out)
    journal.compact([p.id for p in planned])   # the stage succeeded: drop rows no output holds

Planning is one pass over the plan with O(1) membership tests: resuming a stage with
nothing left to do is linear in its rows, about a second per 16K rows, most of it
reading and writing JSON (bench/bench_planning.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cft.generate.base import Chat, Generation, Generator, Sampling, iter_generations
from cft.generate.journal import Journal
from cft.generate.progress import GenerationProgress


def failure_reason(exc: BaseException) -> str:
    """The short cause a failures file lists: the backend's own (`prompt_too_long`, ...) or `error`."""
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and reason else "error"


@dataclass(frozen=True)
class PlannedRow:
    """One row a stage wants: its content id, the chat to send, and whatever `make_row` needs."""

    id: str
    chat: Chat
    meta: dict[str, Any] = field(default_factory=dict)


def generate_journaled(
    generator: Generator,
    planned: Sequence[PlannedRow],
    sampling: Sampling,
    journal: Journal,
    make_row: Callable[[PlannedRow, Generation], dict],
    *,
    desc: str = "generate",
    chunk_size: int = 64,
    progress: bool | None = None,
) -> dict:
    """Generate every planned row the journal lacks; failures are recorded, not raised.

    `make_row` must return a dict whose `id` is the planned id. Progress goes to
    stderr: a bar on a terminal, a plain line every few seconds otherwise;
    `progress=False` turns it off.
    """
    todo: list[PlannedRow] = []
    reused: set[str] = set()
    queued: set[str] = set()
    for p in planned:
        if p.id in journal:
            reused.add(p.id)
        elif p.id not in queued:  # the same content twice is generated once
            queued.add(p.id)
            todo.append(p)
    total = len(reused) + len(todo)
    generated = failed = 0
    with GenerationProgress(total, desc=desc, initial=len(reused), disable=progress is False) as bar:
        if todo:
            for i, result in iter_generations(generator, [p.chat for p in todo], sampling, chunk_size=chunk_size):
                p = todo[i]
                if isinstance(result, Exception):
                    journal.record_failure(p.id, str(result), getattr(result, "attempts", 1), failure_reason(result))
                    failed += 1
                else:
                    row = make_row(p, result)
                    if row.get("id") != p.id:
                        raise ValueError(f"make_row returned id {row.get('id')!r} for planned id {p.id!r}")
                    journal.append(row)
                    generated += 1
                bar.update(result)
    return {"planned": total, "reused": total - len(todo), "generated": generated, "failed": failed}
