"""The generation interface every backend implements.

A prompt is a chat (a list of {"role", "content"} messages); the backend applies the
model's chat template. Greedy decoding is `temperature == 0`.
"""

from __future__ import annotations

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
    text: str
    prompt_tokens: int
    completion_tokens: int


class Generator(Protocol):
    name: str

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        """One generation per chat, in order."""
        ...


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
