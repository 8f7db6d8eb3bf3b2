"""Shared by the registry tests: a tiny checkpoint, a project in tmp, fake training runs, a fake DVC cache."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import yaml

from cft.config import parse_params

REPO = Path(__file__).resolve().parents[1]
CORPUS = ["What is $2+2$? The answer is \\boxed{4}."] * 30 + ["Solve for x: 3x = 12, so x = 4."] * 30


def build_checkpoint(out: Path) -> Path:
    from cft.model.tiny import build_tiny_model

    return build_tiny_model(out, corpus_texts=CORPUS, vocab_size=300, hidden_size=32, num_heads=2, intermediate_size=64)


def make_project(root: Path, **register) -> tuple[Path, object]:
    """A project folder with params.yaml (the shipped one, `register` overridden) and dvc.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["register"] = {**data["register"], "model_name": "cft-test", **register}
    (root / "params.yaml").write_text(yaml.safe_dump(data))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    return root, parse_params(data)


def fake_training_run(params, root: Path, checkpoint: Path, name: str) -> Path:
    """What the train stage leaves behind: a run with lineage and models/<name> with the run id."""
    from mlflow import MlflowClient

    from cft.registry.lineage import collect_lineage, log_lineage
    from cft.registry.tracking import experiment_id, resolve_tracking_uri
    from cft.registry.tracking import RUN_FILE

    exp_id = experiment_id(params.register_, root)
    client = MlflowClient(resolve_tracking_uri(params.register_, root))
    run_id = client.create_run(exp_id, run_name=f"train-{name}").info.run_id
    log_lineage(client, run_id, collect_lineage(root, params), params)
    client.set_terminated(run_id)
    model_dir = root / "models" / name
    shutil.copytree(checkpoint, model_dir)
    (model_dir / RUN_FILE).write_text(json.dumps({"run_id": run_id}))
    return model_dir


def write_eval(root: Path, name: str, average: float | None, **extra) -> Path:
    path = root / "metrics" / f"eval-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"benchmarks": {"math-500": {"accuracy": average, "n": 4}}, "average": average, **extra} if average is not None else extra
    path.write_text(json.dumps(body))
    return path


def register(params, root: Path, model_dir: Path, eval_path: Path) -> dict:
    from cft.stages import register as stage

    return stage.run(params, model_dir, eval_path, root / "metrics" / f"registry-{model_dir.name}.json", root=root)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _cache_put(cache: Path, md5: str, data: bytes) -> None:
    path = cache / "files" / "md5" / md5[:2] / md5[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def fake_dvc_cache(root: Path, rel: str) -> str:
    """Put folder root/rel in a DVC-3-layout cache (.dvc/cache/files/md5) as DVC does; return its md5."""
    cache = root / ".dvc" / "cache"
    entries = []
    for file in sorted(p for p in (root / rel).rglob("*") if p.is_file()):
        data = file.read_bytes()
        entries.append({"md5": _md5(data), "relpath": file.relative_to(root / rel).as_posix()})
        _cache_put(cache, entries[-1]["md5"], data)
    listing = json.dumps(sorted(entries, key=lambda e: e["relpath"]), sort_keys=True).encode()
    md5 = _md5(listing) + ".dir"
    _cache_put(cache, md5, listing)
    return md5


def write_dvc_lock(root: Path, outs: dict[str, dict[str, str]]) -> None:
    """dvc.lock with `{stage: {path: md5}}` as the stages' outs."""
    stages = {
        stage: {"cmd": f"cft {stage}", "outs": [{"path": p, "hash": "md5", "md5": m} for p, m in paths.items()]}
        for stage, paths in outs.items()
    }
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
