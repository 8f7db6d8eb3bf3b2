"""Register the flows with a Prefect server, from params.yaml `orchestrate`.

    python -m flows.deploy [--params params.yaml] [--workspace DIR]

Creates or updates (idempotent; run it again after changing `orchestrate`):

- `cft-retrain/default`: the retraining flow (flows/retrain.py) on `work_pool`, on the
  cron schedule `schedule_cron` in `timezone` (none: runs only when triggered), at most
  one run at a time (later ones wait in the queue);
- `cft-pipeline/default`: the whole pipeline (flows/pipeline.py) on `work_pool`, one run at a time;
- `cft-stage/gpu`: one DVC stage, on `gpu_work_pool` (only when it is set); the flows
  above send the `gpu_stages` there;
- the global concurrency limit `cft-workspace` (1 slot) that every `dvc` call holds.

The work pools must exist (`prefect work-pool create NAME --type process`).

Where the workers find things, per pool (docs/orchestration.md):

- the flows' code: `code_source` (a git repository, or remote storage Prefect reads);
  each flow run clones or downloads it first. None: the project directory itself, which
  then must exist at the same path on every worker;
- the project (its data, params, DVC cache): `workspace` for `work_pool`, `gpu_workspace`
  for `gpu_work_pool` (None: `--workspace`, default this directory), passed to the flows
  as their `workspace` parameter.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.pipeline import GPU_DEPLOYMENT, STAGE_FLOW, WORKSPACE_LIMIT

DEPLOYMENT = "default"
TAGS = ["cft"]


def _schedules(cfg):
    from prefect.schedules import Cron

    return [Cron(cfg.schedule_cron, timezone=cfg.timezone)] if cfg.schedule_cron else []


def _require_pool(client, name: str, key: str) -> None:
    from prefect.exceptions import ObjectNotFound

    try:
        client.read_work_pool(name)
    except ObjectNotFound:
        raise SystemExit(f"work pool {name!r} (orchestrate.{key}) does not exist: prefect work-pool create {name} --type process") from None


def code_source(cfg, workspace: Path):
    """What `flow.from_source` gets: a git repository (at `code_branch`), a remote storage
    URL (Prefect picks the storage from it), or the project directory."""
    if not cfg.code_source:
        return str(workspace)
    if cfg.code_branch:
        from prefect.runner.storage import GitRepository

        return GitRepository(url=cfg.code_source, branch=cfg.code_branch)
    return cfg.code_source


def deploy(workspace: Path, params_path: Path | None = None) -> dict[str, str]:
    """Create or update the deployments and the concurrency limit; returns name -> deployment id."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from cft.config import load_params

    workspace = workspace.resolve()
    cfg = load_params(params_path or workspace / "params.yaml").orchestrate
    if not cfg.work_pool:
        raise SystemExit("params.yaml: orchestrate.work_pool is null: name the work pool the flows run on")
    with get_client(sync_client=True) as client:
        _require_pool(client, cfg.work_pool, "work_pool")
        if cfg.gpu_work_pool:
            _require_pool(client, cfg.gpu_work_pool, "gpu_work_pool")
        client.upsert_global_concurrency_limit_by_name(WORKSPACE_LIMIT, 1)

    source = code_source(cfg, workspace)
    flows_workspace = cfg.workspace or str(workspace)
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    ids = {}
    retrain = flow.from_source(source=source, entrypoint="flows/retrain.py:cft_retrain")
    ids["cft-retrain/" + DEPLOYMENT] = retrain.deploy(
        DEPLOYMENT,
        work_pool_name=cfg.work_pool,
        parameters={"workspace": flows_workspace},
        schedules=_schedules(cfg),
        concurrency_limit=one_at_a_time,
        tags=TAGS,
        description="Retrain when the training data changed since the registered models (flows/retrain.py).",
        print_next_steps=False,
    )
    pipeline = flow.from_source(source=source, entrypoint="flows/pipeline.py:cft_pipeline")
    ids["cft-pipeline/" + DEPLOYMENT] = pipeline.deploy(
        DEPLOYMENT,
        work_pool_name=cfg.work_pool,
        parameters={"workspace": flows_workspace},
        concurrency_limit=one_at_a_time,
        tags=TAGS,
        description="Reproduce every DVC stage (flows/pipeline.py).",
        print_next_steps=False,
    )
    if cfg.gpu_work_pool:
        stage = flow.from_source(source=source, entrypoint="flows/pipeline.py:cft_stage")
        ids[f"{STAGE_FLOW}/{GPU_DEPLOYMENT}"] = stage.deploy(
            GPU_DEPLOYMENT,
            work_pool_name=cfg.gpu_work_pool,
            parameters={"workspace": cfg.gpu_workspace or flows_workspace},
            tags=TAGS + ["gpu"],
            description="One DVC stage on a GPU worker (orchestrate.gpu_stages).",
            print_next_steps=False,
        )
    return {name: str(i) for name, i in ids.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, default=Path("."), help="the project (default: here); its path on the workers is orchestrate.workspace / gpu_workspace when set")
    parser.add_argument("--params", type=Path, default=None, help="params.yaml to read `orchestrate` from (default: the workspace's)")
    args = parser.parse_args(argv)
    for name, deployment_id in deploy(args.workspace, args.params).items():
        print(f"deployed {name} ({deployment_id})")
    print(f"trigger a run: prefect deployment run 'cft-retrain/{DEPLOYMENT}'")


if __name__ == "__main__":
    main()
