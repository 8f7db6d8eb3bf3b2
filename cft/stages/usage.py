"""Token usage and cost of a generation stage, logged to MLflow (never the API key).

Importing MLflow and opening its store take about five seconds of CPU, longer than a
short generation run itself. A stage that is about to generate therefore starts a
`UsageLogger` first (`start_usage_logging`): a helper process (`python -m cft.stages.usage`)
that does that work beside the generation (on another core, without taking the GIL
from the request threads) and then waits for the usage on stdin. Where MLflow is
already loaded (a long-lived process, the tests) there is nothing to hide, and the
usage is logged in-process. A stage that generates nothing never
starts one; one that fails before logging closes it, and nothing is logged. The stage
waits for the run to be recorded, not for the helper's exit (the teardown of an
interpreter that loaded MLflow takes seconds of its own).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile

from cft.config import Params, RegisterConfig

_LOGGED = b"logged"


def usage_metrics(stage: str, usage: dict[str, dict]) -> dict[str, float]:
    """Flatten {model: {prompt_tokens: .., cost_usd: ..}} into MLflow metric names."""
    metrics = {}
    for model, counts in usage.items():
        name = re.sub(r"[^A-Za-z0-9_\-./ ]", "_", model)
        for key, value in counts.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[f"{stage}.{name}.{key}"] = float(value)
    return metrics


def merge_usage(acc: dict[str, dict], new: dict[str, dict]) -> dict[str, dict]:
    """Add a generator's usage ({model: counts}) into `acc`, summing the numbers per model
    and key: two students (or teachers) with one model must not overwrite each other's."""
    for model, counts in new.items():
        into = acc.setdefault(model, {})
        for key, value in counts.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                into[key] = into.get(key, 0) + value
            else:
                into[key] = value
    return acc


def record_usage(summary: dict, usage: dict[str, dict], metrics_path, usage_log) -> None:
    """The stage's metrics file (with the usage) first, then the usage to MLflow: if MLflow
    refuses, a rerun has nothing left to generate and so no usage of its own to record."""
    from cft.data.io import write_json

    if usage:
        summary["usage"] = usage
    if metrics_path:
        write_json(metrics_path, summary)
    if usage:
        usage_log.log(usage)


def _log(cfg: RegisterConfig, stage: str, usage: dict[str, dict]) -> None:
    import mlflow

    from cft.registry.tracking import experiment_id

    with mlflow.start_run(experiment_id=experiment_id(cfg), run_name=stage, tags={"cft.stage": stage}):
        mlflow.log_metrics(usage_metrics(stage, usage))


class UsageLogger:
    """`log(usage)` once, or `close()`; a context manager."""

    def __init__(self, params: Params, stage: str):
        self.stage = stage
        self._logged = False
        self._errors = tempfile.TemporaryFile()  # a file, not a pipe: the helper can never block on it
        self._proc = subprocess.Popen([sys.executable, "-m", "cft.stages.usage", stage], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._errors)
        # The settings go through stdin, not argv: a tracking URI may carry credentials.
        self._proc.stdin.write(params.register_.model_dump_json().encode() + b"\n")
        self._proc.stdin.flush()

    def log(self, usage: dict[str, dict]) -> None:
        """Send the usage and wait until it is logged; raises if MLflow refused it."""
        try:
            self._proc.stdin.write(json.dumps(usage).encode() + b"\n")
            self._proc.stdin.close()
        except BrokenPipeError:
            pass  # the helper already failed (opening the store); its errors say why
        # The helper acknowledges once the run is recorded; its own exit (seconds of
        # interpreter teardown after MLflow) is not waited for.
        if self._proc.stdout.readline().strip() == _LOGGED:
            self._logged = True
            return
        status = self._proc.wait()
        self._errors.seek(0)
        tail = self._errors.read().decode("utf-8", errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"logging {self.stage} usage to MLflow failed (exit {status}):\n" + "\n".join(tail))

    def close(self) -> None:
        if not self._logged and self._proc.poll() is None:
            self._proc.kill()  # the stage ended without usage: nothing to log
            self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._errors):
            if not stream.closed:
                stream.close()

    def __enter__(self) -> UsageLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _InProcessLogger:
    def __init__(self, params: Params, stage: str):
        self.cfg, self.stage = params.register_, stage

    def log(self, usage: dict[str, dict]) -> None:
        _log(self.cfg, self.stage, usage)

    def __enter__(self) -> _InProcessLogger:
        return self

    def __exit__(self, *exc) -> None:
        pass


def start_usage_logging(params: Params, stage: str) -> UsageLogger | _InProcessLogger:
    """What a stage starts just before it generates; `log(usage)` at the end."""
    if "mlflow" in sys.modules:
        return _InProcessLogger(params, stage)
    return UsageLogger(params, stage)


def main() -> int:
    stage = sys.argv[1]
    cfg = RegisterConfig.model_validate_json(sys.stdin.buffer.readline())
    from cft.registry.tracking import experiment_id

    experiment_id(cfg)  # import MLflow, open the store: the slow part, done while the stage generates
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return 0  # the stage ended without usage to log
    _log(cfg, stage, json.loads(line))
    sys.stdout.buffer.write(_LOGGED + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
