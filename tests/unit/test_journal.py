"""The generation journal: durable appends, torn lines, duplicates, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cft.generate import Generation, Sampling
from cft.generate.incremental import PlannedRow, generate_journaled
from cft.generate.journal import Journal, failures_path

pytestmark = pytest.mark.timeout(60)


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_append_reload_and_last_write_wins(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append({"id": "a", "v": 1})
        journal.append_many([{"id": "b", "v": 1}, {"id": "a", "v": 2}])
        assert set(journal.rows()) == {"a", "b"}
    reloaded = Journal(path)
    assert reloaded.rows() == {"b": {"id": "b", "v": 1}, "a": {"id": "a", "v": 2}}
    with pytest.raises(ValueError, match="string 'id'"):
        reloaded.append({"v": 3})


def test_torn_last_line_is_ignored_and_cut_before_appending(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"id": "a", "v": 1}\n{"id": "b", "v": 1}\n{"id": "c", "v"')  # killed mid-write
    journal = Journal(path)
    assert set(journal.rows()) == {"a", "b"} and journal.skipped_lines == 1
    journal.append({"id": "c", "v": 1})  # regenerated; must not glue onto the torn bytes
    journal.close()
    assert read_lines(path) == [{"id": "a", "v": 1}, {"id": "b", "v": 1}, {"id": "c", "v": 1}]
    assert Journal(path).skipped_lines == 0


def test_complete_last_line_without_newline_is_torn_too(tmp_path):
    """A kill between a row's bytes and its newline: the row reads whole, but the append that
    follows cuts it from the file. It counts as torn (regenerated), so memory and file agree."""
    path = tmp_path / "j.jsonl"
    path.write_text('{"id": "a", "v": 1}\n{"id": "b", "v": 1}')
    journal = Journal(path)
    assert set(journal.rows()) == {"a"} and journal.skipped_lines == 1
    journal.append({"id": "c", "v": 1})
    journal.compact(["a", "b", "c"])
    assert Journal(path).rows() == journal.rows() == {"a": {"id": "a", "v": 1}, "c": {"id": "c", "v": 1}}


def test_finalize_writes_plan_order_once_and_reports_failures(tmp_path):
    out = tmp_path / "out.jsonl"
    journal = Journal(tmp_path / "j.jsonl")
    journal.append_many([{"id": i} for i in ("c", "a", "old", "a")])
    journal.record_failure("b", "HTTP 500 after 7 attempts", 7)
    summary = journal.finalize(["a", "b", "c", "a", "d"], out)
    assert summary == {"rows": 2, "failed": 2, "planned": 4}
    assert [r["id"] for r in read_lines(out)] == ["a", "c"]  # "old" is not planned, "a" once
    failures = read_lines(failures_path(out))
    assert [(f["id"], f["attempts"]) for f in failures] == [("b", 7), ("d", 0)]
    assert failures[0]["error"] == "HTTP 500 after 7 attempts" and "not generated" in failures[1]["error"]
    assert failures[0]["time"].endswith("Z")
    # Next run: the failed rows succeed; the failures file is rewritten, not appended.
    journal.append_many([{"id": "b"}, {"id": "d"}])
    journal.finalize(["a", "b", "c", "d"], out)
    assert [r["id"] for r in read_lines(out)] == ["a", "b", "c", "d"]
    assert failures_path(out).read_text() == ""
    assert journal.compact(keep_ids=["a", "b"]) == 2
    assert [r["id"] for r in read_lines(journal.path)] == ["a", "b"]


class BatchOnly:
    """A backend without generate_iter (like transformers): chunks of generate; one chunk fails."""

    name = "batch"

    def __init__(self, fail_chunk_containing=None):
        self.fail = fail_chunk_containing
        self.calls = 0

    def generate(self, chats, sampling):
        self.calls += 1
        texts = [c[-1]["content"] for c in chats]
        if self.fail in texts:
            raise RuntimeError("out of memory")
        return [Generation("re: " + t, 3, 2) for t in texts]


def test_generate_journaled_with_a_batch_backend_resumes(tmp_path):
    planned = [PlannedRow(f"r{i}", [{"role": "user", "content": f"q{i}"}]) for i in range(10)]
    planned.append(planned[0])  # the same content planned twice is generated once
    out = tmp_path / "out.jsonl"

    def make_row(p, gen):
        return {"id": p.id, "text": gen.text}

    journal = Journal(tmp_path / "j.jsonl")
    first = generate_journaled(BatchOnly(fail_chunk_containing="q5"), planned, Sampling(), journal, make_row,
                               chunk_size=4, progress=False)
    assert first == {"planned": 10, "reused": 0, "generated": 6, "failed": 4}  # chunk q4..q7 failed
    journal.finalize([p.id for p in planned], out)
    assert {f["id"] for f in read_lines(failures_path(out))} == {"r4", "r5", "r6", "r7"}
    assert "out of memory" in read_lines(failures_path(out))[0]["error"]
    backend = BatchOnly()
    second = generate_journaled(backend, planned, Sampling(), Journal(journal.path), make_row,
                                chunk_size=4, progress=False)
    assert second == {"planned": 10, "reused": 6, "generated": 4, "failed": 0} and backend.calls == 1
    Journal(journal.path).finalize([p.id for p in planned], out)
    assert [r["id"] for r in read_lines(out)] == [f"r{i}" for i in range(10)]


WRITER = textwrap.dedent("""
    import sys, time
    from cft.generate.journal import Journal
    journal = Journal(sys.argv[1])
    done = journal.rows()
    for i in range(int(sys.argv[2])):
        row_id = f"row{i:04d}"
        if row_id in done:
            continue
        journal.append({"id": row_id, "text": "x" * (i % 50)})
        print(row_id, flush=True)  # acknowledged: the row is on disk
        time.sleep(float(sys.argv[3]))
