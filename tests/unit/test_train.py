"""Training on the locally built tiny model with real TRL / transformers / accelerate."""

import csv
import json
import os
import random

import pytest

from cft.data.io import DataError, write_jsonl
from cft.train import best, checkpoints, run
from cft.train.config import TrainConfig
from cft.train.launch import TrainingError, launch_command, launch_training

PROMPT = "Please critique whether the following solution to the question is correct.\n\nQuestion:\n{q}\n\nSolution:\n{s}\n\n"
CPU = {"bf16": False, "activation_checkpointing": False}  # TRL's GPU defaults are ~2x slower on the CPU


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
    write_jsonl(root / "heldout.jsonl", make_rows(8, seed=1))
    texts = [r["prompt"][0]["content"] + r["completion"][0]["content"] for r in rows]
    build_tiny_model(
        root / "tiny", corpus_texts=texts, vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64
    )
    return root


def tiny_cfg(workdir, global_batch_size=8, **sft):
    base = {"per_device_train_batch_size": 4, "learning_rate": 3e-3, "logging_steps": 1, **CPU}
    return TrainConfig(base_model=str(workdir / "tiny"), global_batch_size=global_batch_size, sft={**base, **sft})


def run_train(workdir, name, cfg, heldout=False, **kw):
    out = workdir / name
    return run.train(
        cfg,
        train_file=workdir / "cft.jsonl",
        eval_file=workdir / "heldout.jsonl" if heldout else None,
        output_dir=out,
        metrics_path=workdir / f"{name}_metrics" / "train.json",
        plot_path=workdir / f"{name}_metrics" / "loss.csv",
        **kw,
    )


def read_curve(workdir, name):
    with open(workdir / f"{name}_metrics" / "loss.csv") as fh:
        return list(csv.DictReader(fh))


def fake_checkpoint(folder, step, complete=True):
    d = folder / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_text("w")
    (d / "optimizer.pt").write_text("x")
    if complete:
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 30}))
        checkpoints.write_state(d, {"global_step": step})
    return d


# --- pure: config, identity, launch, checkpoint folders ------------------------------


def test_accumulation_is_derived_from_process_count():
    cfg = TrainConfig(global_batch_size=512, sft={"per_device_train_batch_size": 4})
    assert cfg.accumulation_steps(8) == 16
    assert cfg.accumulation_steps(1) == 128
    assert cfg.accumulation_steps(16) == 8
    with pytest.raises(ValueError, match=r"global_batch_size \(512\).*per_device_train_batch_size \(4\) x num_processes \(3\)"):
        cfg.accumulation_steps(3)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="global_batch_size"):
        TrainConfig(global_batch_size=10, sft={"per_device_train_batch_size": 4})
    with pytest.raises(ValueError, match="num_processes"):
        TrainConfig(global_batch_size=8, num_processes=3, sft={"per_device_train_batch_size": 4})
    with pytest.raises(ValueError, match="padding_free needs a flash-attention kernel"):
        TrainConfig(sft={"padding_free": True})
    with pytest.raises(ValueError, match="save_total_limit"):
        TrainConfig(best_checkpoint={"benchmark": "math-500"}, sft={"save_total_limit": 3})
    flash = {"padding_free": True, "model_init_kwargs": {"attn_implementation": "flash_attention_2"}}
    assert TrainConfig(sft=flash).sft_value("padding_free")
    # one default per knob: TRL's, unless params set it
    assert TrainConfig().sft_value("learning_rate") == 2e-5
    assert TrainConfig(sft={"learning_rate": "1e-3"}).sft_value("learning_rate") == 1e-3  # YAML reads 1e-3 as text


@pytest.mark.parametrize(
    "sft, expected",
    [
        ({"learnign_rate": 1e-3}, "params.yaml: train.sft.learnign_rate: unknown key"),
        ({"max_length": "lots"}, "params.yaml: train.sft.max_length: Input should be a valid integer"),
        ({"bf16": "maybe"}, "params.yaml: train.sft.bf16: Input should be a valid boolean"),
        ({"gradient_accumulation_steps": 4}, "params.yaml: train.sft.gradient_accumulation_steps: Value error, set by cft"),
        ({"output_dir": "x"}, "params.yaml: train.sft.output_dir: Value error, set by cft"),
    ],
)
def test_sft_settings_are_checked_against_trl_when_params_load(repo_root, sft, expected):
    import yaml

    from cft.config import ConfigError, parse_params

    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["train"]["sft"] = {**data["train"]["sft"], **sft}
    with pytest.raises(ConfigError) as info:
        parse_params(data, "params.yaml")
    assert expected in str(info.value)


