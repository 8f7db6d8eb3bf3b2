"""Training on the locally built tiny model with real TRL / transformers / accelerate."""

import csv
import json
import random

import pytest

from cft.data.io import DataError, write_jsonl
from cft.train import best, run
from cft.train.config import TrainConfig
from cft.train.launch import TrainingError, launch_command, launch_training

PROMPT = "Please critique whether the following solution to the question is correct.\n\nQuestion:\n{q}\n\nSolution:\n{s}\n\n"


def make_rows(n=32, seed=0):
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        q = f"What is {i} plus {2 * i}?" + " Explain why." * rnd.randint(0, 8)
        s = f"{i} plus {2 * i} is {3 * i}." + " So it holds." * rnd.randint(0, 12)
        verdict = rnd.choice(["right", "wrong"])
        c = "The addition is checked." + " Each step follows." * rnd.randint(0, 8) + f"\nConclusion: {verdict} [END]"
        rows.append(
            {
                "id": f"r{i}",
                "mode": "cft",
                "prompt": [{"role": "user", "content": PROMPT.format(q=q, s=s)}],
                "completion": [{"role": "assistant", "content": f"Critique:\n{c}"}],
            }
        )
    return rows


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from cft.model.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("train")
    rows = make_rows()
    write_jsonl(root / "cft.jsonl", rows)
    texts = [r["prompt"][0]["content"] + r["completion"][0]["content"] for r in rows]
    build_tiny_model(
        root / "tiny", corpus_texts=texts, vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64
    )
    return root


def tiny_cfg(workdir, **kw):
    base = dict(base_model=str(workdir / "tiny"), per_device_batch_size=4, global_batch_size=8, learning_rate=3e-3)
    return TrainConfig(**{**base, **kw})


def run_train(workdir, name, cfg, **kw):
    out = workdir / name
    return run.train(
        cfg,
        train_file=workdir / "cft.jsonl",
        output_dir=out,
        metrics_path=out.with_name(name + "_metrics") / "train.json",
        plot_path=out.with_name(name + "_metrics") / "loss.csv",
        **kw,
    )


# --- pure: config and launch -------------------------------------------------------


def test_accumulation_is_derived_from_process_count():
    cfg = TrainConfig(global_batch_size=512, per_device_batch_size=4)
    assert cfg.accumulation_steps(8) == 16
    assert cfg.accumulation_steps(1) == 128
    assert cfg.accumulation_steps(16) == 8
    with pytest.raises(ValueError, match=r"global_batch_size \(512\).*per_device_batch_size \(4\) x num_processes \(3\)"):
        cfg.accumulation_steps(3)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="global_batch_size"):
        TrainConfig(global_batch_size=10, per_device_batch_size=4)
    with pytest.raises(ValueError, match="num_processes"):
        TrainConfig(global_batch_size=8, per_device_batch_size=4, num_processes=3)
    with pytest.raises(ValueError, match="padding_free needs a flash-attention kernel"):
        TrainConfig(padding_free=True)
    with pytest.raises(ValueError, match="save_total_limit"):
        TrainConfig(best_checkpoint={"benchmark": "math-500"})
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=0)
    with pytest.raises(ValueError, match="warmup_ratio"):
        TrainConfig(warmup_ratio=1.5)
    assert TrainConfig(padding_free=True, attn_implementation="flash_attention_2").padding_free


def test_launch_command_is_accelerate_launch():
    cfg = TrainConfig(global_batch_size=64, per_device_batch_size=4, accelerate_config="configs/accelerate/fsdp.yaml")
    cmd = launch_command(
        cfg, config_json="c.json", train_file="d.jsonl", output_dir="models/cft",
        metrics_path="m.json", plot_path="p.csv", num_processes=8, python="python",
        extra_launch_args=["--machine_rank", "1"],
    )
    assert cmd[:3] == ["python", "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--config_file") + 1] == "configs/accelerate/fsdp.yaml"
    assert cmd[cmd.index("--num_processes") + 1] == "8"
    assert cmd.index("--machine_rank") < cmd.index("cft.train.run")
    tail = cmd[cmd.index("cft.train.run") + 1 :]
    assert tail == ["--config", "c.json", "--train-file", "d.jsonl", "--output-dir", "models/cft",
                    "--metrics", "m.json", "--plot", "p.csv"]
    run.parse_args(tail)  # the entry point accepts exactly what the launcher passes
    with pytest.raises(ValueError, match="num_processes \\(3\\)"):
        launch_command(cfg, config_json="c", train_file="d", output_dir="o", metrics_path="m", plot_path="p", num_processes=3)


