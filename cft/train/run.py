"""Train one model with TRL's SFTTrainer. Runs INSIDE `accelerate launch`:

    accelerate launch --config_file configs/accelerate/cpu.yaml -m cft.train.run \
        --config models/cft/train_config.json --train-file data/train/cft.jsonl \
        --output-dir models/cft --metrics metrics/train.json --plot plots/train_loss.csv

`cft.train.launch.launch_training` builds exactly this command (with the derived
gradient accumulation); call that from the orchestrator rather than this module.

Steps, top to bottom: read the config and the prompt-completion rows, build SFTConfig
(before the model: DeepSpeed ZeRO-3 must see it first), load model and tokenizer,
train (resuming from the last checkpoint in the checkpoint dir), save the final model
(LoRA merged) as an ordinary HF directory, write metrics and the loss curve.

Loss is on the completion only: the rows are TRL's conversational prompt-completion
format and `completion_only_loss=True`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from cft.data.io import DataError, atomic_path, read_jsonl, write_json
from cft.train.config import TrainConfig

CHECKPOINT_SUBDIR = "checkpoints"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cft.train.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="TrainConfig as JSON or YAML (a `train:` key is unwrapped)")
    p.add_argument("--train-file", required=True, help="prompt-completion JSONL from the build stage")
    p.add_argument("--output-dir", required=True, help="final model + tokenizer (from_pretrained-loadable)")
    p.add_argument("--checkpoint-dir", default=None, help=f"default: <output-dir>/{CHECKPOINT_SUBDIR}")
    p.add_argument("--metrics", default="metrics/train.json", help="final metrics JSON")
    p.add_argument("--plot", default="plots/train_loss.csv", help="step,loss CSV")
    return p.parse_args(argv)


def load_config(path: str | Path) -> TrainConfig:
    """Read a TrainConfig from JSON or YAML; a top-level `train:` section is unwrapped."""
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = data["train"]
    return TrainConfig.model_validate(data)


def load_rows(train_file: str | Path, mode: str) -> list[dict[str, Any]]:
    """Prompt-completion rows of `mode`; other modes are skipped (and counted), bad rows raise."""
    rows, skipped = [], 0
    for i, row in enumerate(read_jsonl(train_file), start=1):
        where = f"{train_file}: row {i}"
        for key in ("prompt", "completion"):
            value = row.get(key)
            if not (isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)):
                raise DataError(f"{where}: '{key}' must be a non-empty list of {{role, content}} messages")
        if row.get("mode", mode) != mode:
            skipped += 1
            continue
        rows.append({"prompt": row["prompt"], "completion": row["completion"]})
    if skipped:
        print(f"[cft.train] {train_file}: skipped {skipped} rows whose mode is not '{mode}'", flush=True)
    if not rows:
        raise DataError(f"{train_file}: no rows with mode '{mode}'")
    return rows


def build_sft_config(cfg: TrainConfig, checkpoint_dir: str | Path, num_processes: int):
    """Map TrainConfig onto TRL's SFTConfig (TRL's bf16 / gradient-checkpointing defaults overridden)."""
    import torch
    from trl import SFTConfig

    report_to = ["mlflow"] if os.environ.get("MLFLOW_TRACKING_URI") else "none"
    return SFTConfig(
        output_dir=str(checkpoint_dir),
        run_name=os.environ.get("CFT_RUN_NAME"),
        report_to=report_to,
        seed=cfg.seed,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.accumulation_steps(num_processes),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,  # TRL defaults it on: 2x slower on the CPU
        max_length=None if cfg.padding_free and not cfg.packing else cfg.max_length,  # truncated by us then
        packing=cfg.packing,
        padding_free=cfg.padding_free,
        completion_only_loss=True,
        train_sampling_strategy="group_by_length" if cfg.group_by_length and not cfg.packing else "random",
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        save_only_model=False,  # optimizer + scheduler + RNG state: exact resume
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=True,  # plain log lines stream better through the launcher
    )


def load_model_and_tokenizer(cfg: TrainConfig):
    """`from_pretrained` on the base model (fp32 master weights; bf16/fp16 are autocast)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(cfg.base_model, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def peft_config(cfg: TrainConfig):
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
    )


def make_trainer_class():
    """SFTTrainer that counts real vs padded tokens of every micro-batch it trains on."""
    import torch
    from trl import SFTTrainer

    class CountingSFTTrainer(SFTTrainer):
        # Counted in compute_loss (not the collator): the dataloader prefetches ahead.
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.real_tokens = self.slot_tokens = 0  # this process, since start
            self._window = (0, 0, time.perf_counter())  # real, slot, time at last log
            self._t0 = None

        def compute_loss(self, model, inputs, *args, **kwargs):
            if self._t0 is None:
                self._t0 = time.perf_counter()
            if "attention_mask" in inputs:
                mask = inputs["attention_mask"]
                self.real_tokens += int(mask.sum())
                self.slot_tokens += mask.numel()
            else:  # padding-free / packed: one flat row, no padding
                n = inputs["position_ids"].numel()
                self.real_tokens += n
                self.slot_tokens += n
            return super().compute_loss(model, inputs, *args, **kwargs)

        def totals(self) -> tuple[int, int]:
            """Real and slot tokens summed over all processes (a collective: call on every rank)."""
            t = torch.tensor([self.real_tokens, self.slot_tokens], dtype=torch.float64, device=self.args.device)
            t = self.accelerator.reduce(t, reduction="sum") if self.accelerator.num_processes > 1 else t
            return int(t[0]), int(t[1])

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs:  # a training-step log: add throughput over the window
                real, slot = self.totals()
                now = time.perf_counter()
                r0, s0, t0 = self._window
                if slot > s0:
                    logs["tokens_per_s"] = round((real - r0) / max(now - t0, 1e-9), 2)
                    logs["padding_fraction"] = round(1 - (real - r0) / (slot - s0), 4)
                self._window = (real, slot, now)
            super().log(logs, start_time)

    return CountingSFTTrainer


