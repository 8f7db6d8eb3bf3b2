"""Token usage and cost of a generation stage, logged to MLflow (never the API key)."""

from __future__ import annotations

import re

from cft.config import Params


def usage_metrics(stage: str, usage: dict[str, dict]) -> dict[str, float]:
    """Flatten {model: {prompt_tokens: .., cost_usd: ..}} into MLflow metric names."""
    metrics = {}
    for model, counts in usage.items():
        name = re.sub(r"[^A-Za-z0-9_\-./ ]", "_", model)
        for key, value in counts.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[f"{stage}.{name}.{key}"] = float(value)
    return metrics


def log_usage(params: Params, stage: str, usage: dict[str, dict]) -> None:
    import mlflow

    from cft.registry.tracking import experiment_id

    with mlflow.start_run(experiment_id=experiment_id(params.register_), run_name=stage, tags={"cft.stage": stage}):
        mlflow.log_metrics(usage_metrics(stage, usage))
