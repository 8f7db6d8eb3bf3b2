"""Best-checkpoint selection: the paper evaluates every checkpoint on MATH-500 and keeps
the best (usually mid-training). The scorer is injected (`cft.train.select_best` builds it
on the evaluate stage's protocol), so this module stays free of model code.

Each score is stored in its checkpoint (`cft_score.json`, with what it was scored on), so a
killed selection, or a re-run of a finished training, scores only what is left.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cft.data.io import write_json
from cft.train.checkpoints import complete_checkpoints, step_of

SCORE_FILE = "cft_score.json"


def cached_score(checkpoint: Path, key: dict[str, Any], score: Callable[[Path], float]) -> float:
    """`score(checkpoint)`, or the stored score when it was computed for the same `key`."""
    path = checkpoint / SCORE_FILE
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("key") == key:
            return float(stored["score"])
    value = float(score(checkpoint))
    write_json(path, {"key": key, "score": value})
    return value


def select_best_checkpoint(checkpoint_dir: str | Path, score: Callable[[Path], float]) -> dict[str, Any]:
    """Score every complete checkpoint (higher is better; ties go to the earlier step).

    Returns {"best_checkpoint", "best_step", "best_score", "scores": {name: score}}; merge
    it into the train metrics.
    """
    checkpoints = complete_checkpoints(checkpoint_dir)
    if not checkpoints:
        raise FileNotFoundError(f"{checkpoint_dir}: no complete checkpoint-<step> folders to score")
    scores = {p.name: float(score(p)) for p in checkpoints}
    best = max(checkpoints, key=lambda p: (scores[p.name], -step_of(p)))
    return {
        "best_checkpoint": str(best),
        "best_step": step_of(best),
        "best_score": scores[best.name],
        "scores": scores,
    }
