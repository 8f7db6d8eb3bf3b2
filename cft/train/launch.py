"""Build and run `accelerate launch -m cft.train.run ...` as a subprocess.

The orchestrating process (CLI, DVC stage, Prefect task) never imports torch: CUDA is
initialised only in the launched workers, so DDP / FSDP / DeepSpeed and multi-node
launches work from the same code path. Gradient accumulation is derived here from
the process count so the global batch stays what params say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cft import REPO_ROOT as REPO
from cft.train.config import TrainConfig


class TrainingError(RuntimeError):
    """The training subprocess failed; the message names the exit code and the command."""


def resolve_accelerate_config(config_file: str | Path) -> Path:
    """The path as given, else relative to the repository (shipped configs work from any cwd)."""
    path = Path(config_file)
    if not path.exists() and not path.is_absolute() and (REPO / path).exists():
        path = REPO / path
    if not path.exists():
        raise FileNotFoundError(f"train.accelerate_config: {config_file} not found")
    return path


def accelerate_num_processes(config_file: str | Path) -> int:
    """`num_processes` of an accelerate YAML (1 when absent)."""
    import yaml

    path = resolve_accelerate_config(config_file)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return int(data.get("num_processes") or 1)


def launch_command(
    cfg: TrainConfig,
    *,
    config_json: str | Path,
    train_file: str | Path,
    output_dir: str | Path,
    metrics_path: str | Path,
    plot_path: str | Path,
    num_processes: int,
    checkpoint_dir: str | Path | None = None,
    python: str | None = None,
    extra_launch_args: list[str] | None = None,
) -> list[str]:
    """The exact `accelerate launch` argv (pure: no file or process is touched)."""
    cfg.accumulation_steps(num_processes)  # fail before launching anything
    return [
        python or sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(cfg.accelerate_config),
        "--num_processes",
        str(num_processes),
        *(extra_launch_args or []),  # e.g. --machine_rank / --main_process_ip per node
        "-m",
        "cft.train.run",
        "--config",
        str(config_json),
        "--train-file",
        str(train_file),
        "--output-dir",
        str(output_dir),
        "--metrics",
        str(metrics_path),
        "--plot",
        str(plot_path),
        *(["--checkpoint-dir", str(checkpoint_dir)] if checkpoint_dir else []),
    ]


def launch_training(
    cfg: TrainConfig,
    *,
    train_file: str | Path,
    output_dir: str | Path,
    metrics_path: str | Path,
    plot_path: str | Path,
    env: dict[str, str] | None = None,
    checkpoint_dir: str | Path | None = None,
    config_json: str | Path | None = None,
    extra_launch_args: list[str] | None = None,
) -> subprocess.CompletedProcess:
    """Write the resolved config, run `accelerate launch`, stream its output; raise on failure.

    `env` is added to this process's environment (MLflow tracking URI / experiment,
    CFT_RUN_NAME, OMP_NUM_THREADS, ...). The resolved config goes to
    `<output_dir>/train_config.json` unless `config_json` is given.
    """
    num_processes = cfg.num_processes or accelerate_num_processes(cfg.accelerate_config)
    output_dir = Path(output_dir)
    config_json = Path(config_json) if config_json else output_dir / "train_config.json"
    config_json.parent.mkdir(parents=True, exist_ok=True)
    config_json.write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    cfg = cfg.model_copy(update={"accelerate_config": str(resolve_accelerate_config(cfg.accelerate_config))})
    cmd = launch_command(
        cfg,
        config_json=config_json,
        train_file=train_file,
        output_dir=output_dir,
        metrics_path=metrics_path,
        plot_path=plot_path,
        num_processes=num_processes,
        checkpoint_dir=checkpoint_dir,
        extra_launch_args=extra_launch_args,
    )
    full_env: dict[str, Any] = {**os.environ, **(env or {})}
    # The package must be importable in the workers even when not pip-installed.
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p)
    print("[cft.train] " + " ".join(cmd), flush=True)
    # Output is inherited, not captured: it streams live and long runs never fill a pipe.
    result = subprocess.run(cmd, env=full_env)
    if result.returncode != 0:
        raise TrainingError(f"training failed with exit code {result.returncode}: {' '.join(cmd)}")
    if cfg.best_checkpoint is not None:
        select = [sys.executable, "-m", "cft.train.select_best", "--config", str(config_json),
                  "--checkpoint-dir", str(checkpoint_dir or output_dir / "checkpoints"),
                  "--output-dir", str(output_dir), "--metrics", str(metrics_path)]
        print("[cft.train] " + " ".join(select), flush=True)
        if subprocess.run(select, env=full_env).returncode != 0:
            raise TrainingError(f"best-checkpoint selection failed: {' '.join(select)}")
    return result