def test_load_rows_validates_and_filters_mode(tmp_path):
    rows = make_rows(3)
    rows[1] = {**rows[1], "mode": "sft_noisy"}
    write_jsonl(tmp_path / "t.jsonl", rows)
    assert len(run.load_rows(tmp_path / "t.jsonl", "cft")) == 2
    with pytest.raises(DataError, match="no rows with mode 'sft_teacher'"):
        run.load_rows(tmp_path / "t.jsonl", "sft_teacher")
    write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "text", "completion": []}])
    with pytest.raises(DataError, match="row 1: 'prompt'"):
        run.load_rows(tmp_path / "bad.jsonl", "cft")


def test_best_checkpoint_picks_highest_score(tmp_path):
    for step in (10, 20, 30):
        d = tmp_path / "ckpt" / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
        (d / "optimizer.pt").write_text("x")
    (tmp_path / "ckpt" / "runs").mkdir()
    scores = {"checkpoint-10": 0.2, "checkpoint-20": 0.5, "checkpoint-30": 0.5}
    out = best.select_best_checkpoint(tmp_path / "ckpt", lambda p: scores[p.name], copy_to=tmp_path / "best")
    assert out["best_step"] == 20 and out["best_score"] == 0.5  # tie -> earlier
    assert sorted(out["scores"]) == sorted(scores)
    assert sorted(f.name for f in (tmp_path / "best").iterdir()) == ["config.json"]
    with pytest.raises(FileNotFoundError):
        best.select_best_checkpoint(tmp_path / "none", lambda p: 0.0)


# --- real training ---------------------------------------------------------------


def test_labels_mask_every_prompt_token(workdir):
    from transformers import AutoTokenizer

    cfg = tiny_cfg(workdir)
    rows = run.load_rows(workdir / "cft.jsonl", "cft")
    trainer = run.build_trainer(cfg, rows, workdir / "labels_ckpt", num_processes=1)
    tok = AutoTokenizer.from_pretrained(workdir / "tiny")
    assert type(tok).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")

    def ids(x):
        return list(x["input_ids"] if hasattr(x, "keys") else x)

    expected = {}
    for r in rows:
        prompt = ids(tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True))
        full = ids(tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=True))
        assert full[: len(prompt)] == prompt
        expected[tuple(full)] = len(prompt)

    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["labels"].shape == batch["input_ids"].shape
    for input_ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        n = int(mask.sum())
        real = tuple(input_ids[:n].tolist())
        n_prompt = expected[real]
        assert (labels[:n_prompt] == -100).all(), "a prompt token carries loss"
        assert (labels[n_prompt:n] == input_ids[n_prompt:n]).all(), "a completion token is masked"
        assert (labels[n:] == -100).all(), "a padding token carries loss"
        assert tok.decode(input_ids[n_prompt:n]).startswith("Critique:")


