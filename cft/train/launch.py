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
from cft.train import TrainingError
from cft.train.checkpoints import default_checkpoint_dir
from cft.train.config import TrainConfig

__all__ = ["TrainingError", "launch_command", "launch_training"]


def resolve_accelerate_config(config_file: str | Path) -> Path:
    """The path as given, else relative to the repository (shipped configs work from any cwd)."""
    path = Path(config_file)
    if not path.exists() and not path.is_absolute() and (REPO / path).exists():
        path = REPO / path
    if not path.exists():
        raise FileNotFoundError(f"train.accelerate_config: {config_file} not found")
    return path


def read_accelerate_config(config_file: str | Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(resolve_accelerate_config(config_file).read_text(encoding="utf-8")) or {}


def check_launchable(cfg: TrainConfig, accelerate: dict[str, Any]) -> None:
    """Refuse combinations that would train for hours and then fail, save no model, or silently
    run something else than the config says."""
    fsdp = accelerate.get("fsdp_config") or {}
    if accelerate.get("distributed_type") == "FSDP" and accelerate.get("use_cpu"):
        raise ValueError(
            f"{cfg.accelerate_config}: FSDP with use_cpu: accelerate 1.15 switches to FSDP only from a GPU-family "
            "process group, so CPU processes would silently train plain DDP; use configs/accelerate/cpu_ddp.yaml"
        )
    if accelerate.get("distributed_type") == "FSDP" and "SHARDED" in str(fsdp.get("fsdp_state_dict_type", "")):
        # Not only for train.best_checkpoint: a finished (or killed-after-its-last-save) run is re-exported
        # from its last checkpoint.
        raise ValueError(
            f"cft exports checkpoints' weights (a finished run's last one, train.best_checkpoint's best), but "
            f"{cfg.accelerate_config} saves sharded checkpoints (fsdp_state_dict_type: SHARDED_STATE_DICT) that "
            "hold none: use FULL_STATE_DICT"
        )


def launch_command(
    cfg: TrainConfig,
    *,
    config_json: str | Path,
    train_file: str | Path,
    output_dir: str | Path,
    metrics_path: str | Path,
    plot_path: str | Path,
    num_processes: int,
    eval_file: str | Path | None = None,
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
        *(["--eval-file", str(eval_file)] if eval_file else []),
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
    eval_file: str | Path | None = None,
    env: dict[str, str] | None = None,
    checkpoint_dir: str | Path | None = None,
    config_json: str | Path | None = None,
    extra_launch_args: list[str] | None = None,
    scoring: dict[str, Any] | None = None,
) -> subprocess.CompletedProcess:
    """Write the resolved config, run `accelerate launch`, stream its output; raise on failure.

    `env` is added to this process's environment (MLflow tracking URI / experiment / run,
    OMP_NUM_THREADS, ...). The resolved config goes to `<checkpoint_dir>/train_config.json`
    unless `config_json` is given (the output folder is replaced when training ends).
    With `train.best_checkpoint`, the checkpoints are then scored with `scoring`
    (`{"backend", "options", "system_prompt", "grade_timeout_s"}`: the evaluate stage's).
    """
    accelerate = read_accelerate_config(cfg.accelerate_config)
    check_launchable(cfg, accelerate)
    num_processes = cfg.num_processes or int(accelerate.get("num_processes") or 1)  # the file's, unless params say
    output_dir = Path(output_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir(output_dir)
    config_json = Path(config_json) if config_json else checkpoint_dir / "train_config.json"
    config_json.parent.mkdir(parents=True, exist_ok=True)
    config_json.write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    cfg = cfg.model_copy(update={"accelerate_config": str(resolve_accelerate_config(cfg.accelerate_config))})
    cmd = launch_command(
        cfg,
        config_json=config_json,
        train_file=train_file,
        eval_file=eval_file,
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
    if accelerate.get("use_cpu") and num_processes > 1:
        # accelerate launches CPU processes with torchrun (a MULTI_GPU config) but does not tell them
        # to use the CPU, and its MULTI_CPU type needs mpirun: this makes them join a gloo group.
        full_env["ACCELERATE_USE_CPU"] = "true"
    print("[cft.train] " + " ".join(cmd), flush=True)
    # Output is inherited, not captured: it streams live and long runs never fill a pipe.
    result = subprocess.run(cmd, env=full_env)
    if result.returncode != 0:
        raise TrainingError(f"training failed with exit code {result.returncode}: {' '.join(cmd)}")
    if cfg.best_checkpoint is not None:
        select = [sys.executable, "-m", "cft.train.select_best", "--config", str(config_json),
                  "--checkpoint-dir", str(checkpoint_dir), "--output-dir", str(output_dir),
                  "--metrics", str(metrics_path), *(["--scoring", json.dumps(scoring)] if scoring else [])]
        print("[cft.train] " + " ".join(select), flush=True)
        if subprocess.run(select, env=full_env).returncode != 0:
            raise TrainingError(f"best-checkpoint selection failed: {' '.join(select)}")
    return result
