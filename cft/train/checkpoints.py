"""Training checkpoints on disk: identity, completeness, resume point, pruning. No torch here.

A run's checkpoints live in one folder, `models/checkpoints/<output>-<id>/`, outside the
DVC output (DVC deletes outputs before re-running a stage). `<id>` hashes only what
decides the run (`TrainConfig.identity()`, the training data and the held-out file, whose
loss curve the run records), so a changed process count or logging frequency resumes the
same run while a changed learning rate starts a new one.

transformers writes a checkpoint in this order: model weights, optimizer and scheduler,
RNG state (one file per process), `trainer_state.json`. A 7B ZeRO-3 save takes minutes, so
a kill often lands in the middle. cft writes `cft_state.json` after every process has
finished its part (an all-reduce in the trainer's `on_save`), listing the files the
checkpoint holds: a checkpoint is complete when that file and everything it lists exist.
Only then are checkpoints over `save_total_limit` deleted (cft does it, not transformers),
so a kill never leaves only an unmarked one. Incomplete ones are renamed
`incomplete-checkpoint-<step>-<time>` and never resumed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from cft.data.ids import content_id
from cft.data.io import atomic_path

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
RUN_FOLDER = re.compile(r"^(?P<output>.+)-(?P<id>[0-9a-f]{16})$")
STATE_FILE = "cft_state.json"  # written last: counters of the run up to this checkpoint
TRAINER_STATE = "trainer_state.json"
IDENTITY_FILE = "run_identity.json"
MLFLOW_RUN_FILE = "mlflow_run.json"  # the run's MLflow run id, reused when a killed run resumes
RESULT_FILE = "result.json"  # metrics of the finished run
INCOMPLETE_PREFIX = "incomplete-"
SCORE_PREFIX = ".score-"  # scratch of best-checkpoint scoring (a merged LoRA model) inside a run folder
# Where the train stage keeps the checkpoints of models/<mode> (beside the outputs, which DVC deletes).
PIPELINE_ROOT = Path("models/checkpoints")


def file_digest(path: str | Path | None) -> str | None:
    if path is None or not Path(path).exists():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_identity(cfg, train_file: str | Path, eval_file: str | Path | None = None) -> dict[str, Any]:
    """What decides a run's weights (config and data) and its held-out curve."""
    return {
        **cfg.identity(),
        "train_file_sha256": file_digest(train_file),
        "eval_file_sha256": file_digest(eval_file),
    }


def default_checkpoint_dir(output_dir: str | Path) -> Path:
    """For a hand-run launch: beside the output, never inside it (the output folder is
    replaced when training ends)."""
    output_dir = Path(output_dir)
    return output_dir.parent / "checkpoints" / output_dir.name


def run_folder(root: str | Path, output_name: str, identity: dict[str, Any]) -> Path:
    """`<root>/<output_name>-<id of identity>`."""
    return Path(root) / f"{output_name}-{content_id(identity)}"