def test_training_updates_weights_and_writes_outputs(workdir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    metrics = run_train(workdir, "basic", tiny_cfg(workdir, max_steps=3, save_steps=2))
    before = AutoModelForCausalLM.from_pretrained(workdir / "tiny").state_dict()
    after = AutoModelForCausalLM.from_pretrained(workdir / "basic").state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    AutoTokenizer.from_pretrained(workdir / "basic")

    on_disk = json.loads((workdir / "basic_metrics" / "train.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["steps"] == 3 and on_disk["n_train"] == 32 and on_disk["gradient_accumulation_steps"] == 2
    assert on_disk["tokens_per_s"] > 0 and 0 <= on_disk["padding_fraction"] < 1
    with open(workdir / "basic_metrics" / "loss.csv") as fh:
        curve = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in curve] == [1, 2, 3]
    assert float(curve[-1]["loss"]) == pytest.approx(on_disk["final_loss"])
    assert (workdir / "basic" / "checkpoints" / "checkpoint-2" / "optimizer.pt").exists()


def test_resume_after_interruption_matches_uninterrupted_run(workdir):
    from transformers import TrainerCallback

    class StopAfterSave(TrainerCallback):
        """Stands in for a crash right after a checkpoint is written."""

        def on_save(self, args, state, control, **kw):
            control.should_training_stop = True

    cfg = tiny_cfg(workdir, max_steps=6, save_steps=3)
    full = run_train(workdir, "full", cfg)
    first = run_train(workdir, "resumed", cfg, callbacks=[StopAfterSave()])
    assert first["steps"] == 3
    second = run_train(workdir, "resumed", cfg)
    assert second["resumed_from"].endswith("checkpoint-3")
    assert second["steps"] == 6
    assert second["final_loss"] == pytest.approx(full["final_loss"], rel=1e-4)

    def curve(name):
        with open(workdir / f"{name}_metrics" / "loss.csv") as fh:
            return [float(r["loss"]) for r in csv.DictReader(fh)]

    assert curve("resumed") == pytest.approx(curve("full"), rel=1e-4)


def test_lora_output_is_a_merged_plain_model(workdir):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    cfg = tiny_cfg(workdir, max_steps=2, save_steps=10, lora={"r": 4, "alpha": 8})
    run_train(workdir, "lora", cfg)
    assert not (workdir / "lora" / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(workdir / "lora")
    assert not any("lora" in k for k in model.state_dict())


def test_launch_training_runs_accelerate_end_to_end(workdir):
    cfg = tiny_cfg(workdir, max_steps=2, save_steps=10, packing=True, per_device_batch_size=2, global_batch_size=4)
    out = workdir / "launched"
    launch_training(
        cfg,
        train_file=workdir / "cft.jsonl",
        output_dir=out,
        metrics_path=workdir / "launched_m" / "train.json",
        plot_path=workdir / "launched_m" / "loss.csv",
        env={"OMP_NUM_THREADS": "1"},
    )
    metrics = json.loads((workdir / "launched_m" / "train.json").read_text())
    assert metrics["steps"] == 2 and metrics["gradient_accumulation_steps"] == 2
    assert metrics["padding_fraction"] == 0.0  # packed: no padding at all
    assert (out / "model.safetensors").exists() and (out / "train_config.json").exists()

    with pytest.raises(TrainingError, match="exit code"):
        launch_training(
            cfg.model_copy(update={"base_model": str(workdir / "no-such-model")}),
            train_file=workdir / "cft.jsonl",
            output_dir=workdir / "broken",
            metrics_path=workdir / "broken_m" / "train.json",
            plot_path=workdir / "broken_m" / "loss.csv",
        )


def test_mlflow_logs_per_step_metrics(workdir, monkeypatch):
    import mlflow

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "cft-train-test")
    monkeypatch.setenv("CFT_RUN_NAME", "tiny-cft")
    run_train(workdir, "tracked", tiny_cfg(workdir, max_steps=2, save_steps=10))
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("cft-train-test")
    (tracked,) = client.search_runs([exp.experiment_id])
    assert tracked.info.run_name == "tiny-cft"
    for key in ("loss", "learning_rate", "grad_norm", "tokens_per_s", "padding_fraction"):
        assert [m.step for m in client.get_metric_history(tracked.info.run_id, key)] == [1, 2], key


def test_checkpoints_of_another_run_are_not_resumed(workdir):
    run_train(workdir, "changed", tiny_cfg(workdir, max_steps=1, save_steps=1))
    with pytest.raises(SystemExit, match="changed: learning_rate"):
        run_train(workdir, "changed", tiny_cfg(workdir, max_steps=1, save_steps=1, learning_rate=1e-4))
