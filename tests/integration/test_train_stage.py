"""`cft train` as a user runs it: SIGKILLed in the middle of a checkpoint save, resumed into
the same MLflow run, best checkpoint kept; then run again after it finished."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cft.critique.reference import reference_critique
from cft.data.adapters import load_problems
from cft.data.io import write_jsonl
from cft.model.tiny import build_tiny_model
from cft.stages.build import cft_rows

pytestmark = pytest.mark.integration
FAULTS = Path(__file__).resolve().parents[1] / "faults"  # sitecustomize.py: SIGKILL on a given file write

TRAIN = {
    "base_model": "models/tiny",
    "modes": ["cft"],
    "global_batch_size": 8,
    "best_checkpoint": {"benchmark": "gsm8k", "limit": 3, "max_new_tokens": 8},
    "progress_every_s": 0.001,
    "sft": {
        "max_length": 256, "learning_rate": 1e-3, "max_steps": 12, "per_device_train_batch_size": 8,
        "save_steps": 4, "logging_steps": 1, "seed": 0, "bf16": False, "activation_checkpointing": False,
    },
}


@pytest.fixture(scope="module")
def template(tmp_path_factory, repo_root):
    """A workspace with params, a tiny model, CFT train rows and held-out rows from real critiques."""
    root = tmp_path_factory.mktemp("train-template")
    problems = load_problems(repo_root / "sources/problems/svamp.jsonl", "svamp", limit=56)
    critiques = [
        {"id": f"c{i}", "problem_id": p.id, "question": p.question, "response": f"The answer is \\boxed{{{i}}}.",
         "critique": reference_critique(str(i), p.gold_answer, str(i) == p.gold_answer)}
        for i, p in enumerate(problems)
    ]
    write_jsonl(root / "data/train/cft.jsonl", cft_rows(critiques[:48]))
    write_jsonl(root / "data/train/heldout/cft.jsonl", cft_rows(critiques[48:]))
    texts = [p.question for p in problems] + [c["critique"] for c in critiques]
    build_tiny_model(root / "models/tiny", corpus_texts=texts, vocab_size=512, hidden_size=64, num_heads=4, intermediate_size=256)
    shutil.copytree(repo_root / "configs", root / "configs")
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["train"] = TRAIN
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _cft_train(root: Path, env=None, **popen):
    cmd = [str(Path(sys.executable).parent / "cft"), "train"]
    return subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, **popen)


def _finish(proc, timeout=400) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, (out + err)[-4000:]
    return out


def _mlflow(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{root / 'mlruns.db'}")


def test_kill_during_a_checkpoint_save_resumes_from_the_last_complete_one(template, tmp_path):
    from cft.train import checkpoints, run
    from cft.train.config import TrainConfig

    root = tmp_path / "ws"
    shutil.copytree(template, root)
    # A node dies while checkpoint-8 is being written: weights saved, optimizer and trainer state not.
    killed = _cft_train(root, env={"PYTHONPATH": str(FAULTS), "CFT_TEST_KILL_GROUP": "1",
                                   "CFT_TEST_KILL_ON_OPEN": "checkpoint-8/tokenizer_config.json"}, start_new_session=True)
    killed.communicate(timeout=400)
    assert killed.returncode == -9
    (run_dir,) = (root / "models/checkpoints").glob("cft-*")
    assert (run_dir / "checkpoint-8" / "model.safetensors").exists()
    assert not (run_dir / "checkpoint-8" / "trainer_state.json").exists()
    assert [p.name for p in checkpoints.complete_checkpoints(run_dir)] == ["checkpoint-4"]
    assert not (root / "metrics/train/cft.json").exists()
    run_id = json.loads((run_dir / checkpoints.MLFLOW_RUN_FILE).read_text())["run_id"]
    assert _mlflow(root).get_run(run_id).info.status == "RUNNING"

    out = _finish(_cft_train(root))
    assert "checkpoint-8" in out and "set aside" in out and "checkpoint-4: resuming" in out
    assert "pruned superseded" in out and not list(run_dir.glob("incomplete-*"))  # set aside, then pruned
    assert "[cft.train] step 12/12 (100%)" in out and "eta" in out  # progress lines (no terminal)
    metrics = json.loads((root / "metrics/train/cft.json").read_text())
    assert metrics["steps"] == 12 and metrics["resumed_from"].endswith("checkpoint-4")
    assert metrics["heldout_loss_final"] < metrics["heldout_loss_start"]
    assert sorted(metrics["scores"]) == ["checkpoint-12", "checkpoint-4", "checkpoint-8"]  # best checkpoint
    assert (root / "models/cft/model.safetensors").exists() and (root / "models/cft/train_config.json").exists()

    # the same training, uninterrupted (in this process): resuming changed nothing
    cfg = TrainConfig.model_validate({**TRAIN, "base_model": str(root / "models/tiny"), "best_checkpoint": None})
    reference = run.train(cfg, train_file=root / "data/train/cft.jsonl", eval_file=root / "data/train/heldout/cft.jsonl",
                          output_dir=tmp_path / "ref", metrics_path=tmp_path / "ref.json", plot_path=tmp_path / "ref.csv")
    assert metrics["final_loss"] == pytest.approx(reference["final_loss"], rel=1e-3)
    assert metrics["heldout_loss_final"] == pytest.approx(reference["heldout_loss_final"], rel=1e-3)
    assert metrics["train_tokens"] == reference["train_tokens"]

    # one MLflow run for the whole training, FINISHED, every step in it
    client = _mlflow(root)
    assert json.loads((root / "models/cft/mlflow_run.json").read_text())["run_id"] == run_id
    train_runs = client.search_runs([client.get_run(run_id).info.experiment_id], "tags.`cft.stage` = 'train'")
    assert [r.info.run_id for r in train_runs] == [run_id]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert {m.step for m in client.get_metric_history(run_id, "loss")} == set(range(1, 13))
    assert {m.step for m in client.get_metric_history(run_id, "eval_loss")} == set(range(0, 13))

    # `cft train` again (DVC deleted the output, or a user re-ran it): the finished run stays finished
    shutil.rmtree(root / "models/cft")
    out = _finish(_cft_train(root))
    assert "nothing to train" in out and "[cft.train] step" not in out
    again = json.loads((root / "metrics/train/cft.json").read_text())
    assert again["finished_before"] is True
    for key in ("steps", "final_loss", "mean_loss", "train_tokens", "tokens_per_s", "heldout_loss_final", "best_step", "scores"):
        assert again[key] == metrics[key], key
    assert (root / "models/cft/model.safetensors").exists()
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id], "tags.`cft.stage` = 'train'")) == 1
