"""Train one model with TRL's SFTTrainer. Runs INSIDE `accelerate launch`:

    accelerate launch --config_file configs/accelerate/cpu.yaml -m cft.train.run \
        --config train_config.json --train-file data/train/cft.jsonl \
        --eval-file data/train/heldout/cft.jsonl --output-dir models/cft \
        --checkpoint-dir models/checkpoints/cft-<id> --metrics metrics/train.json --plot plots/train_loss.csv

`cft.train.launch.launch_training` builds exactly this command (with the derived
gradient accumulation); call that from the orchestrator rather than this module.

Steps: read the config and the prompt-completion rows; set incomplete checkpoints aside
and find the last complete one; build SFTConfig (before the model: DeepSpeed ZeRO-3 must
see it first) and the trainer, which loads the model (TRL's `model_init_kwargs`); train,
resuming from that checkpoint; publish the final model (LoRA merged) as an ordinary HF
directory; write metrics and the loss curve. A run that already finished trains nothing:
its last checkpoint is re-exported and its metrics are those of the run.

Loss is on the completion only (TRL's prompt-completion format). With a held-out file,
the trainer's own evaluation loop reports its loss (`eval_loss`) from step 0 (the base
model) every `eval_steps`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from cft.data.io import DataError, atomic_path, read_jsonl, write_json
from cft.train import checkpoints as ckpt
from cft.train.config import TrainConfig

LOG = "[cft.train]"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cft.train.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="TrainConfig as JSON or YAML (a `train:` key is unwrapped)")
    p.add_argument("--train-file", required=True, help="prompt-completion JSONL from the build stage")
    p.add_argument("--eval-file", default=None, help="held-out rows of the same format: held-out loss")
    p.add_argument("--output-dir", required=True, help="final model + tokenizer (from_pretrained-loadable)")
    p.add_argument("--checkpoint-dir", default=None, help="default: checkpoints/<name> beside the output folder")
    p.add_argument("--metrics", default="metrics/train.json", help="final metrics JSON")
    p.add_argument("--plot", default="plots/train_loss.csv", help="step,loss,heldout_loss CSV")
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


def load_rows(train_file: str | Path, mode: str, *, required: bool = True) -> list[dict[str, Any]]:
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
        print(f"{LOG} {train_file}: skipped {skipped} rows whose mode is not '{mode}'", flush=True)
    if not rows and required:
        raise DataError(f"{train_file}: no rows with mode '{mode}'")
    return rows


def sft_kwargs(cfg: TrainConfig, checkpoint_dir: str | Path, num_processes: int, *, evaluate: bool,
               resuming: bool) -> dict[str, Any]:
    """params' `train.sft` plus what cft decides: folder, accumulation, MLflow, evaluation, progress."""
    import torch

    kw = cfg.sft.as_kwargs()
    kw.update(
        output_dir=str(checkpoint_dir),
        gradient_accumulation_steps=cfg.accumulation_steps(num_processes),
        report_to=["mlflow"] if os.environ.get("MLFLOW_TRACKING_URI") else "none",
        run_name=os.environ.get("CFT_RUN_NAME"),
        # transformers would delete old checkpoints before cft marks the new one complete (a kill
        # there leaves none to resume): CheckpointState applies `train.sft.save_total_limit` after.
        save_total_limit=None,
    )
    if cfg.sft_value("padding_free") and not cfg.sft_value("packing"):
        kw["max_length"] = None  # TRL refuses max_length here: the rows are truncated by us (truncate_rows)
    if evaluate:
        kw.setdefault("eval_strategy", "steps")
        # The base model's held-out loss is measured at step 0; a resumed run has it already.
        kw["eval_on_start"] = kw.get("eval_on_start", True) and not resuming
    else:
        kw.update(eval_strategy="no", eval_on_start=False)
    # tqdm's bar (steps, rate, ETA) on a terminal; plain progress lines (ProgressLines) otherwise.
    kw.setdefault("disable_tqdm", not sys.stderr.isatty())
    kw.setdefault("dataloader_pin_memory", torch.cuda.is_available())  # pinning warns without a GPU
    return kw