def test_sft_field_names_and_defaults_match_trl():
    import dataclasses

    from trl import SFTConfig

    from cft.train.sft_fields import MISSING, sft_fields

    real = {f.name: f for f in dataclasses.fields(SFTConfig) if f.init}
    read = sft_fields()
    assert set(read) == set(real)
    for name, field in read.items():
        if field.default is not MISSING:
            assert field.default == real[name].default, name


def test_trl_refuses_a_bad_value_naming_train_sft(tmp_path):
    with pytest.raises(SystemExit, match="params.yaml: train.sft: .*sometimes"):
        run.build_sft_config(TrainConfig(sft={**CPU, "lr_scheduler_type": "sometimes"}), tmp_path, 1)


def test_identity_ignores_launch_logging_saving_and_scoring():
    base = TrainConfig(global_batch_size=16, sft={"learning_rate": 1e-3, "per_device_train_batch_size": 8, "logging_steps": 1})
    same = [
        base.model_copy(update={"num_processes": 2, "accelerate_config": "configs/accelerate/cpu_ddp.yaml"}),
        base.model_copy(update={"modes": ["cft", "sft_verified"], "progress_every_s": 1.0}).for_mode("cft"),
        TrainConfig(global_batch_size=16, sft={"learning_rate": 1e-3, "per_device_train_batch_size": 4, "logging_steps": 5,
                                               "save_steps": 7, "save_total_limit": 2, "eval_steps": 3, "activation_checkpointing": True}),
        TrainConfig(global_batch_size=16, best_checkpoint={"limit": 5}, sft={"learning_rate": 1e-3, "per_device_train_batch_size": 8}),
    ]
    for cfg in same:
        assert cfg.identity() == base.identity()
    different = [
        TrainConfig(global_batch_size=16, sft={"learning_rate": 2e-3, "per_device_train_batch_size": 8}),
        TrainConfig(global_batch_size=32, sft={"learning_rate": 1e-3, "per_device_train_batch_size": 8}),
        TrainConfig(global_batch_size=16, sft={"learning_rate": 1e-3, "per_device_train_batch_size": 8, "seed": 1}),
        TrainConfig(global_batch_size=16, sft={"learning_rate": 1e-3, "per_device_train_batch_size": 8, "max_length": 64}),
        TrainConfig(global_batch_size=16, modes=["sft_verified"], sft={"learning_rate": 1e-3, "per_device_train_batch_size": 8}),
        TrainConfig(global_batch_size=16, lora={"r": 4}, sft={"learning_rate": 1e-3, "per_device_train_batch_size": 8}),
        TrainConfig(global_batch_size=16, base_model="other", sft={"learning_rate": 1e-3, "per_device_train_batch_size": 8}),
    ]
    assert len({json.dumps(c.identity(), sort_keys=True) for c in different + [base]}) == len(different) + 1


def test_launch_command_is_accelerate_launch():
    cfg = TrainConfig(global_batch_size=64, accelerate_config="configs/accelerate/fsdp.yaml", sft={"per_device_train_batch_size": 4})
    cmd = launch_command(
        cfg, config_json="c.json", train_file="d.jsonl", eval_file="h.jsonl", output_dir="models/cft",
        metrics_path="m.json", plot_path="p.csv", num_processes=8, python="python",
        extra_launch_args=["--machine_rank", "1"],
    )
    assert cmd[:3] == ["python", "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--config_file") + 1] == "configs/accelerate/fsdp.yaml"
    assert cmd[cmd.index("--num_processes") + 1] == "8"
    assert cmd.index("--machine_rank") < cmd.index("cft.train.run")
    tail = cmd[cmd.index("cft.train.run") + 1 :]
    assert tail == ["--config", "c.json", "--train-file", "d.jsonl", "--eval-file", "h.jsonl",
                    "--output-dir", "models/cft", "--metrics", "m.json", "--plot", "p.csv"]
    run.parse_args(tail)  # the entry point accepts exactly what the launcher passes
    with pytest.raises(ValueError, match="num_processes \\(3\\)"):
        launch_command(cfg, config_json="c", train_file="d", output_dir="o", metrics_path="m", plot_path="p", num_processes=3)


