"""vLLM on a real GPU: the worker process generates with the real engine.

Skipped unless vllm imports (here, or in the interpreter named by
CFT_VLLM_PYTHON, for vllm kept in its own environment). The model is
CFT_VLLM_TEST_MODEL (a local folder or a cached hub id), else a tiny Llama built
on the spot (random weights: checks plumbing, not quality).

    CFT_VLLM_PYTHON=.venv-vllm/bin/python python -m pytest tests/gpu/test_vllm_gpu.py -q
"""

import importlib.util
import os
import shutil
import sys

import pytest

from cft.generate import PromptTooLong, Sampling
from cft.generate.vllm_backend import VLLMGenerator

PYTHON = os.environ.get("CFT_VLLM_PYTHON", sys.executable)
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(PYTHON == sys.executable and importlib.util.find_spec("vllm") is None,
                       reason="vllm is not importable"),
]
CONTEXT = 512


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    if os.environ.get("CFT_VLLM_TEST_MODEL"):
        return os.environ["CFT_VLLM_TEST_MODEL"]
    from cft.model.tiny import build_tiny_model

    corpus = [f"Question: what is {i} plus {i}? Solution: {2 * i}. Conclusion: right [END]" for i in range(200)]
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny"), corpus_texts=corpus, vocab_size=512))


def test_one_engine_streams_every_row_and_fails_only_the_over_length_prompt(model_path):
    chats = [[{"role": "user", "content": f"What is {i} plus {i}?"}] for i in range(20)]
    chats[7] = [{"role": "user", "content": "plus " * (2 * CONTEXT)}]  # cannot fit the context
    with VLLMGenerator(model_path, python=PYTHON, gpu_memory_utilization=0.3, chunk_size=8, max_model_len=CONTEXT,
                       enforce_eager=True) as gen:
        streamed = dict(gen.generate_iter(chats, Sampling(temperature=0.0, max_new_tokens=16)))
        assert gen.max_model_len == CONTEXT
        again = gen.generate(chats[:4], Sampling(temperature=0.0, max_new_tokens=16))  # the same engine
    assert sorted(streamed) == list(range(20))
    assert isinstance(streamed[7], PromptTooLong) and streamed[7].reason == "prompt_too_long"
    good = {i: g for i, g in streamed.items() if i != 7}
    assert all(g.prompt_tokens > 0 and 0 < g.completion_tokens <= 16 for g in good.values())
    assert [g.text for g in again] == [good[i].text for i in range(4)]  # greedy is deterministic


def test_a_model_without_chat_template_generates(model_path, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(model_path, plain)
    config = plain / "tokenizer_config.json"
    if config.exists():
        import json

        data = json.loads(config.read_text())
        data.pop("chat_template", None)
        config.write_text(json.dumps(data))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    with VLLMGenerator(str(plain), python=PYTHON, gpu_memory_utilization=0.3, max_model_len=CONTEXT,
                       enforce_eager=True) as gen:
        (out,) = gen.generate([[{"role": "user", "content": "What is 2 plus 2?"}]], Sampling(max_new_tokens=8))
    assert out.prompt_tokens > 0 and out.completion_tokens > 0
