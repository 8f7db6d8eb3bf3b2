"""The CFT pipeline as a Prefect flow: each DVC stage is a retried task.

    python -m flows.pipeline            # or: cft run

Orchestration only. What a stage does and what it depends on live in `cft/` and
`dvc.yaml`; the stage graph comes from DVC (cft.stages.graph); every task just asks DVC
to reproduce one stage, so an up-to-date stage costs nothing and the flow and
`dvc repro` can never disagree. Without a Prefect server configured, Prefect starts a
temporary local one (offline).

Each line a stage prints goes to the run's log as it comes (and to the terminal for
in-process runs), so a long training shows its progress while it runs.

Routing (params.yaml `orchestrate`): a stage listed in `gpu_stages` runs as a subflow
of the deployment `cft-stage/gpu` on the work pool `gpu_work_pool` when that is set
(`python -m flows.deploy` creates it), and in this process otherwise. The GPU workers
see the workspace at `orchestrate.gpu_workspace` (a shared filesystem may be mounted at
another path there); the deployment carries that path.

Every `dvc` call holds a slot of the Prefect global concurrency limit `cft-workspace`
(one slot, created by `python -m flows.deploy`), so two flow runs never run DVC in the
same workspace at once; without that limit (in-process runs) DVC's own lock applies.
After the last stage, `dvc push` sends every output to the DVC remote (`orchestrate.push`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prefect import flow, get_run_logger, task
from prefect.states import Completed

from cft.stages.graph import stage_graph, topological

WORKSPACE_LIMIT = "cft-workspace"  # Prefect global concurrency limit around dvc calls
STAGE_FLOW = "cft-stage"
GPU_DEPLOYMENT = "gpu"  # the deployment of the stage flow on the GPU pool: cft-stage/gpu
FAULT_ENV = "CFT_FAULT_FILE"  # testing hook, see inject_fault
ERROR_TAIL_LINES = 60  # the last lines of a failed dvc command, in the task's error


def runs_on_gpu_pool(stage: str, gpu_stages: list[str], gpu_work_pool: str | None) -> bool:
    """A stage listed in `gpu_stages` (or whose `foreach` group is) goes to the GPU pool, if one is set."""
    return bool(gpu_work_pool) and (stage in gpu_stages or stage.split("@")[0] in gpu_stages)


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
    # `cft` (the stage commands) lives beside this interpreter, even when PATH does not say so;
    # unbuffered, so each line a stage prints reaches the log when it is printed.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"}


def dvc(args: list[str], root: Path) -> None:
    """Run `dvc <args>` in the workspace; log each line it (and the stage command) prints as it
    comes; raise with the last lines on failure. The caller holds the workspace lock."""
    logger = _logger()
    last = deque(maxlen=ERROR_TAIL_LINES)
    cmd = [sys.executable, "-m", "dvc", *args]
    # Text mode reads "\r" as a line end too: a progress bar's updates arrive as lines.
    with subprocess.Popen(cmd, cwd=root, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", bufsize=1) as proc:
        for line in proc.stdout:
            if line := line.rstrip():
                logger.info(line)
                last.append(line)
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed (exit {proc.returncode}):\n" + "\n".join(last))


@task(retries=2, retry_delay_seconds=10, task_run_name="{stage}")
def reproduce_stage(stage: str, workspace: str = ".", force: bool = False) -> list[str]:
    """`dvc repro --single-item <stage>`: runs it only if its deps, params or outputs changed.

    Returns the stages DVC ran ([] when up to date): those `dvc status` found stale just
    before, under the same lock (all of them with `force`).
    """
    from cft.stages.graph import resolve, stale

    inject_fault(stage)
    root = Path(workspace)
    with workspace_lock():
        ran = resolve(root, [stage]) if force else stale(root, [stage])
        dvc(["repro", "--single-item", stage, *(["--force"] if force else [])], root)
    return ran


@task(retries=2, retry_delay_seconds=10, task_run_name="dvc-push")
def push(workspace: str = ".") -> None:
    """`dvc push`: every cached output of the workspace to the default DVC remote."""
    inject_fault("push")
    with workspace_lock():
        dvc(["push"], Path(workspace))


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


def run_stages(stages: list[str], workspace: Path, force: bool = False, settings=None) -> list[str]:
    """Reproduce `stages` in this order; returns the stages DVC ran."""
    ran: list[str] = []
    for stage in stages:
        ran += run_stage(stage, workspace, force=force, settings=settings)
    return ran


def push_outputs(workspace: Path, settings) -> bool:
    """`dvc push` when `orchestrate.push` says so; True when it pushed."""
    if settings.push:
        push.with_options(retries=settings.task_retries, retry_delay_seconds=settings.retry_delay_s)(str(workspace))
    return settings.push


_RAN = "ran: "


def _run_on_gpu_pool(stage: str, force: bool, retries: int, retry_delay_s: float) -> list[str]:
    """A subflow run of cft-stage/gpu (whose `workspace` parameter is the GPU pool's path of
    the project); the stage's task retries itself there, and a run whose infrastructure
    crashed (worker or machine lost) is submitted again."""
    import time

    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    name = f"{STAGE_FLOW}/{GPU_DEPLOYMENT}"
    for attempt in range(retries + 1):
        try:
            run = run_deployment(name, parameters={"stage": stage, "force": force}, flow_run_name=f"{stage}-on-gpu-pool", poll_interval=2)
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
    """One DVC stage, retried: what GPU workers run for `run_stage`. `workspace`: the
    project as this worker sees it (the deployment sets it; default the working directory).

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
    """Reproduce every stage in order; a failed stage stops the flow after its retries.
    Returns the stages DVC ran."""
    root = Path(workspace or ".").resolve()
    cfg = _settings(root)
    ran = run_stages(topological(stage_graph(root)), root, force=force, settings=cfg)
    push_outputs(root, cfg)
    return ran


if __name__ == "__main__":
    cft_pipeline()
