"""The generation interface every backend implements.

A prompt is a chat (a list of {"role", "content"} messages); the backend applies the
model's chat template. Greedy decoding is `temperature == 0`.

A backend may hold an engine (a GPU model, a vLLM worker process, a connection
pool): build it once per model and stage, and `close()` it (or use `with`) before the
next model needs the GPUs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Protocol

Chat = list[dict[str, str]]


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Generation:
    """One answer. `empty`: the model returned no text at all (a content filter, a refusal
    without content); the row is kept so validation can quarantine it, not asked again."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    empty: bool = False


class GenerationError(Exception):
    """One row failed (the others go on); `reason` is a short machine-readable cause."""

    reason = "error"


class PromptTooLong(GenerationError):
    """The prompt alone does not fit the model's context (`max_model_len`)."""

    reason = "prompt_too_long"


class Generator(Protocol):
    name: str

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        """One generation per chat, in order."""
        ...

    def close(self) -> None:
        """Release the model, worker process or connections; safe to call twice."""
        ...


class StreamingGenerator:
    """Base of a backend whose results arrive as they finish: the subclass defines
    `generate_iter(chats, sampling)` yielding (index, Generation | GenerationError), and
    `generate` collects them."""

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        """One generation per chat, in order; raises the first row failure after all finished."""
        results: list[Generation | Exception | None] = [None] * len(chats)
        for i, result in self.generate_iter(chats, sampling):
            results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results  # type: ignore[return-value]


def iter_generations(generator: Generator, chats: list[Chat], sampling: Sampling, *,
                     chunk_size: int = 64) -> Iterator[tuple[int, Generation | Exception]]:
    """(index, result) as results finish: the backend's own `generate_iter` if it has one,
    else `generate` on chunks (so even a batch backend loses at most one chunk to a kill)."""
    streaming = getattr(generator, "generate_iter", None)
    if streaming is not None:
        yield from streaming(chats, sampling)
        return
    for start in range(0, len(chats), chunk_size):
        chunk = chats[start : start + chunk_size]
        try:
            outs = generator.generate(chunk, sampling)
        except Exception as exc:  # noqa: BLE001 - recorded per row as a failure
            outs = [exc] * len(chunk)
        yield from enumerate(outs, start=start)


def get_generator(backend: str, model: str, **options) -> Generator:
    """Build a backend by name; heavy imports happen only for the backend chosen."""
    if backend == "transformers":
        from cft.generate.transformers_backend import TransformersGenerator

        return TransformersGenerator(model, **options)
    if backend == "openai":
        from cft.generate.openai_backend import OpenAIGenerator

        return OpenAIGenerator(model, **options)
    if backend == "vllm":
        from cft.generate.vllm_backend import VLLMGenerator

        return VLLMGenerator(model, **options)
    raise ValueError(f"unknown generation backend '{backend}' (known: openai, transformers, vllm)")