def test_sharded_fsdp_checkpoints_are_refused_before_launch(tmp_path):
    """Their weights could not be exported: not the best checkpoint, nor a finished run's last one."""
    (tmp_path / "fsdp.yaml").write_text("distributed_type: FSDP\nnum_processes: 8\nfsdp_config:\n  fsdp_state_dict_type: SHARDED_STATE_DICT\n")
    for cfg in (TrainConfig(accelerate_config=str(tmp_path / "fsdp.yaml"), best_checkpoint={"limit": 2}),
                TrainConfig(accelerate_config=str(tmp_path / "fsdp.yaml"))):
        with pytest.raises(ValueError, match="FULL_STATE_DICT"):
            launch_training(cfg, train_file="t", output_dir=tmp_path / "o", metrics_path="m", plot_path="p")


def test_load_rows_validates_and_filters_mode(tmp_path):
    rows = make_rows(3)
    rows[1] = {**rows[1], "mode": "sft_noisy"}
    write_jsonl(tmp_path / "t.jsonl", rows)
    assert len(run.load_rows(tmp_path / "t.jsonl", "cft")) == 2
    with pytest.raises(DataError, match="no rows with mode 'sft_teacher'"):
        run.load_rows(tmp_path / "t.jsonl", "sft_teacher")
    assert run.load_rows(tmp_path / "t.jsonl", "sft_teacher", required=False) == []
    write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "text", "completion": []}])
    with pytest.raises(DataError, match="row 1: 'prompt'"):
        run.load_rows(tmp_path / "bad.jsonl", "cft")


def test_best_checkpoint_scores_complete_checkpoints_once(tmp_path):
    for step in (10, 20, 30):
        fake_checkpoint(tmp_path / "ckpt", step)
    fake_checkpoint(tmp_path / "ckpt", 40, complete=False)  # killed during its save
    (tmp_path / "ckpt" / "runs").mkdir()
    scores = {"checkpoint-10": 0.2, "checkpoint-20": 0.5, "checkpoint-30": 0.5}
    calls = []

    def score(p):
        calls.append(p.name)
        return scores[p.name]

    key = {"benchmark": "x"}
    out = best.select_best_checkpoint(tmp_path / "ckpt", lambda p: best.cached_score(p, key, score))
    assert out["best_step"] == 20 and out["best_score"] == 0.5  # tie -> earlier
    assert sorted(out["scores"]) == sorted(scores)
    # a second selection (a killed selection resumed, a finished run re-run) scores nothing again
    again = best.select_best_checkpoint(tmp_path / "ckpt", lambda p: best.cached_score(p, key, score))
    assert again == out and sorted(calls) == sorted(scores)
    best.select_best_checkpoint(tmp_path / "ckpt", lambda p: best.cached_score(p, {"benchmark": "y"}, score))
    assert len(calls) == 6  # another validation set is scored afresh
    with pytest.raises(FileNotFoundError):
        best.select_best_checkpoint(tmp_path / "none", lambda p: 0.0)