def build_sft_config(cfg: TrainConfig, checkpoint_dir: str | Path, num_processes: int, *, evaluate: bool = False,
                     resuming: bool = False):
    """TRL's SFTConfig; a value it refuses stops the run naming `train.sft`."""
    from trl import SFTConfig

    kw = sft_kwargs(cfg, checkpoint_dir, num_processes, evaluate=evaluate, resuming=resuming)
    try:
        return SFTConfig(**kw)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"params.yaml: train.sft: {exc}") from None


def load_tokenizer(cfg: TrainConfig):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model, trust_remote_code=bool(cfg.sft_value("trust_remote_code")))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


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


class Tally:
    """Training tokens (real and padded slots) and training seconds of the whole run: this
    process since it started, plus what the resumed checkpoint had counted (all processes)."""

    def __init__(self) -> None:
        self.real = self.slot = 0
        self.eval_seconds = 0.0
        self.started: float | None = None
        self.base = {"real_tokens": 0, "slot_tokens": 0, "train_seconds": 0.0}

    def restore(self, state: dict[str, Any]) -> None:
        self.base = {k: state.get(k, v) for k, v in self.base.items()}

    def seconds(self) -> float:
        """Training time of the run so far (evaluation excluded)."""
        here = time.perf_counter() - self.started - self.eval_seconds if self.started is not None else 0.0
        return self.base["train_seconds"] + max(here, 0.0)


