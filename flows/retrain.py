"""Scheduled retraining: retrain only when the critique data changed since the champion.

    python -m flows.retrain              # once, in-process
    python -m flows.deploy               # on a schedule, on a work pool (docs/orchestration.md)

1. Reproduce the stages up to `validate` (DVC skips what did not change, so this is
   cheap when no new problems, responses or critiques arrived).
2. Compare the dvc.lock md5 of the critique data (`data/validated`,
   `data/critiques.jsonl`) with the lineage tags of the registered `champion` model
   version (`lineage.dvc.<path>`, written by the register stage). Unchanged: the run
   ends Completed, named "Skipped", with a message that says why.
3. Changed (or no champion yet): reproduce the rest of the pipeline; DVC re-runs from
   the first stage whose inputs changed, so it trains, evaluates and registers (the
   register stage applies the promotion gate).
4. `dvc push` every new artifact to the DVC remote (params `orchestrate.push`).

Orchestration only: the decision compares hashes; stages do the work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, task
from prefect.states import Completed

from cft.registry.lineage import DVC_PREFIX, locked_outputs
from cft.registry.manage import version_by_alias
from flows.pipeline import _logger, _settings, push, run_stage, stage_graph, topological, upstream

CHECK_STAGE = "validate"  # everything up to here is reproduced before deciding
LINEAGE_PATHS = ("data/validated", "data/critiques.jsonl")  # the critique data, as DVC outputs
LINEAGE_TAG = DVC_PREFIX + "{path}"  # model version tag holding the md5 of that output at training time


@dataclass(frozen=True)
class ModelVersionInfo:
    version: str
    alias: str  # champion | challenger
    lineage: dict[str, str] = field(default_factory=dict)  # path -> md5 from its tags


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str


def _short(md5: str | None) -> str:
    return (md5 or "none")[:12]


def decide_retrain(
    current: dict[str, str | None],
    champion: ModelVersionInfo | None,
    challenger: ModelVersionInfo | None = None,
) -> Decision:
    """Retrain unless the champion (or a newer challenger the gate rejected) was trained on this data.

    `current`: path -> md5 of that DVC output in dvc.lock now. A model version whose
    lineage tags equal `current` for every path was trained on exactly this data.
    """
    summary = ", ".join(f"{path} md5 {_short(md5)}" for path, md5 in current.items())
    if champion is None:
        return Decision(True, "no champion model version yet")
    if not any(champion.lineage.get(path) for path in current):
        return Decision(True, f"champion v{champion.version} has no lineage tags ({', '.join(LINEAGE_TAG.format(path=p) for p in current)})")
    changed = [path for path, md5 in current.items() if champion.lineage.get(path) != md5]
    if not changed:
        return Decision(False, f"critique data unchanged since champion v{champion.version} ({summary})")
    if challenger is not None and challenger.version != champion.version and all(challenger.lineage.get(p) == m for p, m in current.items()):
        return Decision(
            False,
            f"critique data unchanged since challenger v{challenger.version} (trained on it; the promotion gate kept champion v{champion.version}) ({summary})",
        )
    detail = "; ".join(f"{path}: {_short(champion.lineage.get(path))} -> {_short(current[path])}" for path in changed)
    return Decision(True, f"critique data changed since champion v{champion.version} ({detail})")


def locked_md5s(dvc_lock: Path, paths: tuple[str, ...] = LINEAGE_PATHS) -> dict[str, str | None]:
    """The md5 dvc.lock records for each output path (None when it is not there)."""
    outputs = locked_outputs(dvc_lock)
    return {path: outputs.get(path) for path in paths}


def model_versions(tracking_uri: str, model_name: str) -> tuple[ModelVersionInfo | None, ModelVersionInfo | None]:
    """The champion and challenger versions with their lineage tags (None when absent)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = []
    for alias in ("champion", "challenger"):
        version = version_by_alias(client, model_name, alias)
        if version is None:
            found.append(None)
            continue
        prefix = LINEAGE_TAG.format(path="")
        lineage = {key[len(prefix):]: value for key, value in (version.tags or {}).items() if key.startswith(prefix)}
        found.append(ModelVersionInfo(str(version.version), alias, lineage))
    return found[0], found[1]


@task(task_run_name="decide")
def decide(workspace: str, force: bool = False) -> Decision:
    """Compare the critique data in dvc.lock with the data behind the registered champion."""
    from cft.config import load_params
    from cft.registry.tracking import resolve_tracking_uri

    root = Path(workspace)
    current = locked_md5s(root / "dvc.lock")
    if force:
        return Decision(True, "forced")
    cfg = load_params(root / "params.yaml").register_
    champion, challenger = model_versions(resolve_tracking_uri(cfg, root), cfg.model_name)
    decision = decide_retrain(current, champion, challenger)
    _logger().info(("retrain: " if decision.retrain else "skip: ") + decision.reason)
    return decision


def _registered(root: Path) -> dict:
    path = root / "metrics" / "registry.json"
    return json.loads(path.read_text()) if path.exists() else {}


@flow(name="cft-retrain", log_prints=True)
def cft_retrain(force: bool = False, workspace: str | None = None):
    """Retrain when the critique data changed since the champion; skip otherwise.

    `force`: retrain even if the data did not change. `workspace`: the project
    directory (default: the working directory, which a deployment sets).
    """
    root = Path(workspace or ".").resolve()
    cfg = _settings(root)
    graph = stage_graph(root)
    before = upstream(graph, CHECK_STAGE)
    ran: list[str] = []
    for stage in before:
        ran += run_stage(stage, root, settings=cfg)

    decision = decide(str(root), force)
    if not decision.retrain:
        return Completed(name="Skipped", message=f"skipped: {decision.reason}", data={"retrained": False, "reason": decision.reason, "ran": ran})

    for stage in [s for s in topological(graph) if s not in before]:
        ran += run_stage(stage, root, settings=cfg)
    if cfg.push:
        push.with_options(retries=cfg.task_retries, retry_delay_seconds=cfg.retry_delay_s)(str(root))

    registry = _registered(root)
    outcome = (
        f"model {registry.get('model_name')} v{registry.get('version')} "
        f"({'champion' if registry.get('champion') else 'challenger'}: {registry.get('reason')})"
        if registry
        else "no model registered"
    )
    message = f"retrained: {decision.reason}; ran {', '.join(ran) or 'nothing'}; {outcome}" + ("; pushed to the DVC remote" if cfg.push else "")
    return Completed(message=message, data={"retrained": True, "reason": decision.reason, "ran": ran, "registry": registry})


if __name__ == "__main__":
    cft_retrain()
