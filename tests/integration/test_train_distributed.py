"""Data parallelism for real on the CPU: 2 processes in a gloo group, launched the way the
train stage launches them (`accelerate launch`, configs/accelerate/cpu_ddp.yaml).

A 1-process run is killed during a checkpoint save and resumed with 2 processes: the same
run (the process count is not its identity), the same global batch, the same rows in each
step (length-grouped, as params.yaml trains), the loss of an uninterrupted 1-process run,
and only rank 0 writing checkpoints, metrics, progress and MLflow.

FSDP cannot be tested here: accelerate 1.15 turns a process group into FSDP only from a
GPU-family type (MULTI_GPU, ...), never from MULTI_CPU, so CPU processes would run DDP;
`launch_training` refuses that config (tests/unit/test_train_configs.py).
"""

import json
import os
from pathlib import Path

import pytest

from cft.data.io import write_jsonl
from cft.train import checkpoints, run
from cft.train.config import TrainConfig
from cft.train.launch import TrainingError, launch_training

pytestmark = pytest.mark.integration
FAULTS = Path(__file__).resolve().parents[1] / "faults"
PROMPT = "Please critique whether the following solution to the question is correct.\n\nQuestion:\n{q}\n\nSolution:\n{s}\n\n"


def _rows(n, offset=0):
    return [
        {"mode": "cft",
         "prompt": [{"role": "user", "content": PROMPT.format(q=f"What is {i} plus {i}?" + " Why?" * (i % 6), s=f"It is {2 * i}.")}],
         "completion": [{"role": "assistant", "content": "Critique:\nThe sum is right." + " Checked." * (i % 5) + "\nConclusion: right [END]"}]}
        for i in range(offset, offset + n)
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from cft.model.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("ddp")
    write_jsonl(root / "cft.jsonl", _rows(48))  # 48: transformers' own grouping differs for 4 and 8 per group
    write_jsonl(root / "heldout.jsonl", _rows(8, offset=100))
    texts = [r["prompt"][0]["content"] + r["completion"][0]["content"] for r in _rows(48)]
    build_tiny_model(root / "tiny", corpus_texts=texts, vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    return root


def _cfg(data, accelerate_config):
    return TrainConfig(
        base_model=str(data / "tiny"), global_batch_size=8, accelerate_config=accelerate_config, progress_every_s=0.001,
        sft={"per_device_train_batch_size": 4, "learning_rate": 3e-3, "max_steps": 12, "save_steps": 4,
             "logging_steps": 1, "seed": 0, "bf16": False, "activation_checkpointing": False,
             "train_sampling_strategy": "group_by_length"},
    )


def test_two_processes_resume_a_one_process_run_with_the_same_loss(data, tmp_path, capfd):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("ddp")
    run_id = client.create_run(exp).info.run_id
    mlflow_env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": exp, "MLFLOW_RUN_ID": run_id, "OMP_NUM_THREADS": "1"}
    paths = {"train_file": data / "cft.jsonl", "eval_file": data / "heldout.jsonl", "output_dir": tmp_path / "out",
             "checkpoint_dir": tmp_path / "ckpt", "metrics_path": tmp_path / "train.json", "plot_path": tmp_path / "loss.csv"}

    one = _cfg(data, "configs/accelerate/cpu.yaml")
    with pytest.raises(TrainingError):  # one process, killed while it writes checkpoint-8
        launch_training(one, **paths, env={**mlflow_env, "PYTHONPATH": str(FAULTS),
                                           "CFT_TEST_KILL_ON_OPEN": "checkpoint-8/tokenizer_config.json"})
    assert [p.name for p in checkpoints.complete_checkpoints(tmp_path / "ckpt")] == ["checkpoint-4"]
    capfd.readouterr()

    two = _cfg(data, "configs/accelerate/cpu_ddp.yaml")
    assert two.identity() == one.identity()
    launch_training(two, **paths, env=mlflow_env)
    out = capfd.readouterr().out
    metrics = json.loads((tmp_path / "train.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["gradient_accumulation_steps"] == 1  # 2 x 4 x 1 = 8, as 1 x 4 x 2
    assert metrics["steps"] == 12 and metrics["resumed_from"].endswith("checkpoint-4")

    # the same global batch gives the loss of one uninterrupted process
    reference = run.train(one, **{**paths, "output_dir": tmp_path / "ref", "checkpoint_dir": tmp_path / "ref_ckpt",
                                  "metrics_path": tmp_path / "ref.json", "plot_path": tmp_path / "ref.csv"})
    assert metrics["final_loss"] == pytest.approx(reference["final_loss"], rel=1e-3)
    assert metrics["heldout_loss_final"] == pytest.approx(reference["heldout_loss_final"], rel=1e-3)
    assert metrics["train_tokens"] == reference["train_tokens"]
    curve = [line.split(",") for line in (tmp_path / "loss.csv").read_text().splitlines()[1:]]
    ref_curve = [line.split(",") for line in (tmp_path / "ref.csv").read_text().splitlines()[1:]]
    assert [float(r[1] or 0) for r in curve] == pytest.approx([float(r[1] or 0) for r in ref_curve], rel=1e-3)

    # only rank 0 writes: one progress line per step, one checkpoint state, one MLflow point per step
    for step in range(5, 13):
        assert sum(line.startswith(f"[cft.train] step {step}/12 ") for line in out.splitlines()) == 1, step
    last = tmp_path / "ckpt" / "checkpoint-12"
    assert (last / "rng_state_0.pth").exists() and (last / "rng_state_1.pth").exists()  # each rank's RNG
    assert json.loads((last / checkpoints.STATE_FILE).read_text())["real_tokens"] == metrics["train_tokens"]
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert {s: steps.count(s) for s in range(1, 13)} == {**dict.fromkeys(range(1, 5), 1),
                                                          **dict.fromkeys(range(5, 9), 2),  # killed segment + resumed
                                                          **dict.fromkeys(range(9, 13), 1)}
    assert client.get_run(run_id).info.status == "FINISHED"
    assert os.path.exists(tmp_path / "out" / "model.safetensors")
