"""Stage register: log the trained model to MLflow, register it, apply the promotion gate.

    cft register --model models/cft --eval-metrics metrics/eval.json --out metrics/registry.json

Each training run adds one model version with alias `challenger`; it also becomes
`champion` when it is the first version or its evaluation average beats the current
champion's by more than `register.promotion_margin`. Re-running for the same training
run adds no version.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from cft.config import Params
from cft.data.io import write_json
from cft.registry.promotion import decide
from cft.registry.tracking import experiment_id

RUN_FILE = "mlflow_run.json"  # written beside the checkpoint by the train stage
SCORE_TAG = "eval_average"


def _pip_requirements() -> list[str]:
    # Passed explicitly: MLflow's inference is slow (~11 s) and misses packages.
    return [f"{name}=={metadata.version(name)}" for name in ("torch", "transformers", "tokenizers", "safetensors", "mlflow")]


def _flat(prefix: str, obj, out: dict) -> dict:
    if isinstance(obj, dict):
        for key, value in obj.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = obj
    return out


def _run_exists(client, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
        return True
    except MlflowException:
        return False


def _champion_score(client, name: str) -> tuple[str | None, float | None]:
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None, None
    score = version.tags.get(SCORE_TAG)
    return version.version, float(score) if score is not None else None


def run(params: Params, model_dir: Path, eval_metrics_path: Path, out: Path) -> dict:
    import mlflow
    from mlflow import MlflowClient

    cfg = params.register_
    exp_id = experiment_id(cfg)
    client = MlflowClient()
    run_file = model_dir / RUN_FILE
    run_id = json.loads(run_file.read_text())["run_id"] if run_file.exists() else None
    if run_id and not _run_exists(client, run_id):
        print(f"warning: training run {run_id} is not in {mlflow.get_tracking_uri()}; logging to a new run")
        run_id = None
    evaluation = json.loads(eval_metrics_path.read_text()) if eval_metrics_path.exists() else {}
    average = evaluation.get("average")

    existing = client.search_model_versions(f"name='{cfg.model_name}' and run_id='{run_id}'") if run_id else []
    if existing:
        version = existing[0]
    else:
        with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else exp_id) as active:
            run_id = active.info.run_id
            mlflow.log_params(_flat("", params.model_dump(mode="json", by_alias=True, include={"train", "respond", "critique", "validate_", "build"}), {}))
            mlflow.log_metrics({f"eval.{k}": v for k, v in _flat("", evaluation, {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            from mlflow.models import infer_signature

            import cft.registry.pyfunc_model as pyfunc_model

            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=pyfunc_model.__file__,
                artifacts={"checkpoint": str(model_dir)},
                pip_requirements=_pip_requirements(),
                signature=infer_signature(["question"], ["answer"], params={"max_new_tokens": 512}),
                registered_model_name=cfg.model_name,
            )
        version = client.get_model_version(cfg.model_name, str(info.registered_model_version))
        if average is not None:
            client.set_model_version_tag(cfg.model_name, version.version, SCORE_TAG, str(average))

    champion_version, champion_score = _champion_score(client, cfg.model_name)
    client.set_registered_model_alias(cfg.model_name, "challenger", version.version)
    if champion_version is not None and str(champion_version) == str(version.version):
        decision_promote, reason = True, "already champion"
    else:
        decision = decide(average, champion_score, cfg.promotion_margin)
        decision_promote, reason = decision.promote, decision.reason
        if decision.promote:
            client.set_registered_model_alias(cfg.model_name, "champion", version.version)
        client.set_model_version_tag(cfg.model_name, version.version, "promotion_decision", "promoted" if decision.promote else "rejected")
        client.set_model_version_tag(cfg.model_name, version.version, "promotion_reason", reason)

    result = {
        "model_name": cfg.model_name,
        "version": int(version.version),
        "run_id": run_id,
        "challenger_average": average,
        "champion_average_before": champion_score,
        "champion": decision_promote,
        "reason": reason,
    }
    write_json(out, result)
    return result