""")


def test_sigkill_mid_run_then_resume_loses_nothing_duplicates_nothing(tmp_path):
    path, total = tmp_path / "j.jsonl", 300
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(total), "0.005"],
                            stdout=subprocess.PIPE, text=True, env=env)
    acknowledged = []
    deadline = time.monotonic() + 30
    try:
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged.append(line.strip())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL and len(acknowledged) == 40
    done = set(Journal(path).rows())
    assert set(acknowledged) <= done and len(done) < total  # every acknowledged row survived the kill

    # Tear the tail too, as a kill inside write() would, then resume in a fresh process.
    with open(path, "ab") as fh:
        fh.write(b'{"id": "row9999", "te')
    subprocess.run([sys.executable, str(script), str(path), str(total), "0"], check=True,
                   stdout=subprocess.DEVNULL, env=env, timeout=30)
    ids = [row["id"] for row in read_lines(path)]  # also proves no torn line is left
    assert len(ids) == len(set(ids)) == total
    out = tmp_path / "out.jsonl"
    planned = [f"row{i:04d}" for i in range(total)]
    assert Journal(path).finalize(planned, out) == {"rows": total, "failed": 0, "planned": total}
    assert [r["id"] for r in read_lines(out)] == planned


def test_progress_counts_tokens_and_failures():
    from cft.generate.progress import GenerationProgress

    with GenerationProgress(3, disable=True) as bar:
        bar.update(Generation("a", 5, 7))
        bar.update(RuntimeError("boom"))
        bar.update(Generation("b", 5, 4))
    assert (bar.tokens, bar.failed) == (11, 1)


COMPACTOR = textwrap.dedent("""
    import json, os, signal, sys
    from cft.generate.journal import Journal
    path, keep, fault = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if fault == "before-rename":
        os.replace = die  # the new journal is complete on disk, the rename has not happened
    elif fault == "mid-write":
        dumps, calls = json.dumps, [0]
        def dumps_then_die(*a, **k):
            calls[0] += 1
            if calls[0] == keep // 2:
                die()
            return dumps(*a, **k)
        json.dumps = dumps_then_die  # half the new journal is written
    Journal(path).compact([f"row{i:04d}" for i in range(keep)])
