"""The OpenAI backend against a real local HTTP server with injected faults."""

import email.utils
import json
import pickle
import time

import pytest
from openai_server import FakeOpenAIServer, Faults

from cft.critique.teachers import teacher_chat
from cft.critique.verdict import parse_verdict
from cft.generate import Sampling, get_generator
from cft.generate.incremental import PlannedRow, generate_journaled
from cft.generate.journal import Journal, failures_path
from cft.generate.openai_backend import OpenAIGenerator
from cft.generate.retry import RetryError, RetryPolicy, call_with_retry, delay_for, is_retryable, parse_retry_after

pytestmark = pytest.mark.timeout(60)

SECRET = "sk-test-5ecret-DO-NOT-LEAK-0123456789"
KEY_ENV = "CFT_TEST_OPENAI_KEY"
SAMPLING = Sampling(temperature=0.3, top_p=0.95, max_new_tokens=64)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def make_gen(server, **options) -> OpenAIGenerator:
    defaults = dict(base_url=server.url, api_key_env=KEY_ENV, timeout_s=0.4, max_retries=8,
                    backoff_s=0.01, backoff_cap_s=0.05, concurrency=8)
    return OpenAIGenerator("teacher", **{**defaults, **options})


def chats(n, prefix="q"):
    return [teacher_chat("webinstruct-cft-v1", f"{prefix}{i}: what is {i}+{i}?", f"It is {2 * i}.") for i in range(n)]


# -- retry policy (pure) -------------------------------------------------------------------


class FakeStatusError(Exception):
    def __init__(self, status, headers=None):
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.response = type("R", (), {"headers": headers or {}, "status_code": status})()


def test_retry_after_forms():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after({"retry-after": date}, now=now) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    policy = RetryPolicy(retry_after_cap_s=10)
    assert delay_for(FakeStatusError(429, {"retry-after": "3"}), 0, policy) == 3.0
    assert delay_for(FakeStatusError(429, {"retry-after": "9999"}), 0, policy) == 10  # capped


def test_backoff_is_full_jitter_and_capped():
    import random

    policy = RetryPolicy(base_s=1.0, cap_s=8.0)
    rng = random.Random(0)
    samples = [policy.backoff_s(10, rng) for _ in range(200)]
    assert max(samples) <= 8.0 and min(samples) < 1.0  # whole window [0, cap], never above the cap


def test_classification():
    assert all(is_retryable(FakeStatusError(s)) for s in (408, 409, 429, 500, 502, 503))
    assert not any(is_retryable(FakeStatusError(s)) for s in (400, 401, 403, 404, 422))
    assert is_retryable(TimeoutError()) and is_retryable(ConnectionResetError())
    assert not is_retryable(ValueError("bad"))


def test_call_with_retry_honours_retry_after_and_gives_up():
    sleeps = []
    errors = iter([FakeStatusError(503, {"retry-after": "2"}), FakeStatusError(429)])

    def flaky():
        err = next(errors, None)
        if err:
            raise err
        return "ok"

    policy = RetryPolicy(max_retries=5, base_s=0.5, cap_s=4)
    assert call_with_retry(flaky, policy, sleep=sleeps.append) == ("ok", 3)
    assert sleeps[0] == 2.0 and 0 <= sleeps[1] <= 1.0  # Retry-After, then jitter in [0, base*2]

    def always_500():
        raise FakeStatusError(500)

    with pytest.raises(RetryError) as info:
        call_with_retry(always_500, RetryPolicy(max_retries=2), sleep=lambda s: None)
    assert info.value.attempts == 3 and info.value.retryable and info.value.status == 500

    def bad_request():
        raise FakeStatusError(400)

    sleeps.clear()
    with pytest.raises(RetryError) as info:
        call_with_retry(bad_request, policy, sleep=sleeps.append)
    assert info.value.attempts == 1 and not info.value.retryable and sleeps == []


# -- against the server ----------------------------------------------------------------------


def test_every_row_completes_despite_20_percent_faults():
    faults = Faults(rate=0.2, seed=1, stall_s=2.0)
    with FakeOpenAIServer(faults=faults) as server, make_gen(server) as gen:
        results = dict(gen.generate_iter(chats(40), SAMPLING))
        kinds = dict(server.faults_served)
    assert sorted(results) == list(range(40))
    assert all(not isinstance(r, Exception) for r in results.values()), results
    assert {"500", "429", "stall"} <= set(kinds), kinds  # every fault kind was exercised
    assert "q7: what is 7+7?" in results[7].text
    assert parse_verdict(results[7].text).label == "right"
    usage = gen.usage()["teacher"]
    assert usage["requests"] == 40 and usage["failures"] == 0
    assert usage["retries"] >= sum(kinds.values())  # each fault cost a retry
    assert usage["completion_tokens"] == sum(r.completion_tokens for r in results.values()) > 0


def test_generate_returns_in_order_and_sends_sampling():
    def reply(messages):
        return "echo " + messages[-1]["content"][:12]

    with FakeOpenAIServer(reply=reply) as server, make_gen(server) as gen:
        out = gen.generate(chats(5), Sampling(temperature=0.0, top_p=0.9, max_new_tokens=7, seed=3))
        body = server.bodies[0]
    assert [g.text for g in out] == ["echo " + c[-1]["content"][:12] for c in chats(5)]
    assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == ("teacher", 0.0, 0.9, 7, 3)
    assert body["messages"][0]["role"] == "system"


