"""MLflow set-up shared by the stages: one tracking URI and experiment from params, the run
a trained model came from, and the tag that groups the runs of one pipeline run.

`cft.run_group` = `heldout-<digest of data/train/heldout>`: the training runs of every mode
(CFT and its SFT baselines) and the evaluation run of the base model share it, because they
are measured on the same held-out questions. Filter on it in the MLflow UI to compare them:
tags.`cft.run_group` = "heldout-...".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cft.config import RegisterConfig

RUN_FILE = "mlflow_run.json"  # written beside a trained model by the train stage: its MLflow run
RUN_GROUP_TAG = "cft.run_group"


def run_group(heldout_dir: Path) -> str | None:
    """`heldout-<digest>` of every file in the held-out folder (names and contents); None when it
    has no files, since runs measured on no held-out data have nothing in common."""
    digest = hashlib.sha256()
    root = Path(heldout_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    if not files:
        return None
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return f"heldout-{digest.hexdigest()[:12]}"


def training_run_id(client, model_dir: Path) -> str | None:
    """The MLflow run that trained `model_dir` (its RUN_FILE), if that run is in this store."""
    from mlflow.exceptions import MlflowException

    run_file = Path(model_dir) / RUN_FILE
    if not run_file.exists():
        return None
    run_id = json.loads(run_file.read_text())["run_id"]
    try:
        client.get_run(run_id)
        return run_id
    except MlflowException:
        print(f"warning: training run {run_id} is not in {client.tracking_uri}; logging to a new run")
        return None


def log_evaluation(client, run_id: str, evaluation: dict | None) -> None:
    """Every number of an evaluation as `eval.<dotted key>` metrics of the run."""
    from mlflow.entities import Metric
    from mlflow.utils.time import get_current_time_millis

    from cft.registry.lineage import flatten

    now = get_current_time_millis()
    numbers = {k: v for k, v in flatten(evaluation or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics = [Metric(f"eval.{k}", float(v), now, 0) for k, v in numbers.items()]
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


def resolve_tracking_uri(cfg: RegisterConfig, root: Path = Path(".")) -> str:
    """SQLite paths in params are relative to the project, whatever the working directory."""
    uri = cfg.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str((root / uri[len(prefix):]).resolve())
    return uri


def experiment_id(cfg: RegisterConfig, root: Path = Path(".")) -> str:
    """Create the experiment on first use, with artifacts inside the project."""
    import mlflow

    mlflow.set_tracking_uri(resolve_tracking_uri(cfg, root))
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    location = (root / cfg.artifact_location).resolve().as_uri()
    try:
        return mlflow.create_experiment(cfg.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # another stage created it in the meantime
        exp = mlflow.get_experiment_by_name(cfg.experiment)
        if exp is None:
            raise
        return exp.experiment_id
