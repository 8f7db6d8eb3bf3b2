"""Typed models of params.yaml: one section per stage, one clear error per bad value.

Every stage validates the whole file, so a typo anywhere stops the pipeline before
any work is done, with a message that names the key and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from cft.critique.templates import COT_SYSTEM_PROMPT
from cft.schema import StrictModel
from cft.train.config import TrainConfig

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ConfigError(ValueError):
    """A params.yaml problem; the message names the file and key."""


class TinyModelConfig(StrictModel):
    """The embedded default model, built locally from a config (no downloads)."""

    vocab_size: Annotated[int, Field(ge=300)] = 4096
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 2
    num_heads: PositiveInt = 4
    intermediate_size: PositiveInt = 384
    max_position_embeddings: PositiveInt = 2048
    tokenizer_corpus: list[str] = Field(min_length=1)
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        return self


class ProblemSource(StrictModel):
    """One problem file and the adapter that reads it (see cft.data.adapters)."""

    path: str
    format: str
    limit: PositiveInt | None = None
    question_field: str | None = None
    answer_field: str | None = None
    solution_field: str | None = None


class IngestConfig(StrictModel):
    sources: list[ProblemSource] = Field(min_length=1)


class SamplingConfig(StrictModel):
    temperature: Annotated[float, Field(ge=0.0)] = 0.7
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    max_new_tokens: PositiveInt = 256
    seed: int = 0


EnvVarName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Prices(StrictModel):
    """USD per 1M tokens of the backend's model (any other key is refused)."""

    prompt: Annotated[float, Field(ge=0.0)]
    completion: Annotated[float, Field(ge=0.0)]


class BackendConfig(StrictModel):
    """Where a model runs. Only the options of the chosen backend are passed on.

    The API key is never in params: `api_key_env` names the environment variable
    that holds it (a value that is not a variable name is refused).
    """

    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    # transformers and vllm: the weights' dtype ("auto": the checkpoint's; fp32 on the CPU)
    # and whether to run code shipped with the model
    dtype: str = "auto"
    trust_remote_code: bool = False
    # transformers
    device: str = "cpu"
    batch_size: PositiveInt = 16
    # vllm (offline batch, in one worker process per model and stage; `python` may be
    # another environment's interpreter). Prompts longer than max_model_len fail alone.
    tensor_parallel_size: PositiveInt = 1
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    max_model_len: PositiveInt | None = None  # None: the model's own context length
    enforce_eager: bool = False
    engine_args: dict[str, Any] = Field(default_factory=dict)  # any other vllm.LLM argument, by vLLM's name
    python: str | None = None
    # openai-compatible endpoints (OpenAI, `vllm serve`, others); retries, backoff and
    # Retry-After are the openai client's own
    base_url: str | None = None
    api_key_env: EnvVarName | None = "OPENAI_API_KEY"
    timeout_s: Annotated[float, Field(gt=0)] = 120.0
    max_retries: Annotated[int, Field(ge=0)] = 6
    concurrency: PositiveInt = 16
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"  # newer OpenAI models: the latter
    prices: Prices | None = None  # USD per 1M tokens: {prompt: .., completion: ..}

    @model_validator(mode="after")
    def _engine_args_not_typed_ones(self):
        typed = {"model", "dtype", "trust_remote_code", "tensor_parallel_size", "gpu_memory_utilization",
                 "max_model_len", "enforce_eager"}
        clash = sorted(typed & set(self.engine_args))
        if clash:
            raise ValueError(f"engine_args: set {', '.join(clash)} as its own key, not in engine_args")
        return self

    def generator_options(self) -> dict[str, Any]:
        if self.backend == "transformers":
            return {"device": self.device, "batch_size": self.batch_size, "dtype": self.dtype,
                    "trust_remote_code": self.trust_remote_code}
        if self.backend == "vllm":
            opts = {"tensor_parallel_size": self.tensor_parallel_size, "gpu_memory_utilization": self.gpu_memory_utilization,
                    "dtype": self.dtype, "trust_remote_code": self.trust_remote_code, "max_model_len": self.max_model_len,
                    "enforce_eager": self.enforce_eager, "engine_args": self.engine_args}
            return opts | ({"python": self.python} if self.python else {})
        return {
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "concurrency": self.concurrency,
            "max_tokens_param": self.max_tokens_param,
            "prices": self.prices.model_dump() if self.prices else None,
        }


