"""The vLLM backend's worker process, on the CPU, with a stand-in `vllm` package.

The real engine is exercised in tests/gpu/test_vllm_gpu.py; here a fake module with
vllm's surface (`LLM(...)`, `get_tokenizer`, `generate` with token-id prompts,
`SamplingParams`, the engine's `model_config.max_model_len`) checks everything around
it: one engine load per generator, streaming, ordering, token counts, over-length
prompts, models without a chat template and the error paths. Like vLLM, the stand-in
rejects a whole `generate`/`chat` call when one prompt does not fit the context, and
prints to stdout (which must not disturb the protocol).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fake_vllm import install_fake_vllm

from cft.generate import GenerationError, PromptTooLong, Sampling, get_generator
from cft.generate.incremental import PlannedRow, generate_journaled
from cft.generate.journal import Journal, failures_path
from cft.generate.vllm_backend import VLLMGenerator, VLLMUnavailable, VLLMWorkerError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def fake_env(tmp_path):
    return install_fake_vllm(tmp_path)


def entries(log, kind):
    return [e[kind] for e in map(json.loads, log.read_text().splitlines()) if kind in e] if log.exists() else []


def user(i, words=2):
    return [{"role": "user", "content": f"q{i} " + " ".join(["w"] * words)}]


def test_generates_in_order_streaming_by_chunk_with_engine_options(fake_env):
    env, log = fake_env
    with get_generator("vllm", "some/model", tensor_parallel_size=2, chunk_size=2, env=env, max_model_len=64,
                       dtype="bfloat16", enforce_eager=True, trust_remote_code=True,
                       engine_args={"swap_space": 1}) as gen:
        out = gen.generate([user(i) for i in range(5)], Sampling(temperature=0.3, top_p=0.95, max_new_tokens=9, seed=4))
    assert [g.text for g in out] == [f"critique of q{i} w w" for i in range(5)]
    assert (out[0].prompt_tokens, out[0].completion_tokens) == (5, 5)
    (engine,) = entries(log, "llm")
    assert engine == {"model": "some/model", "tensor_parallel_size": 2, "dtype": "bfloat16", "gpu_memory_utilization": 0.9,
                      "trust_remote_code": True, "enforce_eager": True, "max_model_len": 64, "swap_space": 1}
    assert entries(log, "generate") == [2, 2, 1]  # streamed chunk by chunk
    params = [json.loads(line)["params"] for line in log.read_text().splitlines() if "params" in line]
    assert params[0] == {"temperature": 0.3, "top_p": 0.95, "max_tokens": 9, "seed": 4}
    assert gen.usage()["some/model"]["requests"] == 5


def test_one_engine_load_for_every_call_until_closed(fake_env):
    """n samples (one call per sample index) and the evaluate stage's calls share one engine."""
    env, log = fake_env
    gen = VLLMGenerator("m", env=env)
    for seed in range(3):
        out = gen.generate([user(i) for i in range(3)], Sampling(temperature=1.0, seed=seed))
        assert [g.text for g in out] == [f"critique of q{i} w w" for i in range(3)]
    assert len(entries(log, "llm")) == 1
    seeds = [json.loads(line)["params"]["seed"] for line in log.read_text().splitlines() if "params" in line]
    assert seeds == [0, 1, 2]  # each call's own sampling reached the engine
    gen.close()
    gen.generate([user(0)], Sampling())  # a closed generator starts a new worker when used again
    assert len(entries(log, "llm")) == 2
    gen.close()
    gen.close()  # idempotent


def test_over_length_prompt_fails_alone_as_prompt_too_long(fake_env, tmp_path):
    env, log = fake_env
    planned = [PlannedRow(f"r{i}", user(i, words=60 if i == 2 else 2)) for i in range(5)]
    journal = Journal(tmp_path / "j.jsonl")
    with VLLMGenerator("m", env=env, chunk_size=8) as gen:  # the stand-in's context: 40 tokens
        streamed = dict(gen.generate_iter([p.chat for p in planned], Sampling()))
        assert isinstance(streamed[2], PromptTooLong) and all(streamed[i].text for i in (0, 1, 3, 4))
        summary = generate_journaled(gen, planned, Sampling(), journal, lambda p, g: {"id": p.id, "text": g.text},
                                     progress=False)
        assert gen.max_model_len == 40
    assert summary == {"planned": 5, "reused": 0, "generated": 4, "failed": 1}
    assert entries(log, "generate") == [4, 4]  # each time, the rest of the chunk went in one call
    journal.finalize([p.id for p in planned], tmp_path / "out.jsonl")
    (failure,) = [json.loads(line) for line in failures_path(tmp_path / "out.jsonl").read_text().splitlines()]
    assert failure["id"] == "r2" and failure["reason"] == "prompt_too_long" and "40" in failure["error"]


