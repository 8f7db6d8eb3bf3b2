"""vLLM on a real GPU: the worker subprocess generates with the real engine.

Skipped unless vllm imports (here, or in the interpreter named by
CFT_VLLM_PYTHON, for vllm kept in its own environment). The model is
CFT_VLLM_TEST_MODEL (a local folder or a cached hub id), else a tiny Llama built
on the spot (random weights: checks plumbing, not quality).
"""

import importlib.util
import os
import sys

import pytest

from cft.generate import Sampling
from cft.generate.vllm_backend import VLLMGenerator

PYTHON = os.environ.get("CFT_VLLM_PYTHON", sys.executable)
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(PYTHON == sys.executable and importlib.util.find_spec("vllm") is None,
                       reason="vllm is not importable"),
]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    if os.environ.get("CFT_VLLM_TEST_MODEL"):
        return os.environ["CFT_VLLM_TEST_MODEL"]
    from cft.model.tiny import build_tiny_model

    corpus = [f"Question: what is {i} plus {i}? Solution: {2 * i}. Conclusion: right [END]" for i in range(200)]
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny"), corpus_texts=corpus, vocab_size=512))


def test_vllm_generates_every_row(model_path):
    gen = VLLMGenerator(model_path, python=PYTHON, gpu_memory_utilization=0.3, chunk_size=8,
                        engine_options={"max_model_len": 512, "enforce_eager": True})
    chats = [[{"role": "user", "content": f"What is {i} plus {i}?"}] for i in range(20)]
    streamed = list(gen.generate_iter(chats, Sampling(temperature=0.0, max_new_tokens=16)))
    assert sorted(i for i, _ in streamed) == list(range(20))
    assert all(g.prompt_tokens > 0 and 0 < g.completion_tokens <= 16 for _, g in streamed)
    again = gen.generate(chats[:4], Sampling(temperature=0.0, max_new_tokens=16))
    assert [g.text for g in again] == [dict(streamed)[i].text for i in range(4)]  # greedy is deterministic