""")


@pytest.mark.parametrize("fault", ["mid-write", "before-rename"])
def test_sigkill_during_compaction_loses_nothing(tmp_path, fault):
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append_many({"id": f"row{i:04d}", "v": 1} for i in range(600))
        journal.append_many({"id": f"row{i:04d}", "v": 2} for i in range(0, 600, 2))  # repeats to drop
    before = Journal(path).rows()
    script = tmp_path / "compactor.py"
    script.write_text(COMPACTOR)
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, str(script), str(path), "400", fault], env=env, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert Journal(path).rows() == before  # the old journal, whole
    assert list(tmp_path.glob(".j.jsonl.*.tmp"))  # what the kill left behind...
    journal = Journal(path)
    assert journal.compact([f"row{i:04d}" for i in range(400)]) == 400
    assert not list(tmp_path.glob(".j.jsonl.*.tmp"))  # ...is swept by the next compaction
    rows = read_lines(path)
    assert len(rows) == 400  # each kept id once, with its last value
    assert {r["id"]: r["v"] for r in rows} == {k: v["v"] for k, v in before.items() if k < "row0400"}


def test_compaction_without_anything_to_drop_rewrites_nothing(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append_many({"id": f"r{i}"} for i in range(10))
    inode = path.stat().st_ino
    assert Journal(path).compact([f"r{i}" for i in range(10)]) == 10
    assert path.stat().st_ino == inode  # not rewritten
    assert Journal(path).compact([f"r{i}" for i in range(5)]) == 5
    assert path.stat().st_ino != inode and [r["id"] for r in read_lines(path)] == [f"r{i}" for i in range(5)]


def test_fsync_is_batched_but_every_row_is_flushed(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "j.jsonl"
    journal = Journal(path, fsync_interval_s=3600)
    for i in range(100):
        journal.append({"id": f"r{i}"})
        assert len(path.read_bytes().splitlines()) == i + 1  # visible to another process at once
    assert len(synced) == 1  # the first append; then at most one per interval
    journal.close()
    assert len(synced) == 2  # and once more on close


def test_plain_progress_lines_when_not_a_terminal():
    import io

    from cft.generate.progress import GenerationProgress

    out = io.StringIO()  # not a terminal, like a Prefect or CI log
    with GenerationProgress(4, desc="critique t", initial=1, interval_s=0.0, file=out) as bar:
        bar.update(Generation("a", 5, 7))
        bar.update(RuntimeError("boom"))
        bar.update(Generation("b", 5, 4))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 5  # start, one per row (interval 0), end
    assert lines[0].startswith("critique t: 1/4 rows (25%)")
    assert lines[-1].startswith("critique t: 4/4 rows (100%)") and "rows/s" in lines[-1] and "ETA" in lines[-1]
    assert "tokens=11, failed=1" in lines[-1]
    quiet = io.StringIO()
    with GenerationProgress(4, disable=True, file=quiet) as bar:
        bar.update(Generation("a", 1, 1))
    assert quiet.getvalue() == ""


def test_generate_with_progress_keeps_order_and_reports_failures(capsys):
    from cft.generate.progress import GenerationFailed, generate_with_progress

    chats = [[{"role": "user", "content": f"q{i}"}] for i in range(10)]
    out = generate_with_progress(BatchOnly(), chats, Sampling(), desc="eval", chunk_size=4)
    assert [g.text for g in out] == [f"re: q{i}" for i in range(10)]
    assert "eval: 10/10 rows (100%)" in capsys.readouterr().err  # pytest's stderr is not a terminal
    with pytest.raises(GenerationFailed, match="4 of 10 generations failed") as info:
        generate_with_progress(BatchOnly(fail_chunk_containing="q5"), chats, Sampling(), chunk_size=4, progress=False)
    assert sorted(info.value.errors) == [4, 5, 6, 7] and info.value.results[0].text == "re: q0"
