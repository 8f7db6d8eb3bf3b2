"""Stage train: fine-tune the base model under `accelerate launch` (a subprocess).

    cft train --train-dir data/train --out models/cft

The orchestrating process never imports CUDA: it opens the MLflow run, then starts
`accelerate launch -m cft.train.run ...`, whose TRL trainer logs every step into that
run. The run id is written beside the checkpoint for the register stage.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cft.config import Params
from cft.data.ids import content_id
from cft.data.io import write_json
from cft.registry.lineage import collect_lineage, log_lineage
from cft.registry.tracking import experiment_id, resolve_tracking_uri
from cft.stages.register import RUN_FILE


def train_file_for(mode: str, train_dir: Path) -> Path:
    return train_dir / ("cft.jsonl" if mode == "cft" else "sft.jsonl")


def default_checkpoint_dir(cfg, train_file: Path, out: Path) -> Path:
    """Outside the DVC output (which DVC deletes before a re-run), so a killed run resumes;
    keyed by config and data, so a changed run starts afresh instead of resuming another."""
    digest = hashlib.sha256(train_file.read_bytes()).hexdigest() if train_file.exists() else ""
    return out.parent / "checkpoints" / f"{out.name}-{content_id(cfg.model_dump(mode='json'), digest)}"


def run(params: Params, train_dir: Path, out: Path, metrics_path: Path, plot_path: Path, checkpoint_dir: Path | None = None) -> dict:
    from mlflow import MlflowClient

    from cft.train.launch import launch_training

    cfg = params.train
    exp_id = experiment_id(params.register_)
    tracking_uri = resolve_tracking_uri(params.register_)
    client = MlflowClient(tracking_uri)
    mlflow_run = client.create_run(exp_id, run_name=f"train-{cfg.mode}", tags={"cft.stage": "train", "cft.mode": cfg.mode})
    run_id = mlflow_run.info.run_id
    # Before training: even a failed run says what data and code it was made from.
    log_lineage(client, run_id, collect_lineage(Path("."), params), params)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_ID": exp_id,
        "MLFLOW_RUN_ID": run_id,
    }
    try:
        launch_training(
            cfg,
            train_file=train_file_for(cfg.mode, train_dir),
            output_dir=out,
            metrics_path=metrics_path,
            plot_path=plot_path,
            checkpoint_dir=checkpoint_dir or default_checkpoint_dir(cfg, train_file_for(cfg.mode, train_dir), out),
            env=env,
        )
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    write_json(out / RUN_FILE, {"run_id": run_id, "mode": cfg.mode})
    return {"run_id": run_id}
