"""The CFT pipeline as a Prefect flow: each DVC stage is a retried task.

    python -m flows.pipeline            # or: cft run

Orchestration only. What a stage does and what it depends on live in `cft/` and
`dvc.yaml`; every task just asks DVC to reproduce one stage, so an up-to-date stage
costs nothing and the flow and `dvc repro` can never disagree. Without a Prefect
server configured, Prefect starts a temporary local one (offline).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from prefect import flow, get_run_logger, task


def stage_names(dvc_yaml: Path = Path("dvc.yaml")) -> list[str]:
    """Stages in dependency order, as DVC sees the graph."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(dvc_yaml.parent)) as repo:
        graph = repo.index.graph
        by_node = {stage: stage.addressing for stage in graph.nodes}
        # DVC's graph points from a stage to the stages it depends on.
        return [by_node[s] for s in reversed(list(nx.topological_sort(graph)))]


@task(retries=2, retry_delay_seconds=5, task_run_name="{stage}")
def reproduce_stage(stage: str, force: bool = False) -> str:
    """`dvc repro --single-item <stage>`: runs it only if its deps or params changed."""
    cmd = ["dvc", "repro", "--single-item", stage] + (["--force"] if force else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    logger = get_run_logger()
    if proc.stdout:
        logger.info(proc.stdout.strip())
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed (exit {proc.returncode}):\n{proc.stderr.strip()[-4000:]}")
    return proc.stdout


@flow(name="cft-pipeline", log_prints=True)
def cft_pipeline(force: bool = False) -> list[str]:
    """Reproduce every stage in order; a failed stage stops the flow after its retries."""
    stages = stage_names()
    for stage in stages:
        reproduce_stage(stage, force=force)
    return stages


if __name__ == "__main__":
    cft_pipeline()
