"""Best-checkpoint selection: the paper evaluates every checkpoint on MATH-500 and keeps
the best (usually mid-training). The scorer is injected (the lead builds it on the
evaluate stage), so this module stays free of model code.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STEP = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """`checkpoint-<step>` folders, in step order."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found)]


def select_best_checkpoint(
    checkpoint_dir: str | Path,
    score: Callable[[Path], float],
    *,
    copy_to: str | Path | None = None,
) -> dict[str, Any]:
    """Score every checkpoint (higher is better; ties go to the earlier step).

    Returns {"best_checkpoint", "best_step", "best_score", "scores": {name: score}}; merge
    it into the train metrics. With `copy_to`, the best checkpoint's model files (not its
    optimizer state) are copied there as an ordinary HF directory.
    """
    checkpoints = list_checkpoints(checkpoint_dir)
    if not checkpoints:
        raise FileNotFoundError(f"{checkpoint_dir}: no checkpoint-<step> folders to score")
    scores = {p.name: float(score(p)) for p in checkpoints}
    best = max(checkpoints, key=lambda p: (scores[p.name], -int(_STEP.match(p.name).group(1))))
    if copy_to is not None:
        copy_model_files(best, Path(copy_to))
    return {
        "best_checkpoint": str(best),
        "best_step": int(_STEP.match(best.name).group(1)),
        "best_score": scores[best.name],
        "scores": scores,
    }


# Trainer state that a from_pretrained directory does not need.
_TRAINING_STATE = ("optimizer", "scheduler", "rng_state", "trainer_state", "training_args", "global_step", "zero_to_fp32")


def copy_model_files(checkpoint: Path, dest: Path) -> None:
    """Copy weights, config and tokenizer of `checkpoint` to `dest` (replacing it)."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in checkpoint.iterdir():
        if f.is_file() and not f.name.startswith(_TRAINING_STATE):
            shutil.copy2(f, tmp / f.name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