def make_trainer_class():
    """SFTTrainer that counts real vs padded training tokens, keeps whole-run metrics, and
    groups lengths so that a resumed run (any process count, any epoch) trains the same rows."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from trl import SFTTrainer

    class EpochLengthGroupedSampler(LengthGroupedSampler):
        """transformers' length grouping with each epoch's shuffle seeded by (seed, epoch)."""

        def __init__(self, batch_size: int, *, lengths: list[int], seed: int, epoch):
            super().__init__(batch_size, lengths=lengths)
            self.seed, self.epoch = seed, epoch

        def __iter__(self):
            self.generator = torch.Generator().manual_seed(self.seed + self.epoch())
            return super().__iter__()

    class CFTTrainer(SFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.tally = Tally()
            self._window = (0, 0, 0.0)  # real, slot, seconds at the last log

        def _get_train_sampler(self, train_dataset=None):
            # A resumed run skips the steps it trained, so step t must hold the same rows in every
            # segment. transformers' length grouping breaks that twice: it groups runs of per-device
            # batch x accumulation (a new process count changes them), and draws each epoch's order
            # from the global RNG (a run resumed in epoch 2 draws epoch 1's). Grouped by the global
            # batch (accelerate deals consecutive batches round-robin to the processes), each epoch
            # shuffled from (seed, epoch) as accelerate's SeedableRandomSampler does for `random`.
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler):
                args = self.args
                sampler = EpochLengthGroupedSampler(
                    args.train_batch_size * args.gradient_accumulation_steps * args.world_size,
                    lengths=sampler.lengths,
                    seed=args.data_seed if args.data_seed is not None else args.seed,
                    epoch=lambda: int(self.state.epoch or 0),  # restored from the checkpoint on resume
                )
            return sampler

        # Counted in compute_loss (not the collator): the dataloader prefetches ahead.
        def compute_loss(self, model, inputs, *args, **kwargs):
            if model.training:
                if self.tally.started is None:
                    self.tally.started = time.perf_counter()
                if "attention_mask" in inputs:
                    mask = inputs["attention_mask"]
                    self.tally.real += int(mask.sum())
                    self.tally.slot += mask.numel()
                else:  # padding-free / packed: one flat row, no padding
                    n = inputs["position_ids"].numel()
                    self.tally.real += n
                    self.tally.slot += n
            return super().compute_loss(model, inputs, *args, **kwargs)

        def restore_counts(self, state: dict[str, Any]) -> None:
            """Counts of the run up to the resumed checkpoint (its `cft_state.json`)."""
            self.tally.restore(state)
            self._window = (self.tally.base["real_tokens"], self.tally.base["slot_tokens"], self.tally.base["train_seconds"])

        def evaluate(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                if self.tally.started is not None:
                    self.tally.eval_seconds += time.perf_counter() - t0

        def totals(self) -> tuple[int, int]:
            """Real and slot tokens of the run over all processes (a collective: call on every rank)."""
            t = torch.tensor([self.tally.real, self.tally.slot], dtype=torch.float64, device=self.args.device)
            t = self.accelerator.reduce(t, reduction="sum") if self.accelerator.num_processes > 1 else t
            return int(t[0]) + self.tally.base["real_tokens"], int(t[1]) + self.tally.base["slot_tokens"]

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs:  # a training-step log: add throughput over the window
                real, slot = self.totals()
                seconds = self.tally.seconds()
                r0, s0, t0 = self._window
                if slot > s0:
                    logs["tokens_per_s"] = round((real - r0) / max(seconds - t0, 1e-9), 2)
                    logs["padding_fraction"] = round(1 - (real - r0) / (slot - s0), 4)
                self._window = (real, slot, seconds)
            if "train_runtime" in logs:  # the end-of-train summary: a resumed run's loss is the whole run's
                logs["train_loss"] = mean_logged_loss(self.state.log_history)
            super().log(logs, start_time)

    return CFTTrainer


def mean_logged_loss(history: list[dict[str, Any]]) -> float | None:
    """Mean training loss over the logged steps (each log averages the steps since the last)."""
    prev = total = steps = 0
    for entry in history:
        if "loss" in entry and "step" in entry:
            span = max(entry["step"] - prev, 1)
            total += entry["loss"] * span
            steps += span
            prev = entry["step"]
    return total / steps if steps else None


def make_callbacks(trainer, every_s: float, save_total_limit: int | None = None) -> list:
    """Checkpoint completion markers (and rotation), resumed-run frequencies, and plain progress lines."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import rotate_checkpoints

    class CheckpointState(TrainerCallback):
        """Writes `cft_state.json` into each checkpoint once every process has saved its part,
        then deletes the checkpoints over `save_total_limit` (never before: see sft_kwargs)."""

        def on_train_begin(self, args, state, control, **kwargs):
            # A resumed run keeps the checkpoint's logging/eval/save frequencies unless recomputed:
            # a changed frequency is not a new run, so the current settings apply.
            state.compute_steps(args, state.max_steps)

        def on_save(self, args, state, control, **kwargs):
            real, slot = trainer.totals()  # an all-reduce: every process has returned from its save
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                ckpt.write_state(folder, {"global_step": state.global_step, "real_tokens": real, "slot_tokens": slot,
                                          "train_seconds": round(trainer.tally.seconds(), 3)})
                rotate_checkpoints(args.output_dir, save_total_limit, best_model_checkpoint=state.best_model_checkpoint)

    class ProgressLines(TrainerCallback):
        """Progress for logs that are not a terminal (CI, Prefect, SLURM): step/total, loss,
        held-out loss, tokens/s, elapsed and ETA, at most every `every_s` seconds and at the
        end. On a terminal, transformers' tqdm bar shows progress instead.

        A step's line is printed when the next step begins, after the step's logging,
        evaluation and checkpoint, so it shows that step's own numbers."""

        def __init__(self) -> None:
            self.last_print = -math.inf
            self.t0 = time.perf_counter()
            self.step0 = 0
            self.latest: dict[str, float] = {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0, self.step0 = time.perf_counter(), state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                self.latest.update({k: logs[k] for k in ("loss", "eval_loss", "tokens_per_s") if k in logs})

        def on_step_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero and (state.global_step > self.step0 or self.latest):
                self._line(state, force=False)

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self._line(state, force=True)

        def _line(self, state, force: bool) -> None:
            now = time.perf_counter()
            if not force and now - self.last_print < every_s:
                return
            self.last_print = now
            done, total = state.global_step, state.max_steps
            elapsed = now - self.t0
            rate = (done - self.step0) / elapsed if elapsed > 0 and done > self.step0 else None
            eta = (total - done) / rate if rate else None
            parts = [f"step {done}/{total} ({100 * done / max(total, 1):.0f}%)"]
            shown = (("loss", "loss {:.4f}"), ("eval_loss", "heldout_loss {:.4f}"), ("tokens_per_s", "{:.0f} tokens/s"))
            parts += [fmt.format(self.latest[key]) for key, fmt in shown if key in self.latest]
            parts += [f"elapsed {_clock(elapsed)}", f"eta {_clock(eta) if eta is not None else '?'}"]
            print(f"{LOG} " + " | ".join(parts), flush=True)

    callbacks = [CheckpointState()]
    if trainer.args.disable_tqdm:
        callbacks.append(ProgressLines())
    return callbacks


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def truncate_rows(dataset, max_length: int):
    """padding_free without packing: TRL leaves truncation to us (it refuses max_length there)."""

    def cut(ex):
        return {"input_ids": ex["input_ids"][:max_length], "labels": ex["labels"][:max_length]}

    return dataset.map(cut).filter(lambda ex: any(v != -100 for v in ex["labels"]))


def build_trainer(cfg: TrainConfig, rows: list[dict[str, Any]], checkpoint_dir: str | Path, num_processes: int,
                  *, eval_rows: list[dict[str, Any]] | None = None, resuming: bool = False, callbacks=None):
    """SFTConfig first (DeepSpeed ZeRO-3 must see it before the model loads), then the trainer,
    which loads the model from `base_model` with TRL's `model_init_kwargs` (float32 by default)."""
    from datasets import Dataset
    from transformers import PrinterCallback

    args = build_sft_config(cfg, checkpoint_dir, num_processes, evaluate=bool(eval_rows), resuming=resuming)
    trainer = make_trainer_class()(
        model=cfg.base_model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=load_tokenizer(cfg),
        peft_config=peft_config(cfg),
        callbacks=callbacks,
    )
    if cfg.sft_value("padding_free") and not cfg.sft_value("packing"):
        max_length = cfg.sft_value("max_length")
        trainer.train_dataset = truncate_rows(trainer.train_dataset, max_length)
        if trainer.eval_dataset is not None:
            trainer.eval_dataset = truncate_rows(trainer.eval_dataset, max_length)
    if args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)  # ProgressLines prints instead
    for callback in make_callbacks(trainer, cfg.progress_every_s, cfg.sft_value("save_total_limit")):
        trainer.add_callback(callback)
    return trainer


