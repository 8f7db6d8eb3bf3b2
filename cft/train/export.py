"""The output model folder: an ordinary Hugging Face directory, published atomically.

A folder is written beside the output (`.<name>.partial`) and renamed over it only when
complete, so a kill during the final save never leaves a half model where a loadable one
is expected. LoRA runs are exported merged (base weights + adapter), so loading the
output needs no peft.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

# Trainer state that a from_pretrained directory does not need.
TRAINING_STATE = ("optimizer", "scheduler", "rng_state", "trainer_state", "training_args", "global_step",
                  "zero_to_fp32", "latest", "pytorch_model_fsdp", "cft_state", "cft_score")


def partial_dir(dest: str | Path) -> Path:
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.partial")


def publish(tmp: Path, dest: Path) -> None:
    """Replace `dest` by `tmp` (both on one filesystem): the old folder goes only after."""
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def copy_model_files(checkpoint: Path, dest: Path) -> None:
    """Weights, config and tokenizer of a full-weight checkpoint into `dest` (a fresh folder)."""
    if not has_weights(checkpoint):
        raise FileNotFoundError(
            f"{checkpoint}: no model weights (an FSDP SHARDED_STATE_DICT checkpoint?): use "
            "fsdp_state_dict_type: FULL_STATE_DICT in the accelerate config"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for f in checkpoint.iterdir():
        if f.is_file() and not f.name.startswith(TRAINING_STATE):
            shutil.copy2(f, dest / f.name)


def merge_lora(adapter_dir: Path, base_model: str, dest: Path, model_init_kwargs: dict[str, Any] | None = None) -> None:
    """Base model + the LoRA adapter in `adapter_dir`, merged, saved to `dest` with the tokenizer.

    The base is loaded as the trainer loaded it (TRL's `model_init_kwargs`, float32 unless
    they say otherwise) on the CPU; the adapter is the gathered one `save_model` wrote, so
    this works the same after DDP, FSDP or ZeRO-3 training.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(model_init_kwargs or {})
    kwargs.pop("device_map", None)
    dtype = kwargs.pop("dtype", "float32")
    dtype = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype, **kwargs)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(dest)
    tokenizer_source = adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else base_model
    AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(dest)


def export_checkpoint(checkpoint: Path, dest: Path, *, base_model: str,
                      model_init_kwargs: dict[str, Any] | None = None, extra_files: dict[str, str] | None = None) -> None:
    """Publish a checkpoint as a plain model folder at `dest` (merged when it holds an adapter)."""
    tmp = partial_dir(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    if is_adapter(checkpoint):
        merge_lora(checkpoint, base_model, tmp, model_init_kwargs)
    else:
        copy_model_files(checkpoint, tmp)
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text, encoding="utf-8")
    publish(tmp, dest)
