"""Scheduled retraining through a real Prefect server, work pools and process workers.

In a temporary copy of the project (smaller params): start `prefect server` on
127.0.0.1, two process work pools (`cpu` for the flows, `gpu` for the GPU stages) with
a worker each, deploy with `python -m flows.deploy`, then trigger the retraining
deployment with `run_deployment`. The flows' code comes from a git repository (a bare
clone of the project), as for workers on other machines, and the GPU worker sees the
project at another path (`orchestrate.gpu_workspace`, a shared filesystem mounted
elsewhere; here a symlink).

1. a fresh project trains and registers version 1; the stage output is in the run's log;
2. other validation settings, same clean rows: validation re-runs, the training data is
   unchanged, the run is skipped and says why;
3. the training data changed (more problems) and the train stage fails once: the
   stage is retried on the GPU pool, and version 2 is registered;
4. `force=true` with nothing changed: trains and registers version 3, and says so;
5. a fresh git clone restores every artifact with `dvc pull` from the DVC remote.

The tests share one project and run in this order; each needs the one before.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from project_copy import copy_project, edit_params, git_commit_all, project_env, run, shrink_params

pytestmark = pytest.mark.integration

CPU_POOL, GPU_POOL = "cpu", "gpu"
RETRAIN = "cft-retrain/default"
MODEL = "cft-tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


class Services:
    """The Prefect server and workers: subprocesses in their own process groups."""

    def __init__(self, home: Path, env: dict[str, str]):
        self.home, self.env, self.procs = home, env, []

    def start(self, name: str, cmd: list[str], cwd: Path) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {name}.log\n{_tail(self.home / f'{name}.log')}" for name, _ in self.procs)

    def stop(self) -> None:
        for _, proc in reversed(self.procs):  # workers (and their flow runs) first, then the server
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_healthy(url: str, services: Services, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"Prefect server not healthy after {timeout} s\n{services.logs()}")


def _wait_workers(client, pools: list[str], services: Services, timeout: float = 90) -> None:
    from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus

    deadline = time.monotonic() + timeout
    online = WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
    while time.monotonic() < deadline:
        if all(client.read_workers_for_work_pool(pool, worker_filter=online) for pool in pools):
            return
        time.sleep(1)
    raise AssertionError(f"workers not online after {timeout} s\n{services.logs()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp("prefect-retrain")
    root = copy_project(repo_root, tmp / "project")
    shrink_params(root, problems_per_source=12, eval_limit=4, max_new_tokens=16)

    def orchestrate(p: dict) -> None:
        p["orchestrate"].update(
            schedule_cron="0 3 * * *",
            timezone="UTC",
            work_pool=CPU_POOL,
            gpu_work_pool=GPU_POOL,
            gpu_stages=["train"],  # one routed stage (group) keeps the test short; the mechanism is the same
            task_retries=2,
            retry_delay_s=1,
            push=True,
        )
        p["baselines"] = {}  # the base model's evaluation is the e2e test's; here it would only add minutes

    edit_params(root, orchestrate)
    git_commit_all(root, "project")
    # the flows' code from a git repository; the GPU workers' view of the project at another path
    code = tmp / "cft.git"
    run(["git", "clone", "-q", "--bare", str(root), str(code)], tmp)
    gpu_view = tmp / "gpu-mount"
    gpu_view.symlink_to(root, target_is_directory=True)

    def remote_workers(p: dict) -> None:
        p["orchestrate"].update(code_source=code.as_uri(), workspace=str(root), gpu_workspace=str(gpu_view))

    edit_params(root, remote_workers)
    git_commit_all(root, "workers elsewhere")

    home = tmp / "prefect-home"
    home.mkdir()
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    fault_file = tmp / "faults"
    env = project_env(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT_WORKER_QUERY_SECONDS="2",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
        CFT_FAULT_FILE=str(fault_file),  # the testing hook in flows/pipeline.py:inject_fault
    )
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    services = Services(home, env)
    try:
        services.env = server_env
        services.start("server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"], tmp)
        services.env = env
        _wait_healthy(api, services)
        for pool in (CPU_POOL, GPU_POOL):
            run([sys.executable, "-m", "prefect", "work-pool", "create", pool, "--type", "process"], tmp, env)
            services.start(f"worker-{pool}", [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"], tmp)
        out = run([sys.executable, "-m", "flows.deploy"], root, env)
        assert "cft-stage/gpu" in out, out

        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_HOME: str(home)}):
            with get_client(sync_client=True) as client:
                _wait_workers(client, [CPU_POOL, GPU_POOL], services)
                yield {"root": root, "env": env, "client": client, "services": services, "fault_file": fault_file, "tmp": tmp,
                       "code": code, "gpu_view": gpu_view}
    finally:
        services.stop()


def _retrain(stack, timeout: float = 600, **parameters):
    from prefect.deployments import run_deployment

    flow_run = run_deployment(RETRAIN, parameters=parameters, timeout=timeout, poll_interval=2)
    assert flow_run.state is not None and flow_run.state.is_final(), f"run not finished in {timeout} s\n{stack['services'].logs()}"
    assert flow_run.state.is_completed(), f"{flow_run.state.name}: {flow_run.state.message}\n{stack['services'].logs()}"
    return flow_run


def _versions(root: Path) -> dict[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlruns.db'}")
    return {
        alias: str(client.get_model_version_by_alias(MODEL, alias).version)
        for alias in ("challenger", "champion")
    } | {"count": str(len(client.search_model_versions(f"name='{MODEL}'")))}


def _logs(client, flow_run_id) -> list[str]:
    """Every log line of a flow run (the API returns them a page at a time)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    lines: list[str] = []
    while page := client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=len(lines)):
        lines += [log.message for log in page]
    return lines


