"""The `train:` section of params.yaml as a typed model.

Embedded defaults suit a tiny CPU run (fp32, no gradient checkpointing, length-grouped
batches: DESIGN.md section 6). Gradient accumulation is derived, never configured: the
global batch stays what params say for any number of processes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cft.schema import StrictModel

Mode = Literal["cft", "sft_noisy", "sft_verified", "sft_teacher"]


class LoraConfig(StrictModel):
    """LoRA adapters (peft); merged into the base weights before the final save."""

    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1
    )


class BestCheckpointConfig(StrictModel):
    """Score every saved checkpoint on a validation slice and keep the best (paper: MATH-500)."""

    benchmark: str = Field("math-500", description="a shipped benchmark name, or the source name of `path`")
    path: str | None = Field(None, description="any benchmark JSONL instead of the shipped file")
    format: str | None = Field(None, description="adapter of `path` (see cft.data.adapters); default: jsonl")
    question_field: str | None = None
    answer_field: str | None = None
    limit: int = Field(100, gt=0, description="first N rows of the validation set")
    max_new_tokens: int = Field(512, gt=0)


class TrainConfig(StrictModel):
    """Every training knob. `accumulation_steps(n)` derives gradient accumulation."""

    base_model: str = Field("models/tiny", min_length=1, description="hub id or local HF directory")
    mode: Mode = "cft"
    max_length: int = Field(512, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="overrides epochs when set")
    global_batch_size: int = Field(8, gt=0)
    per_device_batch_size: int = Field(8, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    # Length-grouped batches: ~1.35x faster than random padded batches on the CPU (DESIGN §6).
    group_by_length: bool = True
    # TRL best-fit-decreasing packing: rows flattened into max_length blocks with restarting
    # position ids (works with sdpa on the CPU, fast with flash attention on GPUs).
    packing: bool = False
    # Flatten each batch without packing: needs a flash-attention kernel, so GPUs only.
    padding_free: bool = False
    attn_implementation: str | None = Field(None, description="e.g. sdpa, flash_attention_2; None = model default")
    lora: LoraConfig | None = None
    save_steps: int = Field(50, gt=0)
    save_total_limit: int | None = Field(3, gt=0)
    logging_steps: int = Field(1, gt=0)
    seed: int = 0
    accelerate_config: str = "configs/accelerate/cpu.yaml"
    num_processes: int | None = Field(None, gt=0, description="overrides the accelerate config's num_processes")
    best_checkpoint: BestCheckpointConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.global_batch_size % self.per_device_batch_size:
            raise ValueError(
                f"train.global_batch_size ({self.global_batch_size}) must be divisible by "
                f"train.per_device_batch_size ({self.per_device_batch_size})"
            )
        if self.num_processes is not None:
            self.accumulation_steps(self.num_processes)
        if self.padding_free and not (self.attn_implementation or "").startswith(("flash_attention", "kernels-")):
            raise ValueError(
                "train.padding_free needs a flash-attention kernel: set train.attn_implementation to "
                "flash_attention_2 (GPUs only); on the CPU use train.group_by_length or train.packing instead"
            )
        if self.best_checkpoint is not None and self.save_total_limit is not None:
            raise ValueError(
                "train.best_checkpoint scores every saved checkpoint, but train.save_total_limit "
                f"({self.save_total_limit}) deletes older ones first: set train.save_total_limit to null"
            )
        return self

    def accumulation_steps(self, num_processes: int) -> int:
        """Gradient accumulation that keeps the global batch for `num_processes` processes."""
        if num_processes < 1:
            raise ValueError(f"num_processes must be >= 1, got {num_processes}")
        per_step = self.per_device_batch_size * num_processes
        if self.global_batch_size % per_step:
            raise ValueError(
                f"train.global_batch_size ({self.global_batch_size}) must be divisible by "
                f"train.per_device_batch_size ({self.per_device_batch_size}) x num_processes ({num_processes}) "
                f"= {per_step}"
            )
        return self.global_batch_size // per_step
