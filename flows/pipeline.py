"""The CFT pipeline as a Prefect flow: each DVC stage is a retried task.

    python -m flows.pipeline            # or: cft run

Orchestration only. What a stage does and what it depends on live in `cft/` and
`dvc.yaml`; every task just asks DVC to reproduce one stage, so an up-to-date stage
costs nothing and the flow and `dvc repro` can never disagree. Without a Prefect
server configured, Prefect starts a temporary local one (offline).

Routing (params.yaml `orchestrate`): a stage listed in `gpu_stages` runs as a subflow
of the deployment `cft-stage/gpu` on the work pool `gpu_work_pool` when that is set
(`python -m flows.deploy` creates it), and in this process otherwise. The GPU workers
must see the same workspace (same host, or a shared filesystem at the same path).

Every `dvc` call holds a slot of the Prefect global concurrency limit `cft-workspace`
(one slot, created by `python -m flows.deploy`), so two flow runs never run DVC in the
same workspace at once; without that limit (in-process runs) DVC's own lock applies.
After the last stage, `dvc push` sends every output to the DVC remote (`orchestrate.push`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prefect import flow, get_run_logger, task
from prefect.states import Completed

WORKSPACE_LIMIT = "cft-workspace"  # Prefect global concurrency limit around dvc calls
STAGE_FLOW = "cft-stage"
GPU_DEPLOYMENT = "gpu"  # the deployment of the stage flow on the GPU pool: cft-stage/gpu
FAULT_ENV = "CFT_FAULT_FILE"  # testing hook, see inject_fault


# --- the stage graph (dvc.yaml), as pure data -------------------------------------------


def stage_graph(root: Path = Path(".")) -> dict[str, list[str]]:
    """Each stage of dvc.yaml with the stages it directly depends on, as DVC sees it."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        # DVC's graph points from a stage to the stages it depends on.
        return {stage.addressing: sorted(dep.addressing for dep in graph.successors(stage)) for stage in graph.nodes}


def topological(graph: dict[str, list[str]]) -> list[str]:
    """Stages in dependency order; ties broken by name so the order is stable."""
    import networkx as nx

    dag = nx.DiGraph()
    dag.add_nodes_from(graph)
    dag.add_edges_from((dep, name) for name, deps in graph.items() for dep in deps)
    try:
        return list(nx.lexicographical_topological_sort(dag))
    except nx.NetworkXUnfeasible:
        raise ValueError(f"dependency cycle in the stage graph: {nx.find_cycle(dag)}") from None


def upstream(graph: dict[str, list[str]], target: str) -> list[str]:
    """`target` and every stage it depends on, in dependency order."""
    if target not in graph:
        raise KeyError(f"no stage {target!r} in dvc.yaml (stages: {', '.join(sorted(graph))})")
    needed: set[str] = set()
    todo = [target]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(graph.get(name, []))
    return [name for name in topological(graph) if name in needed]


def runs_on_gpu_pool(stage: str, gpu_stages: list[str], gpu_work_pool: str | None) -> bool:
    return bool(gpu_work_pool) and stage in gpu_stages


# --- running DVC ------------------------------------------------------------------------


def inject_fault(stage: str) -> None:
    """Testing hook: fail this attempt if the file named by $CFT_FAULT_FILE lists `stage`.

    Each line of the file names a stage; a matching line is removed and this attempt
    raises, so a stage listed once fails once and its retry runs normally. Without the
    variable (always, outside tests) this does nothing.
    """
    path = os.environ.get(FAULT_ENV)
    if not path or not Path(path).exists():
        return
    lines = Path(path).read_text().splitlines()
    if stage in lines:
        lines.remove(stage)
        Path(path).write_text("".join(f"{line}\n" for line in lines))
        raise RuntimeError(f"injected transient failure in stage {stage} ({FAULT_ENV}={path})")


@contextmanager
def workspace_lock() -> Iterator[None]:
    """One DVC command per workspace at a time, across flow runs (a Prefect global concurrency limit)."""
    from prefect.concurrency.sync import concurrency
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # in-process, temporary server: nothing else shares it
        yield
        return
    # strict=False: a server without the limit (flows.deploy not run) warns and does not block.
    with concurrency(WORKSPACE_LIMIT, occupy=1, strict=False, lease_duration=600):
        yield


def _logger():
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_logger

    try:
        return get_run_logger()
    except MissingContextError:  # a task body called directly (`.fn()`)
        return get_logger("cft.flows")


def _env() -> dict[str, str]:
    # `cft` (the stage commands) lives beside this interpreter, even when PATH does not say so.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def dvc(args: list[str], root: Path) -> str:
    """Run `dvc <args>` in the workspace under the workspace lock; raise with its stderr on failure."""
    cmd = [sys.executable, "-m", "dvc", *args]
    with workspace_lock():
        proc = subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True)
    logger = _logger()
    if proc.stdout.strip():
        logger.info(proc.stdout.strip()[-8000:])
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout).strip()[-4000:]}")
    return proc.stdout


