"""Training on CUDA: a bf16 step, packed / padding-free batches, and FSDP (one GPU) saving a
loadable model, full and LoRA-merged (skipped without CUDA)."""

import importlib.util
import json
import math

import pytest

from cft.data.io import write_jsonl
from cft.train import run
from cft.train.config import TrainConfig

pytestmark = pytest.mark.gpu
HAS_FLASH = importlib.util.find_spec("flash_attn") is not None


def _rows(n=16):
    prompt = "Please critique whether the following solution to the question is correct.\n\nQuestion:\n{q}\n\nSolution:\n{s}\n\n"
    return [
        {
            "id": f"r{i}",
            "mode": "cft",
            "prompt": [{"role": "user", "content": prompt.format(q=f"What is {i}+{i}?" + " Why?" * (i % 5), s=f"It is {2 * i}.")}],
            "completion": [{"role": "assistant", "content": "Critique:\nCorrect." + " Fine." * (i % 7) + "\nConclusion: right [END]"}],
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from cft.model.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("train_gpu")
    rows = _rows()
    write_jsonl(root / "cft.jsonl", rows)
    texts = [r["prompt"][0]["content"] + r["completion"][0]["content"] for r in rows]
    build_tiny_model(root / "tiny", corpus_texts=texts, vocab_size=400, hidden_size=64, num_layers=2, num_heads=4)
    return root


def _cfg(workdir, accelerate_config="configs/accelerate/single_gpu.yaml", lora=None, **sft):
    base = {"per_device_train_batch_size": 4, "max_steps": 2, "save_steps": 10, "activation_checkpointing": False}
    return TrainConfig(base_model=str(workdir / "tiny"), global_batch_size=4, accelerate_config=accelerate_config,
                       num_processes=1, lora=lora, sft={**base, **sft})


def test_bf16_training_step(workdir):
    import torch
    from transformers import AutoModelForCausalLM

    out = workdir / "bf16"
    metrics = run.train(
        _cfg(workdir, bf16=True, learning_rate=1e-3),
        train_file=workdir / "cft.jsonl", output_dir=out,
        metrics_path=workdir / "bf16_m" / "train.json", plot_path=workdir / "bf16_m" / "loss.csv",
    )
    assert metrics["steps"] == 2 and math.isfinite(metrics["final_loss"])
    before = AutoModelForCausalLM.from_pretrained(workdir / "tiny").state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert json.loads((workdir / "bf16_m" / "train.json").read_text())["steps"] == 2


@pytest.mark.parametrize("packing", [True, False] if HAS_FLASH else [True])
def test_packed_padding_free_batch_trains(workdir, packing):
    import torch

    attn = "flash_attention_2" if HAS_FLASH else "sdpa"
    cfg = _cfg(workdir, packing=packing, padding_free=not packing, model_init_kwargs={"attn_implementation": attn},
               bf16=True, max_length=256)
    rows = run.load_rows(workdir / "cft.jsonl", "cft")
    trainer = run.build_trainer(cfg, rows, workdir / f"pf_{packing}", num_processes=1)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch  # padding-free: one flat row, boundaries in position_ids
    assert batch["input_ids"].shape[0] == 1
    assert int((batch["position_ids"][0] == 0).sum()) > 1  # several sequences share the row
    assert (batch["labels"][0][batch["position_ids"][0] == 0] == -100).all()  # no loss across boundaries
    trainer.model.train()
    inputs = {k: v.to("cuda") if torch.is_tensor(v) else v for k, v in batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):  # flash attention needs half-precision inputs
        loss = trainer.compute_loss(trainer.model, inputs)
    assert torch.isfinite(loss)
    loss.backward()


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}])
def test_fsdp_saves_a_loadable_model(workdir, lora):
    """configs/accelerate/fsdp.yaml (on one GPU here): the output has weights and loads without peft."""
    import torch
    from transformers import AutoModelForCausalLM

    from cft.train.launch import launch_training

    name = "fsdp_lora" if lora else "fsdp"
    launch_training(
        _cfg(workdir, accelerate_config="configs/accelerate/fsdp.yaml", lora=lora, bf16=True, learning_rate=1e-2),
        train_file=workdir / "cft.jsonl", output_dir=workdir / name,
        metrics_path=workdir / f"{name}_m" / "train.json", plot_path=workdir / f"{name}_m" / "loss.csv",
    )
    out = workdir / name
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    before = AutoModelForCausalLM.from_pretrained(workdir / "tiny").state_dict()
    assert after.keys() == before.keys()
    assert any(not torch.equal(before[k], after[k].to(before[k].dtype)) for k in before)
