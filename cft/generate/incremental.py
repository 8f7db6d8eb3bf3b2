"""Resumable generation: skip rows already journaled, journal each row as it finishes.

This is the loop the respond and critique stages share:

    journal = Journal(out.with_name(out.name + ".journal.jsonl"))
    summary = generate_journaled(generator, planned, sampling, journal, make_row)
    journal.finalize([p.id for p in planned], out)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cft.generate.base import Chat, Generation, Generator, Sampling
from cft.generate.journal import Journal
from cft.generate.progress import GenerationProgress


@dataclass(frozen=True)
class PlannedRow:
    """One row a stage wants: its content id, the chat to send, and whatever `make_row` needs."""

    id: str
    chat: Chat
    meta: dict[str, Any] = field(default_factory=dict)


def iter_generations(generator: Generator, chats: list[Chat], sampling: Sampling, *,
                     chunk_size: int = 64) -> Iterator[tuple[int, Generation | Exception]]:
    """(index, result) as results finish: the backend's own `generate_iter` if it has one,
    else `generate` on chunks (so even a batch backend loses at most one chunk to a kill)."""
    streaming = getattr(generator, "generate_iter", None)
    if streaming is not None:
        yield from streaming(chats, sampling)
        return
    for start in range(0, len(chats), chunk_size):
        chunk = chats[start : start + chunk_size]
        try:
            outs = generator.generate(chunk, sampling)
        except Exception as exc:  # noqa: BLE001 - recorded per row as a failure
            outs = [exc] * len(chunk)
        yield from enumerate(outs, start=start)


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

    `make_row` must return a dict whose `id` is the planned id. `progress=None`
    shows the bar only on a terminal.
    """
    done = journal.done_ids()
    todo: list[PlannedRow] = []
    queued: set[str] = set()
    for p in planned:
        if p.id not in done and p.id not in queued:  # the same content twice is generated once
            queued.add(p.id)
            todo.append(p)
    total = len(done.intersection(p.id for p in planned)) + len(todo)
    generated = failed = 0
    disable = None if progress is None else not progress
    with GenerationProgress(total, desc=desc, initial=total - len(todo), disable=disable) as bar:
        if todo:
            for i, result in iter_generations(generator, [p.chat for p in todo], sampling, chunk_size=chunk_size):
                p = todo[i]
                if isinstance(result, Exception):
                    journal.record_failure(p.id, str(result), getattr(result, "attempts", 1))
                    failed += 1
                else:
                    row = make_row(p, result)
                    if row.get("id") != p.id:
                        raise ValueError(f"make_row returned id {row.get('id')!r} for planned id {p.id!r}")
                    journal.append(row)
                    generated += 1
                bar.update(result)
    return {"planned": total, "reused": total - len(todo), "generated": generated, "failed": failed}
