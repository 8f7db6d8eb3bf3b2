"""The `train:` section of params.yaml as a typed model.

cft's own knobs are typed here (mode, base model, global batch, LoRA, best checkpoint,
launcher). The trainer's settings go through unchanged under TRL's own names in `sft:`
(`learning_rate`, `lr_scheduler_type`, `warmup_steps`, `num_train_epochs`, `max_length`,
`bf16`, `activation_checkpointing`, ...): a key SFTConfig does not have, or a value of the
wrong basic type, is an error when params load; SFTConfig validates the rest when training
starts. A setting params.yaml does not give keeps TRL's default: there is one per knob.

Gradient accumulation is derived, never configured: the global batch stays what params
say for any number of processes.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, create_model, field_validator, model_serializer, model_validator

from cft.schema import StrictModel
from cft.train.sft_fields import MISSING, sft_fields

Mode = Literal["cft", "sft_noisy", "sft_verified", "sft_teacher"]

# SFTConfig fields that cft sets itself: each maps to where the setting lives instead.
MANAGED_SFT_KEYS = {
    "output_dir": "the checkpoint folder is chosen by `cft train` (models/checkpoints/<out>-<id>)",
    "gradient_accumulation_steps": "derived from train.global_batch_size, the per-device batch and the process count",
    "report_to": "MLflow is wired by the train stage (register.tracking_uri)",
    "run_name": "the train stage names its MLflow run",
    "resume_from_checkpoint": "`cft train` resumes from the last complete checkpoint by itself",
    "deepspeed": "set DeepSpeed in the accelerate config (train.accelerate_config)",
    "fsdp": "set FSDP in the accelerate config (train.accelerate_config)",
    "fsdp_config": "set FSDP in the accelerate config (train.accelerate_config)",
    "use_cpu": "set use_cpu in the accelerate config (train.accelerate_config)",
    "local_rank": "set by the launcher",
}

# Settings that do not change what is learned (logging, saving, evaluation, memory/speed
# trade-offs, the per-device split of a fixed global batch): changing them between a kill
# and its restart resumes the same run. Everything else decides the run's identity.
RESULT_NEUTRAL_SFT_KEYS = frozenset({
    "per_device_train_batch_size", "per_device_eval_batch_size", "auto_find_batch_size",
    "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
    "log_level", "log_level_replica", "disable_tqdm", "include_num_input_tokens_seen", "skip_memory_metrics",
    "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id",
    "eval_strategy", "eval_steps", "eval_delay", "eval_on_start", "prediction_loss_only", "eval_do_concat_batches",
    "eval_use_gather_object", "eval_accumulation_steps", "include_for_metrics", "batch_eval_metrics",
    "bf16_full_eval", "fp16_full_eval", "eval_packing",
    "save_strategy", "save_steps", "save_total_limit", "save_only_model", "save_on_each_node", "enable_jit_checkpoint",
    "push_to_hub", "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision",
    "activation_checkpointing", "activation_checkpointing_kwargs", "gradient_checkpointing",
    "gradient_checkpointing_kwargs", "activation_offloading", "torch_empty_cache_steps", "torch_compile",
    "torch_compile_backend", "torch_compile_mode",
    "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
    "dataloader_multiprocessing_context", "dataset_num_proc",
    "ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_static_graph", "ddp_backend",
    "ddp_timeout", "do_train", "do_eval", "do_predict", "debug",
})

# cft knobs that do not decide identity either: where and how the run is launched and scored.
RESULT_NEUTRAL_KEYS = frozenset({"accelerate_config", "num_processes", "best_checkpoint", "progress_every_s"})


class _SFTSettingsBase(StrictModel):
    """Only the keys params.yaml sets are kept (and dumped): the rest stay TRL's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), arbitrary_types_allowed=True)

    @model_serializer(mode="wrap")
    def _only_set(self, handler):
        data = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}

    @field_validator(*MANAGED_SFT_KEYS, mode="before", check_fields=False)
    @classmethod
    def _managed(cls, value, info):
        raise ValueError(f"set by cft: {MANAGED_SFT_KEYS[info.field_name]}")

    def as_kwargs(self) -> dict[str, Any]:
        """The settings params.yaml gives, as SFTConfig keyword arguments."""
        return {k: getattr(self, k) for k in sorted(self.model_fields_set)}


@functools.cache
def sft_settings_model() -> type[_SFTSettingsBase]:
    """A model with one optional field per SFTConfig field (TRL's names; extra keys forbidden)."""
    fields = {name: (f.type, None) for name, f in sft_fields().items()}
    return create_model("SFTSettings", __base__=_SFTSettingsBase, **fields)


SFTSettings = sft_settings_model()


class LoraConfig(StrictModel):
    """LoRA adapters (peft); merged into the base weights for the output model."""

    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1
    )


