"""A throwaway copy of the project for integration tests: sources and config, no outputs.

    from project_copy import copy_project, project_env, shrink_params, git_commit_all
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Outputs of earlier runs at the top level, and anything that is not source.
TOP_LEVEL_OUTPUTS = {"data", "models", "metrics", "plots", "reports", "mlruns", "mlruns.db", "mlartifacts", ".dvc-remote", "bench", "dvc.lock"}
ANYWHERE = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", "*.egg-info")


def _skip(repo_root: Path):
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(ANYWHERE(directory, names))
        if Path(directory) == repo_root:
            skipped |= TOP_LEVEL_OUTPUTS & set(names)
        if Path(directory) == repo_root / ".dvc":
            skipped |= {"tmp", "cache", "config.local"} & set(names)
        return skipped

    return ignore


def copy_project(repo_root: Path, dest: Path, git_init: bool = True) -> Path:
    """Copy the project's sources to `dest` (no outputs, caches or venv); optionally `git init` it."""
    shutil.copytree(repo_root, dest, ignore=_skip(repo_root))
    if git_init:
        run(["git", "init", "-q", "-b", "main"], dest)
        run(["git", "config", "user.email", "test@example.invalid"], dest)
        run(["git", "config", "user.name", "cft tests"], dest)
    return dest


def project_env(**extra: str) -> dict[str, str]:
    """This interpreter's bin directory first on PATH (`cft`, `dvc`, `prefect`), no bytecode files."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


def run(cmd, cwd, env=None, timeout=900) -> str:
    """Run a command; fail the test with its output tail if it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env or project_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


def edit_params(root: Path, edit) -> None:
    """Load params.yaml, let `edit(dict)` change it in place, write it back (comments are lost)."""
    import yaml

    path = root / "params.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def shrink_params(root: Path, problems_per_source: int = 30, eval_limit: int = 8, max_new_tokens: int = 32) -> None:
    """A smaller embedded default: fewer problems, shorter generations, smaller eval slices,
    the CFT model alone (no SFT baseline beside it)."""

    def edit(p: dict) -> None:
        for source in p["ingest"]["sources"]:
            source["limit"] = problems_per_source
        for model in p["respond"]["models"]:
            if "sampling" in model:
                model["sampling"]["max_new_tokens"] = max_new_tokens
        p["evaluate"]["max_new_tokens"] = max_new_tokens
        p["evaluate"]["critic"] = {"limit": eval_limit, "max_new_tokens": max_new_tokens}
        for bench in p["evaluate"]["benchmarks"]:
            bench["limit"] = eval_limit
        p["train"]["modes"] = ["cft"]

    edit_params(root, edit)


def git_commit_all(root: Path, message: str) -> None:
    """Commit everything git does not ignore (dvc.lock, DVC's .gitignore files, params)."""
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "--allow-empty", "-m", message], root)