def test_non_retryable_400_fails_fast_and_is_reported(tmp_path):
    batch = chats(6)
    batch[2] = [{"role": "user", "content": "broken [http 400]"}]
    with FakeOpenAIServer() as server, make_gen(server, max_retries=6, backoff_s=1.0) as gen:
        start = time.monotonic()
        results = dict(gen.generate_iter(batch, SAMPLING))
        elapsed = time.monotonic() - start
        assert server.faults_served["400"] == 1  # asked exactly once: no retry
        with pytest.raises(RetryError, match="HTTP 400"):
            gen.generate(batch, SAMPLING)
    err = results[2]
    assert isinstance(err, RetryError) and err.attempts == 1 and err.status == 400 and not err.retryable
    assert elapsed < 1.0  # a 1 s backoff would have been slept had it been retried
    assert all(not isinstance(results[i], Exception) for i in (0, 1, 3, 4, 5))
    assert gen.usage()["teacher"]["failures"] == 2  # once per call


def test_api_key_never_leaks(tmp_path, caplog):
    caplog.set_level("DEBUG")
    # A server that rejects our key and echoes the Authorization header back in its error.
    with FakeOpenAIServer(api_key="the-right-key", echo_auth_in_errors=True) as server, make_gen(server) as gen:
        results = dict(gen.generate_iter(chats(2), SAMPLING))
        journal = Journal(tmp_path / "j.jsonl")
        for i, err in results.items():
            journal.record_failure(f"r{i}", str(err), err.attempts)
        journal.finalize(["r0", "r1"], tmp_path / "out.jsonl")
        texts = [repr(gen), str(gen), json.dumps(gen.usage()), caplog.text,
                 failures_path(tmp_path / "out.jsonl").read_text()]
        for err in results.values():
            assert isinstance(err, RetryError) and err.status == 401
            assert "***" in str(err)  # the echo was there, and was redacted
            texts += [str(err), repr(err), repr(err.__cause__), repr(err.__context__)]
        with pytest.raises(TypeError):
            pickle.dumps(gen)
    assert not [t for t in texts if SECRET in t]
    assert KEY_ENV in repr(gen)


def test_missing_key_env_names_the_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ValueError, match=KEY_ENV):
        OpenAIGenerator("teacher", base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV)


def test_concurrency_limit_is_respected():
    with FakeOpenAIServer(delay_s=0.05) as server, make_gen(server, concurrency=3) as gen:
        results = gen.generate(chats(24), SAMPLING)
    assert len(results) == 24
    assert 2 <= server.max_in_flight <= 3


def test_closing_the_stream_early_stops_quickly():
    with FakeOpenAIServer(delay_s=0.2) as server, make_gen(server, concurrency=4) as gen:
        start = time.monotonic()
        stream = gen.generate_iter(chats(200), SAMPLING)
        next(stream)
        stream.close()
        assert time.monotonic() - start < 2.0
    assert server.requests < 20  # the other 190-odd were never sent


def test_usage_cost_and_get_generator():
    with FakeOpenAIServer() as server:
        gen = get_generator("openai", "teacher", base_url=server.url, api_key_env=KEY_ENV,
                            prices={"teacher": {"prompt": 2.5, "completion": 10.0}})
        with gen:
            gen.generate(chats(3), SAMPLING)
    usage = gen.usage()["teacher"]
    expected = usage["prompt_tokens"] * 2.5 / 1e6 + usage["completion_tokens"] * 10.0 / 1e6
    assert usage["cost_usd"] == pytest.approx(expected) and usage["cost_usd"] > 0
    with pytest.raises(ValueError, match="known: openai, transformers, vllm"):
        get_generator("nope", "m")


def _planned(n):
    return [PlannedRow(id=f"row{i:03d}", chat=c, meta={"i": i}) for i, c in enumerate(chats(n))]


def _make_row(p, gen):
    return {"id": p.id, "i": p.meta["i"], "critique": gen.text}


def test_server_killed_mid_run_then_resume(tmp_path):
    planned = _planned(30)
    out = tmp_path / "critiques.jsonl"
    journal = Journal(tmp_path / "critiques.journal.jsonl")
    with FakeOpenAIServer(stop_after=10) as server, make_gen(server, max_retries=3, concurrency=4) as gen:
        first = generate_journaled(gen, planned, SAMPLING, journal, _make_row, progress=False)
    done_first = journal.done_ids()
    assert 1 <= len(done_first) < 30 and first["generated"] == len(done_first)
    assert first["failed"] == 30 - len(done_first)
    summary = journal.finalize([p.id for p in planned], out)
    failures = [json.loads(line) for line in failures_path(out).read_text().splitlines()]
    assert summary["rows"] == len(done_first) and len(failures) == 30 - len(done_first)
    assert {f["id"] for f in failures} == {p.id for p in planned} - done_first
    assert all(f["attempts"] >= 1 and f["error"] for f in failures)
    journal.close()

    # Rerun in a fresh process's shoes: a new Journal object on the same file, a fresh server.
    journal = Journal(tmp_path / "critiques.journal.jsonl")
    with FakeOpenAIServer() as server, make_gen(server) as gen:
        second = generate_journaled(gen, planned, SAMPLING, journal, _make_row, progress=False)
        assert server.served == 30 - len(done_first)  # only the missing rows were asked for
    assert second == {"planned": 30, "reused": len(done_first), "generated": 30 - len(done_first), "failed": 0}
    journal.finalize([p.id for p in planned], out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in planned]  # all, in order, once each
    assert failures_path(out).read_text() == ""
    journal_ids = [json.loads(line)["id"] for line in journal.path.read_text().splitlines()]
    assert len(journal_ids) == len(set(journal_ids)) == 30  # nothing journaled twice