def _children(client, flow_run):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    return client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run.id])))


def _ran(message: str) -> list[str]:
    """The stages a retrain message says this run ran ("...; ran a, b, c; ...")."""
    return message.split("; ran ", 1)[1].split("; ", 1)[0].split(", ")


def test_deployments_are_scheduled_serialised_and_pull_code_from_git(stack):
    client = stack["client"]
    deployment = client.read_deployment_by_name(RETRAIN)
    assert deployment.work_pool_name == CPU_POOL
    assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == [("0 3 * * *", "UTC")]
    assert deployment.global_concurrency_limit is not None and deployment.global_concurrency_limit.limit == 1
    assert client.read_global_concurrency_limit_by_name("cft-workspace").limit == 1
    # every worker clones the code; each pool has its own path of the project
    assert stack["code"].as_uri() in str(deployment.pull_steps), deployment.pull_steps
    assert deployment.parameters == {"workspace": str(stack["root"])}
    stage = client.read_deployment_by_name("cft-stage/gpu")
    assert stage.work_pool_name == GPU_POOL and stage.parameters == {"workspace": str(stack["gpu_view"])}


def test_first_run_trains_and_registers(stack):
    flow_run = _retrain(stack)
    message = flow_run.state.message
    assert message.startswith("retrained: no champion"), message
    assert {"build", "train@cft", "evaluate@cft", "register", "report"} <= set(_ran(message)), message
    assert "; model cft-tiny v1 (champion" in message, message
    assert _versions(stack["root"]) == {"challenger": "1", "champion": "1", "count": "1"}

    # the train stage ran as a subflow on the GPU pool, in the project as the GPU workers see it
    children = _children(stack["client"], flow_run)
    assert {(c.parameters.get("stage"), c.work_pool_name) for c in children} == {("train@cft", GPU_POOL)}
    (child,) = children
    train_log = _logs(stack["client"], child.id)
    assert "Running stage 'train@cft':" in train_log, train_log[:20]
    # the stage commands' own lines are in the run's log, line by line
    log = _logs(stack["client"], flow_run.id)
    assert "Running stage 'build':" in log and any(line.startswith("> cft build") for line in log), log[:40]


def test_unchanged_training_data_is_skipped_even_with_other_validation_settings(stack):
    # A looser gate keeps the same clean rows: validation re-runs (its summary changes
    # data/validated), the training files stay the same, and the run skips (once, and every time after).
    root = stack["root"]

    def looser(p: dict) -> None:
        p["validate"]["min_pass_rate"] = 0.85

    edit_params(root, looser)
    flow_run = _retrain(stack)
    assert flow_run.state.name == "Skipped", flow_run.state.message
    message = flow_run.state.message
    assert message.startswith("skipped: training data unchanged since champion v1"), message
    assert "data/train md5" in message
    assert "min_pass_rate: 0.85" in (root / "dvc.lock").read_text()  # validate re-ran
    assert _versions(root)["count"] == "1"


def test_changed_data_retrains_and_a_failed_stage_is_retried(stack):
    root = stack["root"]

    def more_problems(p: dict) -> None:
        p["ingest"]["sources"][1]["limit"] += 6

    edit_params(root, more_problems)
    stack["fault_file"].write_text("train@cft\n")  # the first attempt of train@cft fails

    flow_run = _retrain(stack)
    message = flow_run.state.message
    assert message.startswith("retrained: training data changed since champion v1"), message
    assert {"build", "train@cft", "evaluate@cft", "register"} <= set(_ran(message)), message
    assert "; model cft-tiny v2" in message, message
    versions = _versions(root)
    assert versions["count"] == "2" and versions["challenger"] == "2"

    assert stack["fault_file"].read_text() == ""  # the fault fired once
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    train_runs = stack["client"].read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["train@cft"])))
    retried = [t for t in train_runs if t.run_count >= 2]
    assert retried and all(t.state.is_completed() for t in retried), [(t.name, t.run_count, t.state.name) for t in train_runs]


def test_force_retrains_and_registers(stack):
    flow_run = _retrain(stack, force=True)
    message = flow_run.state.message
    assert message.startswith("retrained: forced (training data unchanged since"), message
    assert set(_ran(message)) == {"train@cft", "evaluate@cft", "register", "report"}, message
    assert "; model cft-tiny v3 (" in message, message
    assert _versions(stack["root"])["count"] == "3"


def test_fresh_clone_pulls_every_artifact(stack):
    root, env = stack["root"], stack["env"]
    git_commit_all(root, "retrained")  # dvc.lock and DVC's .gitignore files
    clone = stack["tmp"] / "clone"
    run(["git", "clone", "-q", str(root), str(clone)], stack["tmp"], env)
    assert not (clone / "data/validated").exists()
    # the default remote is a folder inside the project: point the clone at the original's
    run([sys.executable, "-m", "dvc", "remote", "modify", "--local", "local", "url", str(root / ".dvc-remote")], clone, env)
    run([sys.executable, "-m", "dvc", "pull"], clone, env, timeout=300)
    for path in ("data/problems.jsonl", "data/critiques.jsonl", "data/validated/clean.jsonl", "data/train/cft.jsonl", "models/cft/config.json", "data/eval/cft/predictions.jsonl"):
        assert (clone / path).read_bytes() == (root / path).read_bytes(), path
    # nothing missing: an output that is neither in the DVC cache nor in git (`cache: false`
    # under a git-ignored folder) would show up here as deleted
    status = run([sys.executable, "-m", "dvc", "status"], clone, env, timeout=300)
    assert "up to date" in status, f"outputs a fresh clone cannot restore:\n{status}"
