"""The vLLM backend's subprocess protocol, on the CPU, with a stand-in `vllm` package.

The real engine is exercised in tests/gpu/test_vllm_gpu.py; here a fake module
with vllm's `LLM.chat` / `SamplingParams` surface checks everything around it:
the worker process, streaming, ordering, token counts and the error paths.
"""

import json
import textwrap

import pytest

from cft.generate import Sampling, get_generator
from cft.generate.vllm_backend import VLLMGenerator, VLLMUnavailable, VLLMWorkerError

pytestmark = pytest.mark.timeout(60)

FAKE_VLLM = textwrap.dedent("""
    import json, os
    __version__ = "0.0-fake"

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class _Completion:
        def __init__(self, text):
            self.text, self.token_ids = text, text.split()

    class _Output:
        def __init__(self, prompt, text):
            self.prompt_token_ids = prompt.split()
            self.outputs = [_Completion(text)]

    class LLM:
        def __init__(self, **kw):
            if kw["model"] == "crash":
                raise RuntimeError("CUDA out of memory (fake)")
            with open(os.environ["FAKE_VLLM_LOG"], "a") as fh:
                fh.write(json.dumps({"llm": kw}) + "\\n")

        def chat(self, conversations, params, use_tqdm=True):
            with open(os.environ["FAKE_VLLM_LOG"], "a") as fh:
                fh.write(json.dumps({"chat": len(conversations), "params": params.kw}) + "\\n")
            return [_Output(c[-1]["content"], "critique of " + c[-1]["content"]) for c in conversations]
""")


@pytest.fixture()
def fake_env(tmp_path):
    (tmp_path / "fake" / "vllm").mkdir(parents=True)
    (tmp_path / "fake" / "vllm" / "__init__.py").write_text(FAKE_VLLM)
    log = tmp_path / "fake_vllm.log"
    return {"PYTHONPATH": str(tmp_path / "fake"), "FAKE_VLLM_LOG": str(log)}, log


def test_generates_in_order_streaming_by_chunk(fake_env):
    env, log = fake_env
    gen = get_generator("vllm", "some/model", tensor_parallel_size=2, chunk_size=2, env=env, poll_s=0.02)
    chats = [[{"role": "user", "content": f"q{i} a b"}] for i in range(5)]
    out = gen.generate(chats, Sampling(temperature=0.3, top_p=0.95, max_new_tokens=9, seed=4))
    assert [g.text for g in out] == [f"critique of q{i} a b" for i in range(5)]
    assert (out[0].prompt_tokens, out[0].completion_tokens) == (3, 5)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0]["llm"]["tensor_parallel_size"] == 2 and calls[0]["llm"]["seed"] == 4
    assert [c["chat"] for c in calls[1:]] == [2, 2, 1]  # streamed chunk by chunk
    assert calls[1]["params"] == {"temperature": 0.3, "top_p": 0.95, "max_tokens": 9, "seed": 4}
    assert gen.check() == "0.0-fake"


def test_missing_vllm_is_a_clear_error(tmp_path):
    gen = VLLMGenerator("m", env={"PYTHONPATH": str(tmp_path)}, poll_s=0.02)
    with pytest.raises(VLLMUnavailable, match="vllm is not importable by .*python"):
        gen.generate([[{"role": "user", "content": "q"}]], Sampling())
    with pytest.raises(VLLMUnavailable, match="not importable"):
        gen.check()
    with pytest.raises(VLLMUnavailable, match="does not exist"):
        VLLMGenerator("m", python=str(tmp_path / "no-python")).generate([[{"role": "user", "content": "q"}]], Sampling())


def test_worker_failure_carries_its_log(fake_env):
    env, _ = fake_env
    gen = VLLMGenerator("crash", env=env, poll_s=0.02)
    with pytest.raises(VLLMWorkerError, match="(?s)0/1 rows.*CUDA out of memory"):
        gen.generate([[{"role": "user", "content": "q"}]], Sampling())