class BestCheckpointConfig(StrictModel):
    """Score every saved checkpoint on a validation slice and keep the best (paper: MATH-500).

    Generation runs on the evaluate stage's backend (`evaluate.backend` and its options),
    with its system prompt, greedy.
    """

    benchmark: str = Field("math-500", description="a shipped benchmark name, or the source name of `path`")
    path: str | None = Field(None, description="any benchmark JSONL instead of the shipped file")
    format: str | None = Field(None, description="adapter of `path` (see cft.data.adapters); default: jsonl")
    question_field: str | None = None
    answer_field: str | None = None
    limit: int = Field(100, gt=0, description="first N rows of the validation set")
    max_new_tokens: int = Field(512, gt=0)


class TrainConfig(StrictModel):
    """cft's training knobs; `sft` holds TRL SFTConfig settings under their own names."""

    base_model: str = Field("models/tiny", min_length=1, description="hub id or local HF directory")
    modes: list[Mode] = Field(default_factory=lambda: ["cft"], min_length=1,
                              description="the modes the pipeline trains side by side (dvc.yaml: one `cft train "
                                          "--mode` each); `cft train` alone trains the first")
    global_batch_size: int = Field(8, gt=0, description="examples per optimizer step, for any process count")
    lora: LoraConfig | None = None
    best_checkpoint: BestCheckpointConfig | None = None
    accelerate_config: str = "configs/accelerate/cpu.yaml"
    num_processes: int | None = Field(None, gt=0, description="overrides the accelerate config's num_processes")
    progress_every_s: float = Field(10.0, gt=0, description="a progress line this often when output is no terminal")
    sft: SFTSettings = Field(default_factory=SFTSettings)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if len(set(self.modes)) != len(self.modes):
            raise ValueError(f"train.modes lists a mode twice: {self.modes}")
        per_device = self.sft_value("per_device_train_batch_size")
        if self.global_batch_size % per_device:
            raise ValueError(
                f"train.global_batch_size ({self.global_batch_size}) must be divisible by "
                f"train.sft.per_device_train_batch_size ({per_device})"
            )
        if self.num_processes is not None:
            self.accumulation_steps(self.num_processes)
        attn = (self.sft_value("model_init_kwargs") or {}).get("attn_implementation") or ""
        if self.sft_value("padding_free") and not str(attn).startswith(("flash_attention", "kernels-")):
            raise ValueError(
                "train.sft.padding_free needs a flash-attention kernel: set train.sft.model_init_kwargs."
                "attn_implementation to flash_attention_2 (GPUs only); on the CPU use "
                "train.sft.train_sampling_strategy: group_by_length or train.sft.packing instead"
            )
        if self.best_checkpoint is not None and self.sft_value("save_total_limit") is not None:
            raise ValueError(
                "train.best_checkpoint scores every saved checkpoint, but train.sft.save_total_limit "
                f"({self.sft_value('save_total_limit')}) deletes older ones first: set it to null"
            )
        return self

    @property
    def mode(self) -> Mode:
        """The mode this config trains: the first of `modes` (`cft train --mode` narrows the list)."""
        return self.modes[0]

    def for_mode(self, mode: str) -> TrainConfig:
        """This config training `mode` alone."""
        if mode not in get_args(Mode):
            raise ValueError(f"mode {mode!r}: not a training mode ({', '.join(get_args(Mode))})")
        return self.model_copy(update={"modes": [mode]})

    def sft_value(self, name: str) -> Any:
        """The SFTConfig setting `name`: from params.yaml, else TRL's default."""
        if name in self.sft.model_fields_set:
            return getattr(self.sft, name)
        default = sft_fields()[name].default
        return None if default is MISSING else default

    def accumulation_steps(self, num_processes: int) -> int:
        """Gradient accumulation that keeps the global batch for `num_processes` processes."""
        if num_processes < 1:
            raise ValueError(f"num_processes must be >= 1, got {num_processes}")
        per_device = self.sft_value("per_device_train_batch_size")
        per_step = per_device * num_processes
        if self.global_batch_size % per_step:
            raise ValueError(
                f"train.global_batch_size ({self.global_batch_size}) must be divisible by "
                f"train.sft.per_device_train_batch_size ({per_device}) x num_processes ({num_processes}) = {per_step}"
            )
        return self.global_batch_size // per_step

    def identity(self) -> dict[str, Any]:
        """What decides the trained weights (with the data): the checkpoint folder's key and the
        resume check. Launch, logging, saving and scoring settings are left out."""
        data = self.model_dump(mode="json")
        data = {k: v for k, v in data.items() if k not in RESULT_NEUTRAL_KEYS}
        data["sft"] = {k: v for k, v in data["sft"].items() if k not in RESULT_NEUTRAL_SFT_KEYS}
        return data