def test_best_checkpoint_scoring_runs_on_the_configured_vllm_backend(tmp_path):
    """With `evaluate.backend: vllm`, checkpoints are scored by vLLM (the stand-in package here):
    one engine per checkpoint, each closed before the next, and the best exported."""
    from fake_vllm import install_fake_vllm

    from cft.train.select_best import select_and_export

    env, log = install_fake_vllm(tmp_path)
    folder = tmp_path / "ckpt"
    for step in (2, 4):
        fake_checkpoint(folder, step)
    cfg = TrainConfig(best_checkpoint={"benchmark": "gsm8k", "limit": 2, "max_new_tokens": 4})
    scoring = {"backend": "vllm", "options": {"env": env, "max_model_len": 4096}, "system_prompt": "Reason, then \\boxed{}."}
    result = select_and_export(cfg, folder, tmp_path / "out", scoring)
    loads = [json.loads(line)["llm"]["model"] for line in log.read_text().splitlines() if '"llm"' in line]
    assert loads == [str(folder / "checkpoint-2"), str(folder / "checkpoint-4")]
    prompts = [json.loads(line)["prompts"] for line in log.read_text().splitlines() if '"prompts"' in line]
    assert all("Reason, then" in p for batch in prompts for p in batch)  # the evaluate stage's system prompt
    assert result["best_step"] == 2 and (tmp_path / "out" / "model.safetensors").exists()
    assert not (tmp_path / "out" / "optimizer.pt").exists()
    assert json.loads((folder / "checkpoint-4" / best.SCORE_FILE).read_text())["key"]["backend"] == "vllm"


def test_incomplete_checkpoints_are_set_aside(tmp_path):
    fake_checkpoint(tmp_path, 4)
    fake_checkpoint(tmp_path, 8)
    fake_checkpoint(tmp_path, 12, complete=False)  # killed during its save
    (tmp_path / "checkpoint-4" / "model.safetensors").unlink()  # killed while a rotation deleted it
    assert checkpoints.last_complete(tmp_path).name == "checkpoint-8"
    moved = checkpoints.set_aside_incomplete(tmp_path)
    assert sorted(p.name.rsplit("-", 1)[0] for p in moved) == ["incomplete-checkpoint-12", "incomplete-checkpoint-4"]
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path)] == ["checkpoint-8"]