def ran_stages(dvc_output: str) -> list[str]:
    """Stages DVC actually ran, from `dvc repro` output ("Running stage 'x':")."""
    return [line.split("'")[1] for line in dvc_output.splitlines() if line.startswith("Running stage '")]


@task(retries=2, retry_delay_seconds=10, task_run_name="{stage}")
def reproduce_stage(stage: str, workspace: str = ".", force: bool = False) -> list[str]:
    """`dvc repro --single-item <stage>`: runs it only if its deps or params changed.

    Returns the stages DVC ran ([] when the stage was up to date).
    """
    inject_fault(stage)
    out = dvc(["repro", "--single-item", stage, *(["--force"] if force else [])], Path(workspace))
    return ran_stages(out)


@task(retries=2, retry_delay_seconds=10, task_run_name="dvc-push")
def push(workspace: str = ".") -> str:
    """`dvc push`: every cached output of the workspace to the default DVC remote."""
    inject_fault("push")
    return dvc(["push"], Path(workspace))


# --- routing -----------------------------------------------------------------------------


def _settings(workspace: Path):
    from cft.config import load_params

    return load_params(workspace / "params.yaml").orchestrate


def run_stage(stage: str, workspace: Path, force: bool = False, settings=None) -> list[str]:
    """Reproduce one stage: on the GPU pool (a subflow run of cft-stage/gpu) or here."""
    cfg = settings or _settings(workspace)
    if runs_on_gpu_pool(stage, cfg.gpu_stages, cfg.gpu_work_pool):
        return _run_on_gpu_pool(stage, force, cfg.task_retries, cfg.retry_delay_s)
    task_ = reproduce_stage.with_options(retries=cfg.task_retries, retry_delay_seconds=cfg.retry_delay_s)
    return task_(stage, str(workspace), force)


_RAN = "ran: "


def _run_on_gpu_pool(stage: str, force: bool, retries: int, retry_delay_s: float) -> list[str]:
    """A subflow run of cft-stage/gpu; the stage's task retries itself there, and a run
    whose infrastructure crashed (worker or machine lost) is submitted again."""
    import time

    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    name = f"{STAGE_FLOW}/{GPU_DEPLOYMENT}"
    parameters = {"stage": stage, "force": force}
    if os.environ.get("CFT_GPU_WORKSPACE"):  # the workspace as the GPU workers see it, if its path differs
        parameters["workspace"] = os.environ["CFT_GPU_WORKSPACE"]
    for attempt in range(retries + 1):
        try:
            run = run_deployment(name, parameters=parameters, flow_run_name=f"{stage}-on-gpu-pool", poll_interval=2)
        except ObjectNotFound:
            raise RuntimeError(
                f"orchestrate.gpu_work_pool is set but there is no deployment {name}: run `python -m flows.deploy`"
            ) from None
        state = run.state
        if state is not None and state.is_crashed() and attempt < retries:
            _logger().warning(f"stage {stage} on the GPU pool crashed ({state.message}); submitting it again")
            time.sleep(retry_delay_s)
            continue
        break
    if state is None or not state.is_completed():
        raise RuntimeError(f"stage {stage} on the GPU pool ended {state.name if state else 'without a state'}: {state.message if state else ''}")
    # Results stay on the worker's machine; the state message says what ran (see cft_stage).
    message = state.message or ""
    return message[len(_RAN):].split(", ") if message.startswith(_RAN) else []


@flow(name=STAGE_FLOW, log_prints=True)
def cft_stage(stage: str, workspace: str | None = None, force: bool = False):
    """One DVC stage, retried: what GPU workers run for `run_stage`. `workspace`: default the working directory.

    Ends Completed with the message "ran: <stages>" (or "<stage> up to date"), which the
    calling flow reads: results stay on the worker's machine, the state travels.
    """
    root = Path(workspace or ".").resolve()
    cfg = _settings(root)
    task_ = reproduce_stage.with_options(retries=cfg.task_retries, retry_delay_seconds=cfg.retry_delay_s)
    ran = task_(stage, str(root), force)
    return Completed(message=f"{_RAN}{', '.join(ran)}" if ran else f"{stage} up to date", data=ran)


@flow(name="cft-pipeline", log_prints=True)
def cft_pipeline(force: bool = False, workspace: str | None = None) -> list[str]:
    """Reproduce every stage in order; a failed stage stops the flow after its retries."""
    root = Path(workspace or ".").resolve()
    cfg = _settings(root)
    stages = topological(stage_graph(root))
    for stage in stages:
        run_stage(stage, root, force=force, settings=cfg)
    if cfg.push:
        push.with_options(retries=cfg.task_retries, retry_delay_seconds=cfg.retry_delay_s)(str(root))
    return stages


if __name__ == "__main__":
    cft_pipeline()
