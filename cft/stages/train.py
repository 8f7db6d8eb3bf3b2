"""Stage train: fine-tune the base model under `accelerate launch` (a subprocess).

    cft train --train-dir data/train --out models/cft [--mode sft_verified]

The training rows of the mode are `<train-dir>/cft.jsonl` or `sft.jsonl`; held-out rows of
the same format in `<train-dir>/heldout/` give the held-out loss. Checkpoints live in
`models/checkpoints/<out>-<id>/`, keyed by the config, the training data and the held-out
file, so a killed run resumes (with any process count) and a changed one starts afresh.
The orchestrating process never imports CUDA: it opens (or, for a resumed run, reopens)
the MLflow run, whose id is kept beside the checkpoints, then starts `accelerate launch -m
cft.train.run`, whose TRL trainer logs every step into that run. When training succeeds,
superseded checkpoints are pruned and the run id is written beside the model for the
register stage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cft.config import ConfigError, Params
from cft.data.io import write_json
from cft.registry.lineage import collect_lineage, log_lineage
from cft.registry.tracking import RUN_FILE, RUN_GROUP_TAG, experiment_id, resolve_tracking_uri, run_group
from cft.stages.build import HELDOUT_DIR
from cft.train import checkpoints as ckpt
from cft.train.config import TrainConfig

def train_file_for(mode: str, train_dir: Path) -> Path:
    return train_dir / ("cft.jsonl" if mode == "cft" else "sft.jsonl")


def heldout_file_for(mode: str, train_dir: Path) -> Path | None:
    """The held-out rows beside the training file, when the build stage wrote them."""
    path = train_dir / HELDOUT_DIR / train_file_for(mode, train_dir).name
    return path if path.exists() else None


def default_checkpoint_dir(cfg: TrainConfig, train_file: Path, eval_file: Path | None, out: Path) -> Path:
    """Outside the DVC output (which DVC deletes before a re-run), so a killed run resumes;
    keyed by the config, the training data and the held-out file, so a changed run starts afresh
    instead of resuming another."""
    return ckpt.run_folder(out.parent / "checkpoints", out.name, ckpt.run_identity(cfg, train_file, eval_file))


def mlflow_run(client, exp_id: str, tracking_uri: str, checkpoint_dir: Path, cfg: TrainConfig) -> tuple[str, bool]:
    """The MLflow run of this training: the one an earlier attempt opened (kept beside its
    checkpoints) while a complete checkpoint of it is there to resume or re-export, else a
    new one (a run that starts from scratch is a new run). Returns (run id, reused)."""
    from mlflow.exceptions import MlflowException

    marker = checkpoint_dir / ckpt.MLFLOW_RUN_FILE
    if marker.exists():
        known = json.loads(marker.read_text(encoding="utf-8"))
        if known.get("tracking_uri") == tracking_uri:
            try:
                run = client.get_run(known["run_id"])
            except MlflowException:
                run = None
            if run is not None and run.info.lifecycle_stage == "active" and run.info.experiment_id == exp_id:
                if ckpt.complete_checkpoints(checkpoint_dir):
                    return run.info.run_id, True
                if run.info.status == "RUNNING":  # killed before its first checkpoint: nothing to continue
                    client.set_terminated(run.info.run_id, status="KILLED")
    created = client.create_run(exp_id, run_name=f"train-{cfg.mode}", tags={"cft.stage": "train", "cft.mode": cfg.mode})
    write_json(marker, {"run_id": created.info.run_id, "tracking_uri": tracking_uri})
    return created.info.run_id, False


def scoring_for(params: Params) -> dict:
    """Best-checkpoint scoring runs on the evaluate stage's backend with its prompt."""
    ev = params.evaluate
    return {"backend": ev.backend, "options": ev.generator_options(), "system_prompt": ev.system_prompt,
            "grade_timeout_s": ev.grade_timeout_s}


def run(params: Params, train_dir: Path, out: Path, metrics_path: Path, plot_path: Path,
        checkpoint_dir: Path | None = None, mode: str | None = None) -> dict:
    from mlflow import MlflowClient

    from cft.train.launch import launch_training

    cfg = params.train
    try:
        cfg = cfg.for_mode(mode or cfg.mode)
    except ValueError as exc:
        raise ConfigError(f"--mode: {exc}") from None
    train_file = train_file_for(cfg.mode, train_dir)
    if not train_file.exists():
        raise FileNotFoundError(f"{train_file}: no training file for mode '{cfg.mode}' (run `cft build` first)")
    eval_file = heldout_file_for(cfg.mode, train_dir)
    checkpoint_root = out.parent / "checkpoints"
    checkpoint_dir = checkpoint_dir or default_checkpoint_dir(cfg, train_file, eval_file, out)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)

    exp_id = experiment_id(params.register_)
    tracking_uri = resolve_tracking_uri(params.register_)
    client = MlflowClient(tracking_uri)
    run_id, reused = mlflow_run(client, exp_id, tracking_uri, checkpoint_dir, cfg)
    group = run_group(train_dir / HELDOUT_DIR)
    if group is not None:  # no held-out files: no group to share with other runs
        client.set_tag(run_id, RUN_GROUP_TAG, group)
    if reused:
        print(f"[cft.train] continuing MLflow run {run_id} of {checkpoint_dir.name}", flush=True)
    # Before training: even a failed run says what data and code it was made from (and its own mode).
    run_params = params.model_copy(update={"train": cfg})
    log_lineage(client, run_id, collect_lineage(Path("."), run_params), run_params)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_ID": exp_id,
        "MLFLOW_RUN_ID": run_id,
    }
    try:
        launch_training(
            cfg,
            train_file=train_file,
            eval_file=eval_file,
            output_dir=out,
            metrics_path=metrics_path,
            plot_path=plot_path,
            checkpoint_dir=checkpoint_dir,
            env=env,
            scoring=scoring_for(params) if cfg.best_checkpoint else None,
        )
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    write_json(out / RUN_FILE, {"run_id": run_id, "mode": cfg.mode})
    if checkpoint_dir.parent == checkpoint_root:
        for path, size in ckpt.prune(checkpoint_root, keep=checkpoint_dir, output=out.name):
            print(f"[cft.train] pruned superseded {path} ({size / 2**20:.1f} MiB)", flush=True)
    return {"run_id": run_id, "mode": cfg.mode, "checkpoint_dir": str(checkpoint_dir)}