def test_a_failing_template_or_rejected_call_fails_its_rows_and_the_worker_goes_on(fake_env, tmp_path):
    """A chat template that raises fails its row alone; a `generate` that raises fails its
    chunk's rows; the worker lives on (a rerun would not die at the same chunk)."""
    env, log = fake_env
    chats = [user(i) for i in range(7)]
    chats[1] = [{"role": "user", "content": "q1 [bad-template]"}]
    chats[4] = [{"role": "user", "content": "q4 [reject]"}]
    planned = [PlannedRow(f"r{i}", chat) for i, chat in enumerate(chats)]
    journal = Journal(tmp_path / "j.jsonl")
    with VLLMGenerator("m", env=env, chunk_size=3) as gen:  # chunks: 0-2, 3-5, 6
        streamed = dict(gen.generate_iter(chats, Sampling()))
        summary = generate_journaled(gen, planned, Sampling(), journal, lambda p, g: {"id": p.id, "text": g.text},
                                     progress=False)
        assert [g.text for g in gen.generate([user(9)], Sampling())] == ["critique of q9 w w"]
        assert gen.usage()["m"]["failures"] == 8
    assert [i for i, r in sorted(streamed.items()) if isinstance(r, GenerationError)] == [1, 3, 4, 5]
    assert "Conversation roles must alternate" in str(streamed[1])
    assert all("fake engine rejected the call" in str(streamed[i]) for i in (3, 4, 5))
    assert [streamed[i].text for i in (0, 2, 6)] == ["critique of q0 w w", "critique of q2 w w", "critique of q6 w w"]
    assert summary == {"planned": 7, "reused": 0, "generated": 3, "failed": 4}
    assert len(entries(log, "llm")) == 1  # one engine for every call: the worker never died
    journal.finalize([p.id for p in planned], tmp_path / "out.jsonl")
    failures = [json.loads(line) for line in failures_path(tmp_path / "out.jsonl").read_text().splitlines()]
    assert [f["id"] for f in failures] == ["r1", "r3", "r4", "r5"]


def test_a_dead_engine_stops_the_worker_instead_of_failing_every_row(fake_env):
    env, _ = fake_env
    gen = VLLMGenerator("dead", env=env, chunk_size=2)
    with pytest.raises(VLLMWorkerError, match="(?s)after 0/5 rows.*EngineDeadError"):
        gen.generate([user(i) for i in range(5)], Sampling())
    gen.close()


def test_the_stand_in_rejects_a_whole_call_like_vllm(fake_env, monkeypatch):
    """What the length check protects against: one long prompt fails every prompt of the call."""
    env, log = fake_env
    monkeypatch.syspath_prepend(env["PYTHONPATH"])
    monkeypatch.setenv("FAKE_VLLM_LOG", env["FAKE_VLLM_LOG"])
    import importlib

    vllm = importlib.import_module("vllm")
    llm = vllm.LLM("m")
    with pytest.raises(ValueError, match="longer than the maximum model length"):
        llm.chat([user(0), user(1, words=60)], vllm.SamplingParams())


def test_model_without_chat_template_gets_plain_concatenation(fake_env):
    env, log = fake_env
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    with VLLMGenerator("base-model", env=env) as gen:
        (out,) = gen.generate([chat], Sampling())
    (prompt,) = json.loads([line for line in log.read_text().splitlines() if "prompts" in line][0])["prompts"]
    assert prompt == "Be brief. What is 2+2?"  # "Be brief.\n\nWhat is 2+2?\n\n", whitespace-tokenized
    assert out.text == "answer to Be brief. What is 2+2?"


def test_a_dying_worker_raises_keeps_earlier_rows_and_the_next_call_restarts(fake_env):
    env, log = fake_env
    gen = VLLMGenerator("dies", env=env, chunk_size=2)
    got = []
    with pytest.raises(VLLMWorkerError, match="(?s)exited with status 9 after 2/5 rows"):
        for i, _ in gen.generate_iter([user(i) for i in range(5)], Sampling()):
            got.append(i)
    assert got == [0, 1]
    gen.close()


def test_abandoned_call_does_not_leak_into_the_next(fake_env):
    env, log = fake_env
    with VLLMGenerator("m", env=env, chunk_size=1) as gen:
        stream = gen.generate_iter([user(i) for i in range(6)], Sampling())
        assert next(stream)[0] == 0
        stream.close()  # the caller stopped: the busy worker is stopped too
        out = gen.generate([user(10), user(11)], Sampling())
    assert [g.text for g in out] == ["critique of q10 w w", "critique of q11 w w"]


PARENT = """
from cft.generate import Sampling
from cft.generate.vllm_backend import VLLMGenerator
for _ in VLLMGenerator("slow").generate_iter([[{"role": "user", "content": "q"}]], Sampling()):
    pass
"""


def _gone(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            return any(line.startswith("State:") and "Z" in line for line in fh)  # a zombie has let go of everything
    except FileNotFoundError:
        return True


def test_sigkill_of_the_stage_mid_generation_takes_the_engine_down(fake_env, tmp_path):
    """No orphaned engine holds the GPUs after the orchestrating process is killed at the worst moment."""
    env, log = fake_env
    parent_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([os.getcwd(), env["PYTHONPATH"]])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=parent_env)
    try:
        deadline = time.monotonic() + 30
        while not entries(log, "busy") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert entries(log, "busy"), "the worker never started generating"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        (pids,) = entries(log, "pids")  # the worker and the engine process it started
        deadline = time.monotonic() + 15
        while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(_gone(pid) for pid in pids)
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in [p for pids in entries(log, "pids") for p in pids if not _gone(p)]:
            os.kill(pid, signal.SIGKILL)  # what a failure here would leave behind


def test_missing_vllm_is_a_clear_error(tmp_path):
    gen = VLLMGenerator("m", env={"PYTHONPATH": str(tmp_path)})
    with pytest.raises(VLLMUnavailable, match="vllm is not importable by .*python"):
        gen.generate([user(0)], Sampling())
    with pytest.raises(VLLMUnavailable, match="not importable"):
        gen.check()
    with pytest.raises(VLLMUnavailable, match="does not exist"):
        VLLMGenerator("m", python=str(tmp_path / "no-python")).generate([user(0)], Sampling())


def test_worker_failure_carries_its_log(fake_env):
    env, _ = fake_env
    gen = VLLMGenerator("crash", env=env)
    with pytest.raises(VLLMWorkerError, match="(?s)while loading crash.*CUDA out of memory"):
        gen.generate([user(0)], Sampling())
    assert gen.check() == "0.0-fake"  # vllm imports: the engine failed, and its log says why