class StudentModel(BackendConfig):
    """A model that answers problems; its responses are what the teacher critiques.

    `kind: reference` is the offline stand-in of the embedded default: the problem's reference
    solution, with the final answer broken in an `error_rate` share of rows (no model runs).
    """

    kind: Literal["llm", "reference"] = "llm"
    name_or_path: str = "reference-student"
    samples: PositiveInt = 1
    sampling: SamplingConfig = SamplingConfig()
    error_rate: Fraction = 0.5  # reference only

    @model_validator(mode="after")
    def _llm_needs_model(self):
        if self.kind == "llm" and "name_or_path" not in self.model_fields_set:
            raise ValueError("an llm student needs `name_or_path` (a hub id, local path or API model name)")
        return self


class RespondConfig(StrictModel):
    models: list[StudentModel] = Field(min_length=1)
    system_prompt: str = COT_SYSTEM_PROMPT


class TeacherConfig(BackendConfig):
    """A critic. `reference` grades final answers offline; `llm` asks a teacher model."""

    kind: Literal["reference", "llm"] = "llm"
    model: str | None = None
    prompt_version: str = "webinstruct-cft-v1"
    sampling: SamplingConfig | None = None  # default: the sampling the prompt's recipe used

    @model_validator(mode="after")
    def _llm_needs_model(self):
        if self.kind == "llm" and not self.model:
            raise ValueError("an llm teacher needs `model` (a hub id, local path or API model name)")
        if self.kind == "llm":
            from cft.critique.teachers import get_template

            get_template(self.prompt_version)
        return self


class CritiqueImport(StrictModel):
    """An existing critique dataset brought in with no generation (Alpaca or messages)."""

    path: str
    format: Literal["auto", "messages", "alpaca"] = "auto"


class CritiqueConfig(StrictModel):
    teachers: list[TeacherConfig] = Field(default_factory=lambda: [TeacherConfig(kind="reference")])
    imports: list[CritiqueImport] = Field(default_factory=list)


class ValidateConfig(StrictModel):
    min_chars: Annotated[int, Field(ge=0)] = 20
    max_chars: PositiveInt = 20000
    conclusion_policy: Literal["normalize", "reject"] = "normalize"
    consistency_policy: Literal["drop", "keep", "tag"] = "tag"
    min_pass_rate: Fraction = 0.9

    @model_validator(mode="after")
    def _bounds_ordered(self):
        if self.min_chars >= self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must be below max_chars ({self.max_chars})")
        return self


class BuildConfig(StrictModel):
    seed: int = 0
    # Questions set aside for every mode (held-out loss, critic evaluation); by question hash.
    heldout_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1


class BenchmarkConfig(StrictModel):
    name: str
    limit: PositiveInt | None = None
    path: str | None = None  # defaults to the shipped file for the seven paper benchmarks
    format: str | None = None
    question_field: str | None = None
    answer_field: str | None = None


class CriticEvalConfig(StrictModel):
    """Each evaluated model critiques solutions whose correctness is known, with the CFT prompt:
    held-out (question, response) pairs from the build stage, and its own benchmark answers
    (self-critique). `limit` rows of each; 0 turns it off."""

    limit: Annotated[int, Field(ge=0)] = 100
    max_new_tokens: PositiveInt = 1024


