"""MLflow set-up shared by the stages: one tracking URI and experiment from params."""

from __future__ import annotations

from pathlib import Path

from cft.config import RegisterConfig


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
