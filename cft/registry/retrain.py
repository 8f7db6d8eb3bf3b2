"""The retraining decision: train again only when training would read other data than the model we have.

What training reads is the train stage's data inputs as DVC records them after the stages
before it ran: the built training files (`data/train`) and the base model (`models/tiny`),
each an output of an earlier stage (cft.stages.graph.stage_inputs). The register stage
tags every model version with the md5 of those outputs at training time
(`lineage.dvc.<path>`, cft.registry.lineage). So:

- the champion was trained on exactly these inputs: skip;
- another registered version was (the promotion gate kept the champion, a person rolled
  back, or its evaluation failed so nothing is champion yet): skip, training again would
  make the same model;
- otherwise (no champion yet, a champion without those tags, other inputs): retrain.

Comparing the training files rather than the critique data means that a change which
leaves the clean rows as they were (validation settings, rejected rows only, a new
summary) is no reason to retrain. Params and code are not compared: a `train` params
change re-runs training in `dvc repro` / the pipeline flow, or force a retrain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cft.registry.lineage import DVC_PREFIX, TRAIN_STAGE, tag_name

REGISTER_STAGE = "register"  # its metrics output is the registration's result (cft.stages.register)


@dataclass(frozen=True)
class ModelVersionInfo:
    version: str
    aliases: tuple[str, ...] = ()
    lineage: dict[str, str] = field(default_factory=dict)  # path -> md5, from its lineage.dvc.* tags


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str
    force: bool = False  # re-run training and what follows even where DVC sees nothing changed


def _short(md5: str | None) -> str:
    return (md5 or "none")[:12]


def _trained_on(version: ModelVersionInfo, current: dict[str, str | None]) -> bool:
    return bool(current) and all(md5 is not None and version.lineage.get(path) == md5 for path, md5 in current.items())


def decide_retrain(
    current: dict[str, str | None],
    champion: ModelVersionInfo | None,
    versions: list[ModelVersionInfo] = (),
    force: bool = False,
) -> Decision:
    """Retrain unless a registered version was trained on exactly `current`.

    `current`: path -> md5 of each data input of the train stage now (None: not built).
    `versions`: every registered version (the champion may be among them).
    """
    decision = _compare(current, champion, list(versions))
    if force:
        return Decision(True, f"forced ({decision.reason})" if not decision.retrain else f"forced; {decision.reason}", force=True)
    return decision


def _compare(current: dict[str, str | None], champion: ModelVersionInfo | None, versions: list[ModelVersionInfo]) -> Decision:
    summary = ", ".join(f"{path} md5 {_short(md5)}" for path, md5 in current.items())
    if champion is not None and _trained_on(champion, current):
        return Decision(False, f"training data unchanged since champion v{champion.version} ({summary})")
    same = [v for v in versions if (champion is None or v.version != champion.version) and _trained_on(v, current)]
    if same:
        newest = max(same, key=lambda v: int(v.version))
        aliases = f" ({', '.join(newest.aliases)})" if newest.aliases else ""
        kept = (f"the promotion gate or a person kept champion v{champion.version}" if champion is not None
                else "no version is champion (its evaluation failed or the gate has not promoted one)")
        return Decision(False, f"training data unchanged since v{newest.version}{aliases}, which was trained on it; {kept} ({summary})")
    if champion is None:
        return Decision(True, "no champion model version yet")
    if not any(champion.lineage.get(path) for path in current):
        tags = ", ".join(tag_name(DVC_PREFIX, p) for p in current)
        return Decision(True, f"champion v{champion.version} has no lineage tags ({tags})")
    changed = [path for path, md5 in current.items() if champion.lineage.get(path) != md5]
    detail = "; ".join(f"{path}: {_short(champion.lineage.get(path))} -> {_short(current[path])}" for path in changed)
    return Decision(True, f"training data changed since champion v{champion.version} ({detail})")


# --- reading the project and the registry ---------------------------------------------------


def training_inputs(root: Path, stage: str = TRAIN_STAGE) -> dict[str, str | None]:
    """path -> md5 of the data the train stage reads, as DVC records it now."""
    from cft.stages.graph import stage_inputs

    return stage_inputs(root, stage)


def _info(version) -> ModelVersionInfo:
    lineage = {key[len(DVC_PREFIX):]: value for key, value in (version.tags or {}).items() if key.startswith(DVC_PREFIX)}
    return ModelVersionInfo(str(version.version), tuple(sorted(getattr(version, "aliases", None) or ())), lineage)


def registered_versions(tracking_uri: str, model_name: str) -> tuple[ModelVersionInfo | None, list[ModelVersionInfo]]:
    """The champion (None if none) and every version of the model, with their lineage tags."""
    from mlflow import MlflowClient

    from cft.registry.manage import version_by_alias

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    champion = version_by_alias(client, model_name, "champion")
    versions = client.search_model_versions(f"name = '{model_name}'")
    return (_info(champion) if champion is not None else None), [_info(v) for v in versions]


def decide(root: Path, force: bool = False) -> Decision:
    """Compare what training would read now with the registered versions' lineage."""
    from cft.config import load_params
    from cft.registry.tracking import resolve_tracking_uri

    root = Path(root)
    cfg = load_params(root / "params.yaml").register_
    champion, versions = registered_versions(resolve_tracking_uri(cfg, root), cfg.model_name)
    return decide_retrain(training_inputs(root), champion, versions, force=force)


def registration_outcome(root: Path, ran: list[str]) -> str:
    """What this run registered: the result of the register stage(s) that ran in it, else nothing."""
    from cft.stages.graph import outputs

    results = []
    for stage in ran:
        if stage == REGISTER_STAGE or stage.startswith(f"{REGISTER_STAGE}@"):
            for path in outputs(root, stage, metrics=True):
                result_file = Path(root) / path
                if result_file.exists():
                    results.append(json.loads(result_file.read_text()))
    if not results:
        return "no model registered by this run"
    return "; ".join(
        f"model {r.get('model_name')} v{r.get('version')} ({'champion' if r.get('champion') else 'challenger'}: {r.get('reason')})"
        for r in results
    )
