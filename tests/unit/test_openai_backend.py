"""The OpenAI backend against a real local HTTP server with injected faults.

Retries are the openai client's own; these tests check what the backend promises on
top of it: every row ends as a Generation or as that row's RequestFailed, nothing
non-retryable is repeated, empty replies are kept, the key never leaks.
"""

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
from cft.generate.openai_backend import OpenAIGenerator, RequestFailed

pytestmark = pytest.mark.timeout(60)

SECRET = "sk-test-5ecret-DO-NOT-LEAK-0123456789"
KEY_ENV = "CFT_TEST_OPENAI_KEY"
SAMPLING = Sampling(temperature=0.3, top_p=0.95, max_new_tokens=64)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def make_gen(server, **options) -> OpenAIGenerator:
    defaults = dict(base_url=server.url, api_key_env=KEY_ENV, timeout_s=0.4, max_retries=8, concurrency=8)
    return OpenAIGenerator("teacher", **{**defaults, **options})


def chats(n, prefix="q"):
    return [teacher_chat("webinstruct-cft-v1", f"{prefix}{i}: what is {i}+{i}?", f"It is {2 * i}.") for i in range(n)]


# -- against the server ----------------------------------------------------------------------


def test_every_row_completes_despite_20_percent_faults():
    """500s, 429s (with retry-after-ms) and stalls past the timeout: the client's retries absorb them."""
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


def test_max_completion_tokens_for_models_that_reject_max_tokens():
    with FakeOpenAIServer() as server, make_gen(server, max_tokens_param="max_completion_tokens") as gen:
        gen.generate(chats(1), Sampling(max_new_tokens=11))
        body = server.bodies[0]
    assert body["max_completion_tokens"] == 11 and "max_tokens" not in body
    with pytest.raises(ValueError, match="max_tokens_param"):
        OpenAIGenerator("teacher", base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV, max_tokens_param="max_len")


def test_non_retryable_400_fails_fast_and_is_reported(tmp_path):
    batch = chats(6)
    batch[2] = [{"role": "user", "content": "broken [http 400]"}]
    with FakeOpenAIServer() as server, make_gen(server, max_retries=6) as gen:
        results = dict(gen.generate_iter(batch, SAMPLING))
        assert server.faults_served["400"] == 1  # asked exactly once: no retry
        with pytest.raises(RequestFailed, match="HTTP 400"):
            gen.generate(batch, SAMPLING)
    err = results[2]
    assert isinstance(err, RequestFailed) and err.attempts == 1 and err.status == 400
    assert err.reason == "request_failed"
    assert all(not isinstance(results[i], Exception) for i in (0, 1, 3, 4, 5))
    assert gen.usage()["teacher"]["failures"] == 2  # once per call


def test_empty_reply_is_kept_flagged_and_never_asked_again(tmp_path):
    """A content-filtered reply (200, content null) is a row, not a failure: a rerun does not pay for it again."""

    def reply(messages):
        return None if "q3:" in messages[-1]["content"] else "Fine. Conclusion: right [END]"

    planned = _planned(6)
    journal = Journal(tmp_path / "j.jsonl")
    with FakeOpenAIServer(reply=reply) as server, make_gen(server) as gen:
        first = generate_journaled(gen, planned, SAMPLING, journal, _make_row, progress=False)
        again = generate_journaled(gen, planned, SAMPLING, Journal(journal.path), _make_row, progress=False)
        assert server.served == 6  # the second run asked nothing
    assert first["generated"] == 6 and first["failed"] == 0 and again["reused"] == 6
    rows = journal.rows()
    assert rows["row003"]["empty"] is True and rows["row003"]["critique"] == ""
    assert not any(r.get("empty") for k, r in rows.items() if k != "row003")
    assert gen.usage()["teacher"]["empty"] == 1


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
            assert isinstance(err, RequestFailed) and err.status == 401
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
                            prices={"prompt": 2.5, "completion": 10.0})
        with gen:
            gen.generate(chats(3), SAMPLING)
    usage = gen.usage()["teacher"]
    expected = usage["prompt_tokens"] * 2.5 / 1e6 + usage["completion_tokens"] * 10.0 / 1e6
    assert usage["cost_usd"] == pytest.approx(expected) and usage["cost_usd"] > 0
    with pytest.raises(ValueError, match=r"prices must be .*got keys \['teacher'\]"):
        OpenAIGenerator("teacher", base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV,
                        prices={"teacher": {"prompt": 2.5, "completion": 10.0}})
    with pytest.raises(ValueError, match="known: openai, transformers, vllm"):
        get_generator("nope", "m")


def _planned(n):
    return [PlannedRow(id=f"row{i:03d}", chat=c, meta={"i": i}) for i, c in enumerate(chats(n))]


def _make_row(p, gen):
    return {"id": p.id, "i": p.meta["i"], "critique": gen.text, **({"empty": True} if gen.empty else {})}


def test_server_killed_mid_run_then_resume(tmp_path):
    planned = _planned(30)
    out = tmp_path / "critiques.jsonl"
    journal = Journal(tmp_path / "critiques.journal.jsonl")
    with FakeOpenAIServer(stop_after=10) as server, make_gen(server, max_retries=0, concurrency=4) as gen:
        first = generate_journaled(gen, planned, SAMPLING, journal, _make_row, progress=False)
    done_first = set(journal.rows())
    assert 1 <= len(done_first) < 30 and first["generated"] == len(done_first)
    assert first["failed"] == 30 - len(done_first)
    summary = journal.finalize([p.id for p in planned], out)
    failures = [json.loads(line) for line in failures_path(out).read_text().splitlines()]
    assert summary["rows"] == len(done_first) and len(failures) == 30 - len(done_first)
    assert {f["id"] for f in failures} == {p.id for p in planned} - done_first
    assert all(f["attempts"] >= 1 and f["error"] and f["reason"] == "request_failed" for f in failures)
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