def truncate_rows(dataset, max_length: int):
    """padding_free without packing: TRL leaves truncation to us (it refuses max_length there)."""

    def cut(ex):
        return {"input_ids": ex["input_ids"][:max_length], "labels": ex["labels"][:max_length]}

    return dataset.map(cut).filter(lambda ex: any(v != -100 for v in ex["labels"]))


# Keys that may change between a crash and its restart without changing the trajectory.
_RESUME_FREE_KEYS = {"accelerate_config", "num_processes", "save_total_limit", "logging_steps", "best_checkpoint"}


def check_resumable(checkpoint_dir: Path, cfg: TrainConfig, train_file: str | Path) -> None:
    """Refuse to resume checkpoints written for other params or other data; record ours."""
    import hashlib

    identity = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _RESUME_FREE_KEYS}
    identity["train_file_sha256"] = hashlib.sha256(Path(train_file).read_bytes()).hexdigest()
    marker = checkpoint_dir / "run_identity.json"
    if marker.exists():
        old = json.loads(marker.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if changed:
            raise SystemExit(
                f"{checkpoint_dir} holds checkpoints of a different run (changed: {', '.join(changed)}); "
                "delete that folder to start over"
            )
        return
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_loss_csv(path: str | Path, log_history: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "loss"])
        for entry in log_history:
            if "loss" in entry and "step" in entry:
                w.writerow([entry["step"], entry["loss"]])


def save_final_model(trainer, tokenizer, output_dir: Path, lora: bool) -> None:
    """An ordinary HF directory: LoRA adapters are merged first, so no peft is needed to load it."""
    if lora:
        trainer.accelerator.wait_for_everyone()
        if trainer.accelerator.is_main_process:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(output_dir)
            tokenizer.save_pretrained(output_dir)
    else:
        trainer.save_model(str(output_dir))  # all ranks: gathers ZeRO-3 / FSDP shards
        if trainer.accelerator.is_main_process:
            tokenizer.save_pretrained(output_dir)


def build_trainer(cfg: TrainConfig, rows: list[dict[str, Any]], checkpoint_dir: str | Path, num_processes: int, callbacks=None):
    """SFTConfig first (DeepSpeed ZeRO-3 must see it before the model loads), then model, then trainer."""
    from datasets import Dataset

    args = build_sft_config(cfg, checkpoint_dir, num_processes)
    model, tokenizer = load_model_and_tokenizer(cfg)
    trainer = make_trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config(cfg),
        callbacks=callbacks,
    )
    if cfg.padding_free and not cfg.packing:
        trainer.train_dataset = truncate_rows(trainer.train_dataset, cfg.max_length)
    return trainer


def train(
    cfg: TrainConfig,
    *,
    train_file: str | Path,
    output_dir: str | Path,
    metrics_path: str | Path,
    plot_path: str | Path,
    checkpoint_dir: str | Path | None = None,
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Train (resuming from the last checkpoint), save the final model, write metrics + loss CSV."""
    import datasets
    from accelerate import PartialState
    from transformers.trainer_utils import get_last_checkpoint

    datasets.disable_progress_bars()
    output_dir = Path(output_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else output_dir / CHECKPOINT_SUBDIR
    state = PartialState()
    if cfg.padding_free:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(
                "train.padding_free needs flash attention, which needs CUDA; on the CPU use "
                "train.group_by_length (default) or train.packing"
            )

    rows = load_rows(train_file, cfg.mode)
    if state.is_main_process:
        check_resumable(checkpoint_dir, cfg, train_file)
    state.wait_for_everyone()
    trainer = build_trainer(cfg, rows, checkpoint_dir, state.num_processes, callbacks)
    tokenizer, args = trainer.processing_class, trainer.args

    resume = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
    if resume and state.is_main_process:
        print(f"[cft.train] resuming from {resume}", flush=True)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    t_end = time.perf_counter()
    runtime = t_end - t0
    real, slot = trainer.totals()
    save_final_model(trainer, tokenizer, output_dir, lora=cfg.lora is not None)

    history = trainer.state.log_history
    losses = [e["loss"] for e in history if "loss" in e]
    metrics = {
        "mode": cfg.mode,
        "n_train": len(trainer.train_dataset),
        "steps": trainer.state.global_step,
        "final_loss": losses[-1] if losses else None,
        "mean_loss": result.training_loss,
        "runtime_s": round(runtime, 3),
        "tokens_per_s": round(real / max(t_end - (trainer._t0 or t0), 1e-9), 2) if real else 0.0,
        "padding_fraction": round(1 - real / slot, 4) if slot else 0.0,
        "train_tokens": real,
        "num_processes": state.num_processes,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "resumed_from": resume,
    }
    if state.is_main_process:
        write_json(metrics_path, metrics)
        write_loss_csv(plot_path, history)
    state.wait_for_everyone()
    return metrics


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    cfg = load_config(a.config)
    train(
        cfg,
        train_file=a.train_file,
        output_dir=a.output_dir,
        metrics_path=a.metrics,
        plot_path=a.plot,
        checkpoint_dir=a.checkpoint_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
