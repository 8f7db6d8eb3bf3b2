"""Stage register: log the trained model to MLflow, register it, apply the promotion gate.

    cft register --model models/cft --eval-metrics metrics/eval/cft.json --out metrics/registry.json

Each training run adds one model version with alias `challenger`; it also becomes
`champion` when its evaluation beats the current champion's on `register.metric` (the
benchmark average by default; `register.higher_is_better` gives its direction) by more
than `register.promotion_margin` (or there is no evaluated champion yet), and never when
the evaluation failed or is missing. Re-running for the same training run adds no version.
The version carries the training run's lineage tags (cft.registry.lineage) and the
decision (cft.registry.manage); the decision is also written to `out` and a Markdown
report.

`register.log_weights`: `copy` logs the checkpoint as an MLflow artifact; `reference`
logs only a pointer to the DVC-tracked checkpoint (cft.registry.checkpoint_ref).
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from cft.config import Params
from cft.data.io import atomic_path, write_json
from cft.registry.lineage import DVC_PREFIX, collect_lineage, log_lineage, run_lineage, tag_name
from cft.registry.manage import EVAL_STATUS_TAG, METRIC_TAG, SCORE_TAG, apply_promotion_gate, find_version_for_run, register_version
from cft.registry.promotion import evaluation_score
from cft.registry.tracking import experiment_id, log_evaluation, resolve_tracking_uri, training_run_id
from cft.stages.graph import recorded_md5



def _pip_requirements() -> list[str]:
    # Passed explicitly: MLflow's inference is slow (~11 s) and misses packages.
    return [f"{name}=={metadata.version(name)}" for name in ("torch", "transformers", "tokenizers", "safetensors", "mlflow")]


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"error": f"{path} is not valid JSON"}


def _log_model(model_dir: Path, run_id: str, ref: dict | None):
    """Log the pyfunc into the run: the checkpoint copied, or `ref` pointing to it (no weights read)."""
    import mlflow
    from mlflow.models import infer_signature

    import cft.registry.pyfunc_model as pyfunc_model

    if ref is not None:
        weights = {"model_config": {"checkpoint_ref": ref}}
    else:
        weights = {"artifacts": {"checkpoint": str(model_dir)}}
    with mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=pyfunc_model.__file__,
            pip_requirements=_pip_requirements(),
            signature=infer_signature(["question"], ["answer"], params={"max_new_tokens": 512}),
            **weights,
        )


def _version_tags(client, run_id: str, root: Path, model_dir: Path) -> dict[str, str]:
    """The run's lineage, plus the checkpoint's own md5 (train's output in dvc.lock)."""
    tags = run_lineage(client, run_id)
    try:
        rel = model_dir.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = None
    md5 = recorded_md5(root, rel) if rel else None
    if md5:
        tags[tag_name(DVC_PREFIX, rel)] = md5
    return tags


def run(params: Params, model_dir: Path, eval_metrics_path: Path, out: Path, *, root: Path = Path("."), report: Path | None = None) -> dict:
    from mlflow import MlflowClient

    cfg = params.register_
    root, model_dir = Path(root), Path(model_dir)
    exp_id = experiment_id(cfg, root)
    client = MlflowClient(resolve_tracking_uri(cfg, root))
    name = cfg.model_name
    run_id = training_run_id(client, model_dir)
    evaluation = _read_json(eval_metrics_path)
    value, eval_status = evaluation_score(evaluation, cfg.metric)
    notes = []

    version = find_version_for_run(client, name, run_id) if run_id else None
    if version is not None:
        notes.append(f"training run {run_id} already registered as version {version.version}: no new version")
    else:
        if run_id is None:  # a checkpoint not trained by the train stage: record what we can now
            run_id = client.create_run(exp_id, run_name="register", tags={"cft.stage": "register"}).info.run_id
            log_lineage(client, run_id, collect_lineage(root, params), params)
            notes.append("no training run found: lineage collected at register time")
        if f"eval.{cfg.metric}" not in client.get_run(run_id).data.metrics:  # the evaluate stage logs them
            log_evaluation(client, run_id, evaluation)
        ref = None
        if cfg.log_weights == "reference":
            from cft.registry.checkpoint_ref import make_ref

            ref = make_ref(root, model_dir, run_lineage(client, run_id).get("lineage.git.commit", "none"))
            if not ref["dvc_md5"]:
                notes.append(f"{model_dir} has no md5 in dvc.lock: the reference is a plain path that a later run overwrites")
        info = _log_model(model_dir, run_id, ref)
        version = register_version(
            client, name, info.model_uri, run_id, model_id=info.model_id, tags=_version_tags(client, run_id, root, model_dir)
        )
    client.set_model_version_tag(name, version.version, EVAL_STATUS_TAG, eval_status)
    if value is not None:
        client.set_model_version_tag(name, version.version, SCORE_TAG, str(value))
        client.set_model_version_tag(name, version.version, METRIC_TAG, cfg.metric)

    gate = apply_promotion_gate(client, name, version.version, value, cfg.promotion_margin, eval_status,
                                metric=cfg.metric, higher_is_better=cfg.higher_is_better)
    result = {
        "model_name": name,
        "version": int(version.version),
        "run_id": run_id,
        "log_weights": cfg.log_weights,
        "eval_status": eval_status,
        "metric": cfg.metric,
        "challenger_score": value,
        "champion_version_before": int(gate.champion_before) if gate.champion_before else None,
        "champion_score_before": gate.champion_score_before,
        "champion": gate.is_champion,
        "decision": gate.decision,
        "reason": gate.reason,
        "notes": notes,
    }
    write_json(out, result)
    write_report(report or report_path(root, out), result, client.get_model_version(name, version.version).tags)
    return result


def report_path(root: Path, out: Path) -> Path:
    """The Markdown output that dvc.yaml gives the stage writing `out`; beside `out` outside a DVC project."""
    from cft.stages.graph import outputs, producer

    try:
        rel = Path(out).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        rel = None
    stage = producer(root, rel) if rel else None
    pages = [p for p in outputs(root, stage, metrics=False) if p.endswith(".md")] if stage else []
    return Path(root) / pages[0] if pages else Path(out).with_suffix(".md")


def write_report(path: Path, result: dict, version_tags: dict[str, str]) -> None:
    """A short Markdown page: the decision, then where the model came from."""
    lines = [
        f"# Registry: {result['model_name']} version {result['version']}",
        "",
        f"- decision: **{result['decision']}** ({result['reason']})",
        f"- champion now: {'this version' if result['champion'] else 'unchanged'}",
        f"- evaluation: {result['eval_status']}, {result['metric']} {result['challenger_score']}",
        f"- champion before: version {result['champion_version_before']}, {result['metric']} {result['champion_score_before']}",
        f"- training run: `{result['run_id']}`, weights logged by {result['log_weights']}",
        *[f"- note: {n}" for n in result["notes"]],
        "",
        "## Lineage",
        "",
        "| tag | value |",
        "|---|---|",
        *[f"| `{k}` | `{v}` |" for k, v in sorted(version_tags.items()) if k.startswith("lineage.")],
        "",
    ]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")