class EvaluateConfig(BackendConfig):
    """The paper's protocol by default: zero-shot, greedy, boxed answers, 2048 new tokens."""

    benchmarks: list[BenchmarkConfig] = Field(min_length=1)
    system_prompt: str = COT_SYSTEM_PROMPT
    max_new_tokens: PositiveInt = 2048
    samples: PositiveInt = 1  # n per question; with n > 1, pass@k and maj@n are reported
    temperature: Annotated[float, Field(ge=0.0)] = 0.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    seed: int = 0
    pass_at_k: list[PositiveInt] = Field(default_factory=list)
    grade_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    critic: CriticEvalConfig = CriticEvalConfig()

    @model_validator(mode="before")
    @classmethod
    def _baselines_moved(cls, data):
        if isinstance(data, dict) and "baselines" in data:
            raise ValueError("`baselines` moved out of `evaluate` to the top level of params.yaml")
        return data

    @model_validator(mode="after")
    def _sampling_consistent(self):
        if self.samples > 1 and self.temperature == 0.0:
            raise ValueError("samples > 1 needs temperature > 0 (greedy samples are identical)")
        if any(k > self.samples for k in self.pass_at_k):
            raise ValueError(f"pass_at_k values must be at most samples ({self.samples})")
        return self


class RegisterConfig(StrictModel):
    tracking_uri: str = "sqlite:///mlruns.db"
    artifact_location: str = "mlartifacts"
    experiment: str = "cft"
    model_name: str = "cft-model"
    # The gate: a challenger becomes champion when it beats the champion on `metric` (a key of
    # the evaluation metrics; nested keys dotted, e.g. benchmarks.math-500.accuracy or
    # critic.balanced_accuracy) by more than `promotion_margin`, in the direction given.
    metric: str = Field("average", min_length=1)
    higher_is_better: bool = True
    promotion_margin: Annotated[float, Field(ge=0.0)] = 0.0
    # copy: the checkpoint is an MLflow artifact (fine for small models); reference: MLflow
    # stores a pointer to the DVC-tracked checkpoint, resolved at load (7B: no second copy)
    log_weights: Literal["copy", "reference"] = "copy"


class OrchestrateConfig(StrictModel):
    """Prefect: schedule, work pools and retries. No stage depends on it (DVC ignores it)."""

    schedule_cron: str | None = None  # e.g. "0 3 * * *": nightly, retrain when the training data changed
    timezone: str = "UTC"
    work_pool: str | None = None  # None: the flow runs in-process
    gpu_work_pool: str | None = None  # when set, GPU stages run on this pool's workers
    # Where workers get the flows' code: a git URL (https://, ssh, file:///...cft.git) or a
    # remote storage URL Prefect reads (s3://, gs://, az://). None: the project directory
    # itself (workers on the deploying host, or a shared filesystem at the same path).
    code_source: str | None = None
    code_branch: str | None = None  # git branch or tag of code_source; None: its default branch
    workspace: str | None = None  # the project directory on work_pool's workers; None: where deploy ran
    gpu_workspace: str | None = None  # the project directory on gpu_work_pool's workers; None: `workspace`
    gpu_stages: list[str] = Field(default_factory=lambda: ["respond", "critique", "train", "evaluate", "baseline"])
    task_retries: Annotated[int, Field(ge=0)] = 2
    retry_delay_s: Annotated[float, Field(ge=0)] = 10.0
    push: bool = True  # push every new artifact to the DVC remote after a successful run


class Params(StrictModel):
    tiny_model: TinyModelConfig
    ingest: IngestConfig
    respond: RespondConfig
    critique: CritiqueConfig = CritiqueConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    build: BuildConfig = BuildConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig
    # Models evaluated beside the trained ones, by report name: the base model, any other run.
    # Its own section: no `evaluate@<mode>` stage depends on it (dvc.yaml), so adding one
    # evaluates only that model.
    baselines: dict[str, str] = Field(default_factory=dict)
    register_: RegisterConfig = Field(default=RegisterConfig(), alias="register")
    orchestrate: OrchestrateConfig = OrchestrateConfig()


def _format_error(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = err.get("input")
        shown = "" if err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{path}: {key}: {msg}{shown}")
    return "\n".join(lines)


def parse_params(data: Any, path: str | Path = "params.yaml") -> Params:
    """Validate an already-loaded params mapping."""
    path = Path(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections at the top level")
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raise ConfigError naming every bad key."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(data, path)
