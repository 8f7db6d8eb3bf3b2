import pytest

from cft.data.ids import content_id
from cft.data.io import DataError, iter_records, read_jsonl, write_jsonl


def test_content_id_is_stable_and_order_free():
    assert content_id({"a": 1, "b": 2}) == content_id({"b": 2, "a": 1})
    assert content_id("x", 1) != content_id("x", 2)


def test_roundtrip_and_atomic_write(tmp_path):
    path = tmp_path / "sub" / "rows.jsonl"
    assert write_jsonl(path, [{"a": 1}, {"a": "é"}]) == 2
    assert read_jsonl(path) == [{"a": 1}, {"a": "é"}]
    assert not list(path.parent.glob(".*.tmp"))


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [{"a": 1}]


def test_bad_lines_are_records_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"ok": 1}\n{"broken": \n\xff\xfe\n[1, 2]\n')
    records = list(iter_records(path))
    assert [r.line for r in records] == [1, 2, 3, 4]
    assert records[0].data == {"ok": 1}
    assert "bad.jsonl:2: malformed JSON" in records[1].error
    assert "bad.jsonl:3: not valid UTF-8" in records[2].error
    assert "bad.jsonl:4: expected a JSON object" in records[3].error
    with pytest.raises(DataError, match="bad.jsonl:2"):
        read_jsonl(path)
