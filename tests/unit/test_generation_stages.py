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


def _params(repo_root, respond_url=None, teacher_url=None, max_retries=6):
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data = copy.deepcopy(data)
    fast = {"backend": "openai", "api_key_env": "CFT_TEST_KEY", "timeout_s": 1.0, "max_retries": max_retries, "concurrency": 8}
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


@pytest.fixture(scope="module")
def tracking_dir(tmp_path_factory):
    """One MLflow store for the module: creating a SQLite store costs seconds, and the
    stages only add runs to it."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture()
def with_tracking(tracking_dir):
    def params_with_tracking(data):
        data["register"]["tracking_uri"] = f"sqlite:///{tracking_dir}/mlruns.db"
        data["register"]["artifact_location"] = str(tracking_dir / "mlartifacts")
        return parse_params(data)

    return params_with_tracking


@pytest.mark.timeout(120)
def test_respond_with_faults_then_only_new_problems_are_generated(repo_root, workspace, with_tracking):
    problems = workspace / "problems.jsonl"
    out = workspace / "data/responses.jsonl"
    write_jsonl(problems, _problems(10))
    with FakeOpenAIServer(faults=Faults(rate=0.2, seed=1, stall_s=1.5), reply=boxed_reply) as server:
        params = with_tracking(_params(repo_root, respond_url=server.url))
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
def test_critique_survives_a_crashed_server_and_resumes_without_duplicates(repo_root, workspace, with_tracking):
    problems = workspace / "problems.jsonl"
    responses = workspace / "responses.jsonl"
    out = workspace / "data/critiques.jsonl"
    write_jsonl(problems, _problems(12))
    write_jsonl(responses, [{"id": f"r{i}", "problem_id": f"p{i}", "response": f"I think \\boxed{{{i}}}", "extracted_answer": str(i), "correct": False} for i in range(12)])

    with FakeOpenAIServer(stop_after=5) as dying:
        params = with_tracking(_params(repo_root, teacher_url=dying.url, max_retries=1))
        first = critique_stage.run(params, problems, responses, out)
    assert first["failed"] == 12 - first["rows"] and first["rows"] >= 5
    failures = read_jsonl(out.with_name("critiques.jsonl.failures.jsonl"))
    assert len(failures) == first["failed"] and all(f["error"] for f in failures)

    with FakeOpenAIServer() as fresh:
        params = with_tracking(_params(repo_root, teacher_url=fresh.url))
        second = critique_stage.run(params, problems, responses, out)
        assert fresh.served == 12 - first["rows"]  # finished rows were not asked again
    rows = read_jsonl(out)
    assert second["failed"] == 0 and len(rows) == 12
    assert len({r["id"] for r in rows}) == 12
    assert {r["response_id"] for r in rows} == {f"r{i}" for i in range(12)}
    assert all(r["verdict"] == "right" and r["teacher"] == "teacher-x" for r in rows)
    assert read_jsonl(out.with_name("critiques.jsonl.failures.jsonl")) == []


def _two_of_one_model(repo_root, url):
    """Two students, then two teachers, that share a model (the usage is keyed by model)."""
    data = _params(repo_root, respond_url=url, teacher_url=url)
    student, teacher = data["respond"]["models"][0], data["critique"]["teachers"][0]
    data["respond"]["models"] = [{**student, "samples": 1}, {**student, "samples": 1, "sampling": {"temperature": 0.2}}]
    data["critique"]["teachers"] = [teacher, {**teacher, "prompt_version": "one-shot-cft-v1"}]
    return data


@pytest.fixture()
def usage_log(monkeypatch):
    """MLflow's place at the end of a stage (tests/unit/test_usage.py covers the real one):
    records what each stage logs, or refuses it when `refuse` is set (an injected fault)."""

    class UsageLog:
        logged: dict = {}
        refuse = False

        def __init__(self, params, stage):
            self.stage = stage

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def log(self, usage):
            if UsageLog.refuse:
                raise RuntimeError("MLflow store is unreachable")
            UsageLog.logged[self.stage] = usage

    monkeypatch.setattr("cft.stages.usage.start_usage_logging", UsageLog)
    return UsageLog


def test_students_or_teachers_sharing_a_model_add_up_their_usage(repo_root, workspace, usage_log):
    problems, responses = workspace / "problems.jsonl", workspace / "data/responses.jsonl"
    write_jsonl(problems, _problems(3))
    with FakeOpenAIServer(reply=boxed_reply) as server:
        params = parse_params(_two_of_one_model(repo_root, server.url))
        respond_stage.run(params, problems, responses, workspace / "respond.json")
        critique_stage.run(params, problems, responses, workspace / "data/critiques.jsonl", workspace / "critique.json")
        assert server.served == 6 + 12
    respond_usage = json.loads((workspace / "respond.json").read_text())["usage"]
    critique_usage = json.loads((workspace / "critique.json").read_text())["usage"]
    assert usage_log.logged == {"respond": respond_usage, "critique": critique_usage}
    assert respond_usage["student-a"]["requests"] == 6  # 3 problems x 2 students, not the last student's 3
    assert critique_usage["teacher-x"]["requests"] == 12  # 6 responses x 2 prompt versions
    assert respond_usage["student-a"]["completion_tokens"] == sum(r["completion_tokens"] for r in read_jsonl(responses))


def test_usage_reaches_the_metrics_file_even_when_mlflow_refuses_it(repo_root, workspace, usage_log):
    usage_log.refuse = True
    problems, responses = workspace / "problems.jsonl", workspace / "data/responses.jsonl"
    write_jsonl(problems, _problems(2))
    with FakeOpenAIServer(reply=boxed_reply) as server:
        params = parse_params(_two_of_one_model(repo_root, server.url))
        with pytest.raises(RuntimeError, match="unreachable"):
            respond_stage.run(params, problems, responses, workspace / "respond.json")
        with pytest.raises(RuntimeError, match="unreachable"):
            critique_stage.run(params, problems, responses, workspace / "data/critiques.jsonl", workspace / "critique.json")
    # A rerun would generate nothing (every row is journaled): the metrics file is the usage's only record.
    assert json.loads((workspace / "respond.json").read_text())["usage"]["student-a"]["requests"] == 4
    assert json.loads((workspace / "critique.json").read_text())["usage"]["teacher-x"]["requests"] == 8


def test_imports_enter_at_the_critique_stage(repo_root, workspace, with_tracking):
    problems = workspace / "problems.jsonl"
    responses = workspace / "responses.jsonl"
    write_jsonl(problems, [])
    write_jsonl(responses, [])
    data = _params(repo_root)
    data["critique"] = {"teachers": [], "imports": [{"path": str(repo_root / "sources/critiques/dsr-cft-p0.jsonl")}]}
    summary = critique_stage.run(with_tracking(data), problems, responses, workspace / "critiques.jsonl")
    assert summary["imported"] == 600 and summary["rows"] == 600


def test_api_key_value_in_params_is_refused(repo_root):
    data = _params(repo_root, respond_url="http://127.0.0.1:9/v1")
    data["respond"]["models"][0]["api_key_env"] = SECRET
    with pytest.raises(Exception) as info:
        parse_params(data)
    assert "api_key_env" in str(info.value)


@pytest.mark.timeout(120)
def test_respond_with_vllm_loads_the_engine_once_for_n_samples(repo_root, workspace, monkeypatch, with_tracking):
    from fake_vllm import install_fake_vllm

    env, log = install_fake_vllm(workspace)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    problems = workspace / "problems.jsonl"
    out = workspace / "data/responses.jsonl"
    write_jsonl(problems, _problems(4))
    data = _params(repo_root)
    data["respond"]["models"] = [{"name_or_path": "student-v", "backend": "vllm", "samples": 3, "max_model_len": 512,
                                  "sampling": {"temperature": 0.7, "max_new_tokens": 16, "seed": 5}}]
    summary = respond_stage.run(with_tracking(data), problems, out)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["llm"]["model"] for c in calls if "llm" in c] == ["student-v"]  # one load for three samples
    assert [c["params"]["seed"] for c in calls if "params" in c] == [5, 6, 7]  # one seed per sample index
    assert calls[0]["llm"]["max_model_len"] == 512
    rows = read_jsonl(out)
    assert summary["generated"] == 12 and len(rows) == 12 and {r["sample_index"] for r in rows} == {0, 1, 2}
    journal = respond_stage.journal_path(out)
    assert len(journal.read_text().splitlines()) == 12  # graded rows were journaled twice; compacted to one each


def test_critique_journal_is_compacted_to_the_output_when_the_stage_succeeds(repo_root, workspace, with_tracking):
    problems = workspace / "problems.jsonl"
    responses = workspace / "responses.jsonl"
    out = workspace / "data/critiques.jsonl"
    write_jsonl(problems, _problems(8))
    respond_rows = [{"id": f"r{i}", "problem_id": f"p{i}", "response": f"\\boxed{{{i}}}", "correct": False} for i in range(8)]
    write_jsonl(responses, respond_rows)
    journal = critique_stage.journal_path(out)
    with FakeOpenAIServer() as server:
        params = with_tracking(_params(repo_root, teacher_url=server.url))
        critique_stage.run(params, problems, responses, out)
        assert len(journal.read_text().splitlines()) == 8
        write_jsonl(responses, respond_rows[:3])  # five responses are gone for good
        critique_stage.run(params, problems, responses, out)
        assert server.served == 8  # nothing asked again
    assert [r["response_id"] for r in read_jsonl(out)] == ["r0", "r1", "r2"]
    assert len(journal.read_text().splitlines()) == 3  # rows no output holds are dropped


def test_reference_critic_with_a_real_student_warns(repo_root, workspace, capsys, with_tracking):
    problems = workspace / "problems.jsonl"
    responses = workspace / "responses.jsonl"
    write_jsonl(problems, _problems(2))
    write_jsonl(responses, [{"id": f"r{i}", "problem_id": f"p{i}", "response": "\\boxed{1}", "extracted_answer": "1",
                             "correct": False} for i in range(2)])
    data = _params(repo_root)
    assert critique_stage.reference_critic_warning(with_tracking(data)) is None  # the embedded default
    data["respond"]["models"].append({"name_or_path": "Qwen/Qwen2.5-Math-7B"})
    summary = critique_stage.run(with_tracking(data), problems, responses, workspace / "critiques.jsonl")
    assert summary["rows"] == 2
    err = capsys.readouterr().err
    assert "WARNING" in err and "reference critic" in err and "Qwen/Qwen2.5-Math-7B" in err and "kind: llm" in err


def test_backend_settings_in_params(repo_root):
    data = _params(repo_root, teacher_url="http://127.0.0.1:9/v1")
    data["critique"]["teachers"][0]["max_tokens_param"] = "max_completion_tokens"
    data["critique"]["teachers"][0]["prices"] = {"prompt": 2.5, "completion": 10}
    options = parse_params(data).critique.teachers[0].generator_options()
    assert options["max_tokens_param"] == "max_completion_tokens"
    assert options["prices"] == {"prompt": 2.5, "completion": 10.0}
    data["critique"]["teachers"][0]["prices"] = {"prompt": 2.5, "completion": 10, "cached": 1.25}
    with pytest.raises(Exception, match=r"critique\.teachers\.0\.prices\.cached: unknown key"):
        parse_params(data)
    del data["critique"]["teachers"][0]["prices"]
    data["respond"]["models"][0] = dict(name_or_path="m", backend="vllm", max_model_len=4096, enforce_eager=True, trust_remote_code=True,
                                        dtype="bfloat16", engine_args={"swap_space": 0})
    options = parse_params(data).respond.models[0].generator_options()
    assert {k: options[k] for k in ("max_model_len", "enforce_eager", "trust_remote_code", "dtype", "engine_args")} == {
        "max_model_len": 4096, "enforce_eager": True, "trust_remote_code": True, "dtype": "bfloat16",
        "engine_args": {"swap_space": 0}}
    data["respond"]["models"][0]["engine_args"] = {"max_model_len": 1}
    with pytest.raises(Exception, match="max_model_len as its own key"):
        parse_params(data)


def test_reference_student_answers_right_and_wrong_without_a_model(tmp_path, repo_root):
    """The embedded default's offline student: reference solutions, some with a broken final
    answer; `correct` is the grader's verdict, and a rerun reuses every row."""
    import yaml

    from cft.config import parse_params
    from cft.data.io import read_jsonl, write_jsonl
    from cft.stages import respond

    problems = [{"id": f"p{i}", "source": "t", "question": f"What is {i} + {i}?", "gold_answer": str(2 * i),
                 "solution": f"{i} + {i} = {2 * i}, so the answer is $\\boxed{{{2 * i}}}$." if i % 2 else None}
                for i in range(40)]
    write_jsonl(tmp_path / "problems.jsonl", problems)
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["respond"]["models"] = [{"kind": "reference", "error_rate": 0.5}]
    params = parse_params(data)

    summary = respond.run(params, tmp_path / "problems.jsonl", tmp_path / "responses.jsonl")
    rows = read_jsonl(tmp_path / "responses.jsonl")
    assert summary["generated"] == 40 and len(rows) == 40
    right = [r for r in rows if r["correct"]]
    assert 10 <= len(right) <= 30  # about half, by the row's seed
    by_id = {p["id"]: p for p in problems}
    for r in right:
        assert r["extracted_answer"] == by_id[r["problem_id"]]["gold_answer"]
    assert all(r["backend"] == "reference" and r["model"] == "reference-student" for r in rows)
    assert respond.run(params, tmp_path / "problems.jsonl", tmp_path / "responses.jsonl")["reused"] == 40

    bad = dict(data, respond={"models": [{"backend": "transformers"}]})
    with pytest.raises(Exception, match="name_or_path"):
        parse_params(bad)
