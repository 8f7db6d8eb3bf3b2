"""Scheduled retraining: retrain only when training would read other data than the registered models.

    python -m flows.retrain              # once, in-process
    python -m flows.deploy               # on a schedule, on a work pool (docs/orchestration.md)

1. Reproduce the stages `train` depends on (DVC skips what did not change, so this is cheap
   when no new problems, responses or critiques arrived).
2. Decide (cft.registry.retrain): compare the data the train stage reads (`data/train`,
   the base model) with the lineage of the registered versions. Trained on exactly this
   already: the run ends Completed, named "Skipped", with a message that says why.
3. Otherwise (or with `force`): reproduce `train` and every stage after it (all of them
   forced with `force`, so it trains, evaluates and registers even when DVC sees nothing
   changed), and the stages outside the training path (the baselines' evaluation) as DVC
   needs; the register stage applies the promotion gate.
4. `dvc push` every new artifact to the DVC remote (params `orchestrate.push`).

The message of the final state names what this run registered (or that it registered
nothing). Orchestration only: the decision lives in cft/, stages do the work.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.states import Completed

from cft.registry.lineage import TRAIN_STAGE
from cft.registry.retrain import Decision, registration_outcome
from cft.stages.graph import downstream, stage_graph, topological, upstream
from cft.train.checkpoints import PIPELINE_ROOT, prune
from flows.pipeline import _logger, _settings, push_outputs, run_stage, run_stages


@task(task_run_name="decide")
def decide(workspace: str, force: bool = False) -> Decision:
    """The retraining decision for the workspace as it is now (cft.registry.retrain.decide)."""
    from cft.registry import retrain

    decision = retrain.decide(Path(workspace), force=force)
    _logger().info(("retrain: " if decision.retrain else "skip: ") + decision.reason)
    return decision


@flow(name="cft-retrain", log_prints=True)
def cft_retrain(force: bool = False, workspace: str | None = None):
    """Retrain when the training data changed since the registered models; skip otherwise.

    `force`: retrain and register even if nothing changed. `workspace`: the project
    directory (default: the working directory; a deployment sets it).
    """
    root = Path(workspace or ".").resolve()
    cfg = _settings(root)
    graph = stage_graph(root)
    from_train = downstream(graph, TRAIN_STAGE)
    before = [stage for stage in upstream(graph, TRAIN_STAGE) if stage not in from_train]
    ran = run_stages(before, root, settings=cfg)

    decision = decide(str(root), force)
    if not decision.retrain:
        return Completed(name="Skipped", message=f"skipped: {decision.reason}", data={"retrained": False, "reason": decision.reason, "ran": ran})

    if decision.force:
        # A forced retrain trains from scratch: kept checkpoints would only re-export the last model.
        prune(root / PIPELINE_ROOT, keep_last=0)
    # the rest in dependency order: the training path (forced with `force`) and the
    # baselines' evaluation (as DVC needs it; the report reads it)
    for stage in (stage for stage in topological(graph) if stage not in before):
        ran += run_stage(stage, root, force=decision.force and stage in from_train, settings=cfg)
    pushed = push_outputs(root, cfg)
    outcome = registration_outcome(root, ran)
    trained = any(stage.split("@")[0] == TRAIN_STAGE for stage in ran)
    headline = "retrained" if trained else "not retrained (DVC found training up to date)"
    message = f"{headline}: {decision.reason}; ran {', '.join(ran) or 'nothing'}; {outcome}" + ("; pushed to the DVC remote" if pushed else "")
    return Completed(message=message, data={"retrained": trained, "reason": decision.reason, "ran": ran, "registered": outcome})


if __name__ == "__main__":
    cft_retrain()
