"""respond and critique as stages, against a real OpenAI-compatible server on 127.0.0.1.

Faults are injected by the server (500, 429, stalls, a crash); nothing is mocked.
"""

import copy
import json

import pytest
import yaml

from cft.config import parse_params
from cft.data.io import read_jsonl, write_jsonl
from cft.stages import critique as critique_stage
from cft.stages import respond as respond_stage
from openai_server import FakeOpenAIServer, Faults

SECRET = "sk-test-do-not-leak-1234567890"


def boxed_reply(messages):
    question = messages[-1]["content"]
    return f"Adding up gives \\boxed{{{len(question) % 7}}}."


def _problems(n, start=0):
    return [{"id": f"p{i}", "source": "t", "question": f"Question number {i}?", "gold_answer": str(len(f"Question number {i}?") % 7 if i % 2 else 99), "solution": None} for i in range(start, start + n)]


def _params(repo_root, respond_url=None, teacher_url=None):
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data = copy.deepcopy(data)
    fast = {"backend": "openai", "api_key_env": "CFT_TEST_KEY", "timeout_s": 1.0, "retry_backoff_s": 0.05, "concurrency": 8}
    if respond_url:
        data["respond"]["models"] = [{"name_or_path": "student-a", "base_url": respond_url, "samples": 2, "sampling": {"temperature": 0.7, "max_new_tokens": 32}, **fast}]
    if teacher_url:
        data["critique"]["teachers"] = [{"kind": "llm", "model": "teacher-x", "prompt_version": "webinstruct-cft-v1", "base_url": teacher_url, **fast}]
    data["register"]["tracking_uri"] = f"sqlite:///{repo_root}/.pytest_cache/ignored.db"  # replaced per test
    return data


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("CFT_TEST_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _with_tracking(data, tmp_path):
    data["register"]["tracking_uri"] = f"sqlite:///{tmp_path}/mlruns.db"
    data["register"]["artifact_location"] = str(tmp_path / "mlartifacts")
    return parse_params(data)


@pytest.mark.timeout(120)
def test_respond_with_faults_then_only_new_problems_are_generated(repo_root, workspace):
    problems = workspace / "problems.jsonl"
    out = workspace / "data/responses.jsonl"
    write_jsonl(problems, _problems(10))
    with FakeOpenAIServer(faults=Faults(rate=0.2, seed=1, stall_s=1.5), reply=boxed_reply) as server:
        params = _with_tracking(_params(repo_root, respond_url=server.url), workspace)
        first = respond_stage.run(params, problems, out)
        assert first["generated"] == 20 and first["failed"] == 0
        assert sum(server.faults_served.values()) > 0  # the faults really happened
        rows = read_jsonl(out)
        assert len({r["id"] for r in rows}) == 20
        assert {"model", "sampling", "extracted_answer", "correct", "backend"} <= rows[0].keys()
        assert any(r["correct"] for r in rows) and not all(r["correct"] for r in rows)

        served_before = server.served
        write_jsonl(problems, _problems(13))  # ten old problems plus three new ones
        second = respond_stage.run(params, problems, out)
        assert second["generated"] == 6 and second["reused"] == 20
        assert server.served - served_before == 6
        assert len({r["id"] for r in read_jsonl(out)}) == 26
    for path in workspace.rglob("*"):
        if path.is_file() and path.suffix in (".jsonl", ".json"):
            assert SECRET not in path.read_text(errors="replace")


@pytest.mark.timeout(120)
def test_critique_survives_a_crashed_server_and_resumes_without_duplicates(repo_root, workspace):
    problems = workspace / "problems.jsonl"
    responses = workspace / "responses.jsonl"
    out = workspace / "data/critiques.jsonl"
    write_jsonl(problems, _problems(12))
    write_jsonl(responses, [{"id": f"r{i}", "problem_id": f"p{i}", "response": f"I think \\boxed{{{i}}}", "extracted_answer": str(i), "correct": False} for i in range(12)])

    with FakeOpenAIServer(stop_after=5) as dying:
        params = _with_tracking(_params(repo_root, teacher_url=dying.url), workspace)
        first = critique_stage.run(params, problems, responses, out)
    assert first["failed"] == 12 - first["rows"] and first["rows"] >= 5
    failures = read_jsonl(out.with_name("critiques.jsonl.failures.jsonl"))
    assert len(failures) == first["failed"] and all(f["error"] for f in failures)

    with FakeOpenAIServer() as fresh:
        params = _with_tracking(_params(repo_root, teacher_url=fresh.url), workspace)
        second = critique_stage.run(params, problems, responses, out)
        assert fresh.served == 12 - first["rows"]  # finished rows were not asked again
    rows = read_jsonl(out)
    assert second["failed"] == 0 and len(rows) == 12
    assert len({r["id"] for r in rows}) == 12
    assert {r["response_id"] for r in rows} == {f"r{i}" for i in range(12)}
    assert all(r["verdict"] == "right" and r["teacher"] == "teacher-x" for r in rows)
    assert read_jsonl(out.with_name("critiques.jsonl.failures.jsonl")) == []


def test_imports_enter_at_the_critique_stage(repo_root, workspace):
    problems = workspace / "problems.jsonl"
    responses = workspace / "responses.jsonl"
    write_jsonl(problems, [])
    write_jsonl(responses, [])
    data = _params(repo_root)
    data["critique"] = {"teachers": [], "imports": [{"path": str(repo_root / "sources/critiques/dsr-cft-p0.jsonl")}]}
    summary = critique_stage.run(_with_tracking(data, workspace), problems, responses, workspace / "critiques.jsonl")
    assert summary["imported"] == 600 and summary["rows"] == 600


def test_api_key_value_in_params_is_refused(repo_root):
    data = _params(repo_root, respond_url="http://127.0.0.1:9/v1")
    data["respond"]["models"][0]["api_key_env"] = SECRET
    with pytest.raises(Exception) as info:
        parse_params(data)
    assert "api_key_env" in str(info.value)