def check_identity(checkpoint_dir: Path, identity: dict[str, Any], *, write: bool = True) -> None:
    """Refuse checkpoints written for another config or other data; record ours the first time
    (`write`: only one process of a distributed run writes)."""
    marker = checkpoint_dir / IDENTITY_FILE
    if marker.exists():
        old = json.loads(marker.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if changed:
            raise SystemExit(
                f"{checkpoint_dir} holds checkpoints of a different run (changed: {', '.join(changed)}); "
                "delete that folder to start over"
            )
        return
    if not write:
        return
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def step_of(path: Path) -> int | None:
    m = CHECKPOINT.match(path.name)
    return int(m.group(1)) if m else None


def list_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """`checkpoint-<step>` folders (complete or not), in step order."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = [(step_of(p), p) for p in root.iterdir() if p.is_dir() and step_of(p) is not None]
    return [p for _, p in sorted(found)]


def is_complete(checkpoint: Path) -> bool:
    """`cft_state.json` is there, and so is every file it lists (a checkpoint that a
    `save_total_limit` rotation was deleting when the kill came is not complete)."""
    try:
        files = read_state(checkpoint).get("files")
    except (OSError, ValueError):
        return False
    return files is not None and TRAINER_STATE in files and all((checkpoint / f).exists() for f in files)


def complete_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    return [p for p in list_checkpoints(checkpoint_dir) if is_complete(p)]


def set_aside_incomplete(checkpoint_dir: str | Path) -> list[Path]:
    """Rename every incomplete checkpoint out of the resume path; returns the new paths."""
    moved = []
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for p in list_checkpoints(checkpoint_dir):
        if not is_complete(p):
            dest = p.with_name(f"{INCOMPLETE_PREFIX}{p.name}-{stamp}")
            p.rename(dest)
            moved.append(dest)
    return moved


def last_complete(checkpoint_dir: str | Path) -> Path | None:
    done = complete_checkpoints(checkpoint_dir)
    return done[-1] if done else None


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


def write_state(checkpoint: Path, state: dict[str, Any]) -> None:
    """Mark a checkpoint complete: its counters and the files it holds now."""
    files = sorted(str(f.relative_to(checkpoint)) for f in checkpoint.rglob("*") if f.is_file() and f.name != STATE_FILE)
    state = {**state, "files": files}
    with atomic_path(checkpoint / STATE_FILE) as tmp:
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def is_finished(checkpoint: Path) -> bool:
    """The checkpoint is the last step of its schedule (the trainer saves at the end)."""
    state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    return bool(state.get("max_steps")) and state.get("global_step", 0) >= state["max_steps"]


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _remove(path: Path) -> None:
    """Delete a folder, renamed first: a kill midway leaves `.trash-*`, never a half checkpoint."""
    trash = path if path.name.startswith(".trash-") else path.with_name(f".trash-{path.name}")
    if trash != path:
        shutil.rmtree(trash, ignore_errors=True)
        path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def _newest(folders: list[Path]) -> Path:
    def started(p: Path) -> float:  # the identity file is written when a run starts
        return (p / IDENTITY_FILE).stat().st_mtime if (p / IDENTITY_FILE).exists() else p.stat().st_mtime

    return max(folders, key=started)


def prune(root: str | Path, *, keep: Path | None = None, keep_last: int | None = None,
          output: str | None = None, dry_run: bool = False) -> list[tuple[Path, int]]:
    """Remove superseded checkpoints under `root` (models/checkpoints); returns (path, bytes).

    Policy: per output (the `<output>` of `<output>-<id>` folders) one run folder is kept:
    `keep` (the run just trained) or else the newest; set-aside incomplete checkpoints and
    leftovers of an interrupted prune or scoring go. With `keep_last`, only the last N complete
    checkpoints of a kept run stay: the last one lets a re-run of a finished training
    re-export its model without training; with 0 the next `cft train` retrains. `output`
    limits all this to one output's folders.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    doomed = [p for p in root.iterdir() if p.name.startswith(".trash-")]
    runs: dict[str, list[Path]] = {}
    for p in root.iterdir():
        m = RUN_FOLDER.match(p.name)
        if m and p.is_dir() and not p.name.startswith(".") and output in (None, m.group("output")):
            runs.setdefault(m.group("output"), []).append(p)
    keep_name = Path(keep).name if keep is not None else None
    for folders in runs.values():
        survivor = next((p for p in folders if p.name == keep_name), None) or _newest(folders)
        doomed += [p for p in folders if p != survivor]
        doomed += [p for p in survivor.iterdir()
                   if p.is_dir() and p.name.startswith((INCOMPLETE_PREFIX, ".trash-", SCORE_PREFIX))]
        if keep_last is not None:
            done = complete_checkpoints(survivor)
            doomed += done[: max(len(done) - keep_last, 0)]
    removed = []
    for p in doomed:
        removed.append((p, _size(p)))
        if not dry_run:
            _remove(p)
    return removed
