"""`cft train` as a user runs it: killed with SIGKILL mid-run, then resumed; best checkpoint kept."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cft.critique.reference import reference_critique
from cft.data.adapters import load_problems
from cft.data.io import write_jsonl
from cft.model.tiny import build_tiny_model
from cft.stages.build import cft_rows

pytestmark = pytest.mark.integration

TRAIN = {
    "base_model": "models/tiny",
    "mode": "cft",
    "max_length": 256,
    "learning_rate": 1e-3,
    "max_steps": 24,
    "global_batch_size": 8,
    "per_device_batch_size": 8,
    "save_steps": 4,
    "save_total_limit": None,
    "logging_steps": 1,
    "seed": 0,
}


@pytest.fixture(scope="module")
def template(tmp_path_factory, repo_root):
    """A workspace with params, a tiny model and a CFT train file made from real critiques."""
    root = tmp_path_factory.mktemp("train-template")
    problems = load_problems(repo_root / "sources/problems/svamp.jsonl", "svamp", limit=48)
    critiques = [
        {"id": f"c{i}", "problem_id": p.id, "question": p.question, "response": f"The answer is \\boxed{{{i}}}.",
         "critique": reference_critique(str(i), p.gold_answer, str(i) == p.gold_answer)}
        for i, p in enumerate(problems)
    ]
    write_jsonl(root / "data/train/cft.jsonl", cft_rows(critiques))
    texts = [p.question for p in problems] + [c["critique"] for c in critiques]
    build_tiny_model(root / "models/tiny", corpus_texts=texts, vocab_size=512, hidden_size=64, num_heads=4, intermediate_size=256)
    shutil.copytree(repo_root / "configs", root / "configs")
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["train"] = TRAIN
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _workspace(template: Path, tmp_path: Path, train_overrides: dict | None = None) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(template, root)
    if train_overrides:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["train"].update(train_overrides)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _cft_train(root: Path, **popen):
    cmd = [str(Path(sys.executable).parent / "cft"), "train"]
    return subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def _finish(proc, timeout=300):
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]


def test_sigkill_then_resume_matches_an_uninterrupted_run(template, tmp_path):
    straight = _workspace(template, tmp_path / "a", {"best_checkpoint": {"benchmark": "gsm8k", "limit": 3, "max_new_tokens": 8}})
    _finish(_cft_train(straight))
    reference = json.loads((straight / "metrics/train.json").read_text())
    # best checkpoint: every checkpoint scored, the best kept as the output model
    steps = (4, 8, 12, 16, 20, 24)
    assert sorted(reference["scores"], key=lambda name: int(name.split("-")[1])) == [f"checkpoint-{s}" for s in steps]
    assert reference["best_step"] in steps
    assert (straight / "models/cft/config.json").exists()

    killed = _workspace(template, tmp_path / "b")
    proc = _cft_train(killed, start_new_session=True)
    checkpoints = killed / "models/checkpoints"
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob("*/checkpoint-8/trainer_state.json")):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint-8 in time"
        time.sleep(0.05)
    time.sleep(0.2)  # let the checkpoint's last files land
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics/train.json").exists()

    _finish(_cft_train(killed))
    resumed = json.loads((killed / "metrics/train.json").read_text())
    assert resumed["resumed_from"] is not None and "checkpoint-" in resumed["resumed_from"]
    assert resumed["steps"] == reference["steps"] == 24
    assert resumed["final_loss"] == pytest.approx(reference["final_loss"], rel=1e-3)