def save_final_model(trainer, cfg: TrainConfig, output_dir: Path) -> None:
    """Publish an ordinary HF directory at `output_dir` (atomically; LoRA merged, no peft needed)."""
    from cft.train.export import merge_lora, partial_dir, publish

    acc = trainer.accelerator
    tmp = partial_dir(output_dir)
    adapter = tmp.with_name(tmp.name + "-adapter")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(adapter, ignore_errors=True)
    acc.wait_for_everyone()
    if trainer.is_fsdp_enabled and "FULL_STATE_DICT" not in str(acc.state.fsdp_plugin.state_dict_type):
        acc.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")  # a sharded state dict saves no weights
    # All processes: save_model gathers ZeRO-3 / FSDP shards; the main process writes (the tokenizer too).
    trainer.save_model(str(adapter if cfg.lora else tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        if cfg.lora:
            # Merged from the gathered adapter and the base weights on disk, so the same under DDP, FSDP, ZeRO-3.
            merge_lora(adapter, cfg.base_model, tmp, cfg.sft_value("model_init_kwargs"))
            shutil.rmtree(adapter, ignore_errors=True)
        (tmp / "train_config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
        publish(tmp, output_dir)
    acc.wait_for_everyone()


def write_loss_csv(path: str | Path, log_history: list[dict[str, Any]]) -> None:
    """`step,loss,heldout_loss`: one row per logged step; a cell is empty where that step has no value."""
    by_step: dict[int, dict[str, float]] = {}
    for entry in log_history:
        if "step" not in entry:
            continue
        if "loss" in entry:
            by_step.setdefault(entry["step"], {})["loss"] = entry["loss"]
        if "eval_loss" in entry:
            by_step.setdefault(entry["step"], {})["heldout_loss"] = entry["eval_loss"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "loss", "heldout_loss"])
        for step in sorted(by_step):
            w.writerow([step, by_step[step].get("loss", ""), by_step[step].get("heldout_loss", "")])


def prepare_resume(state, checkpoint_dir: Path, identity: dict[str, Any]) -> Path | None:
    """Check the folder belongs to this run, set incomplete checkpoints aside; the resume point."""
    ckpt.check_identity(checkpoint_dir, identity, write=state.is_main_process)
    if state.is_main_process:
        for moved in ckpt.set_aside_incomplete(checkpoint_dir):
            print(f"{LOG} {moved.name}: a checkpoint whose save was interrupted; set aside, not resumed", flush=True)
    state.wait_for_everyone()
    return ckpt.last_complete(checkpoint_dir)


def train(
    cfg: TrainConfig,
    *,
    train_file: str | Path,
    output_dir: str | Path,
    metrics_path: str | Path,
    plot_path: str | Path,
    eval_file: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Train (resuming from the last complete checkpoint), publish the model, write metrics + loss CSV."""
    import datasets
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    datasets.disable_progress_bars()
    output_dir = Path(output_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else ckpt.default_checkpoint_dir(output_dir)
    # accelerate's CPU flag comes from the launcher's environment; PartialState only reads an argument.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    if cfg.sft_value("padding_free"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(
                "train.sft.padding_free needs flash attention, which needs CUDA; on the CPU use "
                "train.sft.train_sampling_strategy: group_by_length or train.sft.packing"
            )

    rows = load_rows(train_file, cfg.mode)
    eval_rows = load_rows(eval_file, cfg.mode, required=False) if eval_file and Path(eval_file).exists() else []
    if eval_file and not eval_rows and state.is_main_process:
        print(f"{LOG} no held-out rows for mode '{cfg.mode}' in {eval_file}: training without held-out loss", flush=True)
    resume = prepare_resume(state, checkpoint_dir, ckpt.run_identity(cfg, train_file, eval_file if eval_rows else None))
    finished = resume is not None and ckpt.is_finished(resume)
    if finished:
        # Resuming a finished run would train an extra step (transformers re-enters the last
        # epoch): re-export its last checkpoint and report the run's own numbers instead.
        if state.is_main_process:
            print(f"{LOG} {resume}: the end of a finished run; nothing to train, re-exporting it", flush=True)
            metrics, history = finished_run(cfg, resume, checkpoint_dir, output_dir, n_train=len(rows),
                                            n_heldout=len(eval_rows), num_processes=state.num_processes)
            write_json(metrics_path, metrics)
            write_loss_csv(plot_path, history)
        state.wait_for_everyone()
        return load_metrics(metrics_path)
    previous_max_params = os.environ.get("MLFLOW_MAX_LOG_PARAMS")
    if resume is not None:
        # The run's trainer params were logged by its first segment, and MLflow refuses a
        # changed value (a new process count changes gradient_accumulation_steps). For this
        # trainer only (its MLflow callback reads it when training begins): restored below.
        os.environ["MLFLOW_MAX_LOG_PARAMS"] = "0"
        if state.is_main_process:
            print(f"{LOG} {resume}: resuming", flush=True)
    try:
        trainer = build_trainer(cfg, rows, checkpoint_dir, state.num_processes, eval_rows=eval_rows,
                                resuming=resume is not None, callbacks=callbacks)
        if resume is not None:
            trainer.restore_counts(ckpt.read_state(resume))
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        if previous_max_params is None:
            os.environ.pop("MLFLOW_MAX_LOG_PARAMS", None)
        else:
            os.environ["MLFLOW_MAX_LOG_PARAMS"] = previous_max_params
    real, slot = trainer.totals()
    seconds = trainer.tally.seconds()
    save_final_model(trainer, cfg, output_dir)

    history = trainer.state.log_history
    metrics = run_metrics(
        cfg, history, steps=trainer.state.global_step, real=real, slot=slot, seconds=seconds,
        n_train=len(trainer.train_dataset), n_heldout=len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
        num_processes=state.num_processes, resumed_from=resume,
    )
    if state.is_main_process:
        write_json(checkpoint_dir / ckpt.RESULT_FILE, metrics)
        write_json(metrics_path, metrics)
        write_loss_csv(plot_path, history)
    state.wait_for_everyone()
    return metrics


def run_metrics(cfg: TrainConfig, history: list[dict[str, Any]], *, steps: int, real: int, slot: int, seconds: float,
                n_train: int, n_heldout: int, num_processes: int, resumed_from: Path | None) -> dict[str, Any]:
    """metrics/train.json: the whole run's, however many segments it took."""
    losses = [e["loss"] for e in history if "loss" in e]
    evals = [e for e in history if "eval_loss" in e]
    return {
        "mode": cfg.mode,
        "n_train": n_train,
        "n_heldout": n_heldout,
        "steps": steps,
        "final_loss": losses[-1] if losses else None,
        "mean_loss": mean_logged_loss(history),
        "heldout_loss_start": evals[0]["eval_loss"] if evals and evals[0]["step"] == 0 else None,
        "heldout_loss_final": evals[-1]["eval_loss"] if evals else None,
        "heldout_loss_best": min(e["eval_loss"] for e in evals) if evals else None,
        "runtime_s": round(seconds, 3),  # training time over every resumed segment
        "tokens_per_s": round(real / seconds, 2) if real and seconds > 0 else None,
        "padding_fraction": round(1 - real / slot, 4) if slot else None,
        "train_tokens": real,
        "num_processes": num_processes,
        "gradient_accumulation_steps": cfg.accumulation_steps(num_processes),
        "resumed_from": str(resumed_from) if resumed_from else None,
        "finished_before": False,  # finished_run's metrics say True
        "log_history": history,  # the trainer's log (losses, held-out losses); `dvc metrics` skips lists
    }


def finished_run(cfg: TrainConfig, last: Path, checkpoint_dir: Path, output_dir: Path, *, n_train: int,
                 n_heldout: int, num_processes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Publish a finished run's last checkpoint as the output; its metrics and loss history."""
    from cft.train.export import export_checkpoint

    export_checkpoint(last, output_dir, base_model=cfg.base_model, model_init_kwargs=cfg.sft_value("model_init_kwargs"),
                      extra_files={"train_config.json": json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n"})
    trainer_state = json.loads((last / ckpt.TRAINER_STATE).read_text(encoding="utf-8"))
    history = trainer_state.get("log_history", [])
    stored = checkpoint_dir / ckpt.RESULT_FILE
    if stored.exists():  # written when the run finished
        metrics = load_metrics(stored)
    else:  # killed between its last checkpoint and its end
        counts = ckpt.read_state(last)
        metrics = run_metrics(cfg, history, steps=trainer_state["global_step"], real=counts["real_tokens"],
                              slot=counts["slot_tokens"], seconds=counts["train_seconds"], n_train=n_train,
                              n_heldout=n_heldout, num_processes=num_processes, resumed_from=None)
    return {**metrics, "resumed_from": str(last), "finished_before": True}, history


def load_metrics(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    cfg = load_config(a.config)
    train(
        cfg,
        train_file=a.train_file,
        eval_file=a.eval_file,
        output_dir=a.output_dir,
        metrics_path=a.metrics,
        plot_path=a.plot,
        checkpoint_dir=a.checkpoint_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