def test_prune_keeps_the_current_run_per_output(tmp_path):
    from typer.testing import CliRunner

    from cft.cli import app

    root = tmp_path / "checkpoints"
    old, current, other = root / f"cft-{'a' * 16}", root / f"cft-{'b' * 16}", root / f"sft_verified-{'c' * 16}"
    for folder in (old, current, other):
        for step in (2, 4, 6):
            fake_checkpoint(folder, step)
    fake_checkpoint(current, 8, complete=False)
    checkpoints.set_aside_incomplete(current)
    (root / ".trash-cft-dddddddddddddddd").mkdir()  # left by a prune that was killed
    (current / ".score-k2x9q1" / "merged").mkdir(parents=True)  # a LoRA checkpoint merged for scoring, then a kill

    removed = [p for p, _ in checkpoints.prune(root, keep=current, output="cft")]
    assert old in removed and other not in removed and current not in removed
    assert not (root / ".trash-cft-dddddddddddddddd").exists()
    assert [p.name for p in current.iterdir() if p.name.startswith(("incomplete-", ".score-"))] == []
    assert [p.name for p in checkpoints.list_checkpoints(current)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]

    result = CliRunner().invoke(app, ["prune-checkpoints", "--root", str(root), "--keep-last", "1", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert len(checkpoints.list_checkpoints(current)) == 3  # a dry run removes nothing
    result = CliRunner().invoke(app, ["prune-checkpoints", "--root", str(root), "--keep-last", "1"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in checkpoints.list_checkpoints(current)] == ["checkpoint-6"]
    assert [p.name for p in checkpoints.list_checkpoints(other)] == ["checkpoint-6"]


def test_train_stage_files_mode_option_and_scoring_backend(repo_root, tmp_path):
    from typer.testing import CliRunner

    from cft.cli import app
    from cft.config import load_params
    from cft.stages.train import heldout_file_for, scoring_for, train_file_for

    assert train_file_for("cft", tmp_path) == tmp_path / "cft.jsonl"
    assert train_file_for("sft_verified", tmp_path) == tmp_path / "sft.jsonl"
    assert heldout_file_for("sft_verified", tmp_path) is None  # no held-out rows: no held-out loss
    write_jsonl(tmp_path / "heldout" / "sft.jsonl", make_rows(1))
    assert heldout_file_for("sft_verified", tmp_path) == tmp_path / "heldout" / "sft.jsonl"
    result = CliRunner().invoke(app, ["train", "--mode", "bogus", "--params", str(repo_root / "params.yaml")])
    assert result.exit_code == 2 and "--mode: mode 'bogus': not a training mode" in result.output
    # best-checkpoint scoring runs where the evaluate stage generates
    params = load_params(repo_root / "params.yaml")
    scoring = scoring_for(params)
    assert scoring["backend"] == params.evaluate.backend and scoring["options"] == params.evaluate.generator_options()
    assert scoring["system_prompt"] == params.evaluate.system_prompt


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


def test_length_grouped_steps_hold_the_same_rows_for_any_process_count(workdir, monkeypatch):
    """A run resumed with another process count skips the steps it trained: step t must hold the
    same rows whether 1 process accumulates 2 batches of 4 or 2 processes take one each."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    cfg = tiny_cfg(workdir, train_sampling_strategy="group_by_length")
    trainer = run.build_trainer(cfg, make_rows(48), workdir / "grouped_ckpt", num_processes=1)

    one = list(BatchSampler(list(trainer._get_train_sampler()), 4, drop_last=False))
    one_process = [sorted(a + b) for a, b in zip(one[::2], one[1::2])]  # accumulation 2
    monkeypatch.setattr(trainer.args, "gradient_accumulation_steps", cfg.accumulation_steps(2))
    monkeypatch.setattr(type(trainer.args), "world_size", 2)  # as each of 2 processes sees it
    two = list(trainer._get_train_sampler())
    ranks = [BatchSamplerShard(BatchSampler(two, 4, drop_last=False), num_processes=2, process_index=r) for r in (0, 1)]
    two_processes = [sorted(a + b) for a, b in zip(*ranks)]  # accelerate: batch i to process i % 2
    assert len(one_process) == 6 and two_processes == one_process


def test_training_updates_weights_and_reports_heldout_loss(workdir, capfd):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    metrics = run_train(workdir, "basic", tiny_cfg(workdir, max_steps=3, save_steps=2), heldout=True)
    before = AutoModelForCausalLM.from_pretrained(workdir / "tiny").state_dict()
    after = AutoModelForCausalLM.from_pretrained(workdir / "basic").state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    AutoTokenizer.from_pretrained(workdir / "basic")
    assert json.loads((workdir / "basic" / "train_config.json").read_text())["sft"]["max_steps"] == 3

    on_disk = json.loads((workdir / "basic_metrics" / "train.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["steps"] == 3 and on_disk["n_train"] == 32 and on_disk["gradient_accumulation_steps"] == 2
    assert on_disk["tokens_per_s"] > 0 and 0 <= on_disk["padding_fraction"] < 1
    # held-out loss from the trainer's evaluation loop: the base model at step 0, then every logging step
    assert on_disk["n_heldout"] == 8
    assert on_disk["heldout_loss_final"] < on_disk["heldout_loss_start"]
    curve = read_curve(workdir, "basic")
    assert [int(r["step"]) for r in curve] == [0, 1, 2, 3]
    assert curve[0]["loss"] == "" and float(curve[0]["heldout_loss"]) == pytest.approx(on_disk["heldout_loss_start"])
    assert float(curve[-1]["loss"]) == pytest.approx(on_disk["final_loss"])
    assert float(curve[-1]["heldout_loss"]) == pytest.approx(on_disk["heldout_loss_final"])
    assert [e["step"] for e in on_disk["log_history"] if "eval_loss" in e] == [0, 1, 2, 3]  # for the comparison report
    ckpt_dir = workdir / "checkpoints" / "basic"
    assert [p.name for p in checkpoints.complete_checkpoints(ckpt_dir)] == ["checkpoint-2", "checkpoint-3"]
    # output is not a terminal: plain progress lines with step/total, losses and ETA
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith("[cft.train] step ")]
    assert lines and lines[-1].startswith("[cft.train] step 3/3 (100%)") and "heldout_loss" in lines[-1] and "eta" in lines[-1]


def test_resume_matches_an_uninterrupted_run_and_a_finished_run_stays_finished(workdir, monkeypatch):
    from transformers import TrainerCallback

    class StopAfterSave(TrainerCallback):
        """Stands in for a crash right after a checkpoint is written."""

        def on_save(self, args, state, control, **kw):
            control.should_training_stop = True

    cfg = tiny_cfg(workdir, max_steps=6, save_steps=3)
    full = run_train(workdir, "full", cfg, heldout=True)
    first = run_train(workdir, "resumed", cfg, heldout=True, callbacks=[StopAfterSave()])
    assert first["steps"] == 3
    # logging and saving frequencies are not the run's identity: changed, it still resumes
    monkeypatch.delenv("MLFLOW_MAX_LOG_PARAMS", raising=False)
    second = run_train(workdir, "resumed", tiny_cfg(workdir, max_steps=6, save_steps=2, logging_steps=1), heldout=True)
    assert "MLFLOW_MAX_LOG_PARAMS" not in os.environ  # set for the resumed segment's trainer only
    assert second["resumed_from"].endswith("checkpoint-3") and not second["finished_before"]
    assert second["steps"] == 6
    assert second["final_loss"] == pytest.approx(full["final_loss"], rel=1e-4)
    assert second["train_tokens"] == full["train_tokens"]  # counted over both segments
    assert second["heldout_loss_start"] == pytest.approx(full["heldout_loss_start"])
    assert second["heldout_loss_final"] == pytest.approx(full["heldout_loss_final"], rel=1e-4)
    assert [float(r["loss"] or 0) for r in read_curve(workdir, "resumed")] == pytest.approx(
        [float(r["loss"] or 0) for r in read_curve(workdir, "full")], rel=1e-4)

    # `cft train` again after the run finished: nothing is trained, the run's own numbers stay
    again = run_train(workdir, "resumed", cfg, heldout=True)
    assert again["finished_before"] and again["steps"] == 6
    for key in ("final_loss", "mean_loss", "train_tokens", "tokens_per_s", "padding_fraction",
                "heldout_loss_start", "heldout_loss_final"):
        assert again[key] == pytest.approx(second[key]), key
    assert again["mean_loss"] > 0 and again["train_tokens"] > 0 and again["tokens_per_s"] > 0
    assert (workdir / "resumed" / "model.safetensors").exists()


def test_a_length_grouped_run_resumed_in_its_second_epoch_trains_the_same_rows(workdir):
    """32 rows of global batch 8: steps 5-8 are epoch 2. Resumed at step 5, step 6 must see the
    batch the uninterrupted run saw, not one of another shuffle."""
    from transformers import TrainerCallback

    class StopAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            control.should_training_stop = True

    cfg = tiny_cfg(workdir, max_steps=6, save_steps=5, train_sampling_strategy="group_by_length")
    full = run_train(workdir, "grouped_full", cfg)
    assert run_train(workdir, "grouped_resumed", cfg, callbacks=[StopAfterSave()])["steps"] == 5
    resumed = run_train(workdir, "grouped_resumed", cfg)
    assert resumed["resumed_from"].endswith("checkpoint-5")
    assert resumed["final_loss"] == pytest.approx(full["final_loss"], rel=1e-5)
    assert resumed["train_tokens"] == full["train_tokens"]


def test_a_kill_before_the_marker_leaves_the_previous_checkpoint_with_save_total_limit(workdir):
    """transformers deletes checkpoints over `save_total_limit` inside its save, before cft marks
    the new one complete: the old one must outlive that gap, or a kill there restarts at step 0."""
    from transformers import TrainerCallback

    class Killed(RuntimeError):
        pass

    class KillBeforeMarker(TrainerCallback):  # runs before cft's marker (callbacks run in order)
        def on_save(self, args, state, control, **kw):
            if state.global_step == 4:
                raise Killed

    cfg = tiny_cfg(workdir, max_steps=6, save_steps=2, save_total_limit=1)
    with pytest.raises(Killed):
        run_train(workdir, "rotated", cfg, callbacks=[KillBeforeMarker()])
    folder = workdir / "checkpoints" / "rotated"
    assert [p.name for p in checkpoints.complete_checkpoints(folder)] == ["checkpoint-2"]
    metrics = run_train(workdir, "rotated", cfg)
    assert metrics["resumed_from"].endswith("checkpoint-2") and metrics["steps"] == 6
    assert [p.name for p in checkpoints.list_checkpoints(folder)] == ["checkpoint-6"]  # the limit still holds


def test_lora_output_is_a_merged_plain_model(workdir):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig.model_validate({**tiny_cfg(workdir, max_steps=2, save_steps=10).model_dump(), "lora": {"r": 4, "alpha": 8}})
    run_train(workdir, "lora", cfg)
    assert not (workdir / "lora" / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(workdir / "lora")
    assert not any("lora" in k for k in model.state_dict())


def test_lora_with_best_checkpoint_exports_the_merged_best(workdir):
    pytest.importorskip("peft")
    import torch
    from transformers import AutoModelForCausalLM

    from cft.train.select_best import select_and_export

    cfg = TrainConfig.model_validate({
        **tiny_cfg(workdir, max_steps=4, save_steps=2, learning_rate=5e-2).model_dump(),
        "lora": {"r": 4, "alpha": 8},
        "best_checkpoint": {"benchmark": "gsm8k", "limit": 2, "max_new_tokens": 4},
    })
    run_train(workdir, "lora_best", cfg)
    ckpt_dir = workdir / "checkpoints" / "lora_best"
    assert (ckpt_dir / "checkpoint-2" / "adapter_config.json").exists()  # LoRA checkpoints hold adapters
    result = select_and_export(cfg, ckpt_dir, workdir / "lora_best", {"backend": "transformers", "options": {"device": "cpu"}})
    assert sorted(result["scores"]) == ["checkpoint-2", "checkpoint-4"]
    out = workdir / "lora_best"
    assert not (out / "adapter_config.json").exists() and (out / "train_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()  # no peft involved
    base = AutoModelForCausalLM.from_pretrained(workdir / "tiny").state_dict()
    assert merged.keys() == base.keys()
    assert any(not torch.equal(merged[k], base[k]) for k in base)


def test_launch_training_runs_accelerate_end_to_end(workdir):
    cfg = tiny_cfg(workdir, global_batch_size=4, max_steps=2, save_steps=10, packing=True, per_device_train_batch_size=2)
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
    assert (workdir / "checkpoints" / "launched" / "train_config.json").exists()

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
    run_train(workdir, "tracked", tiny_cfg(workdir, max_steps=2, save_steps=10), heldout=True)
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("cft-train-test")
    (tracked,) = client.search_runs([exp.experiment_id])
    assert tracked.info.run_name == "tiny-cft"
    for key in ("loss", "learning_rate", "grad_norm", "tokens_per_s", "padding_fraction"):
        assert [m.step for m in client.get_metric_history(tracked.info.run_id, key)] == [1, 2], key
    assert [m.step for m in client.get_metric_history(tracked.info.run_id, "eval_loss")] == [0, 1, 2]


def test_checkpoints_of_another_run_are_not_resumed(workdir):
    run_train(workdir, "changed", tiny_cfg(workdir, max_steps=1, save_steps=1))
    with pytest.raises(SystemExit, match="changed: sft"):
        run_train(workdir, "changed", tiny_cfg(workdir, max_steps=1, save_steps=1, learning_rate=1e-4))


def test_the_mlflow_run_continues_only_while_a_checkpoint_can_resume(tmp_path):
    """A killed run with a complete checkpoint continues its MLflow run; a run that starts from
    scratch (no checkpoint left, e.g. a forced retrain after pruning) is a new run."""
    from mlflow import MlflowClient

    from cft.stages.train import mlflow_run
    from cft.train import checkpoints as ckpt

    uri = f"sqlite:///{tmp_path}/m.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    folder = tmp_path / "cft-0123456789abcdef"
    folder.mkdir()
    cfg = TrainConfig(global_batch_size=8, sft={**CPU})
    first, reused = mlflow_run(client, exp, uri, folder, cfg)
    assert not reused
    # no complete checkpoint yet (killed early): a new run, the stale one marked killed
    second, reused = mlflow_run(client, exp, uri, folder, cfg)
    assert not reused and second != first and client.get_run(first).info.status == "KILLED"
    done = folder / "checkpoint-4"
    done.mkdir()
    (done / "model.safetensors").write_text("w")
    (done / ckpt.TRAINER_STATE).write_text("{}")
    ckpt.write_state(done, {})
    assert ckpt.complete_checkpoints(folder) == [done]
    assert mlflow_run(client, exp, uri, folder, cfg) == (second, True)
