"""TRL's `SFTConfig` fields (names, simple types, literal defaults), read without importing TRL.

Every stage validates params.yaml before it runs, in milliseconds; importing `trl` pulls in
torch and transformers (seconds). So the dataclass fields of `SFTConfig` and its bases
(`TrainingArguments` -> TRL's `_BaseConfig` -> `SFTConfig`) are read from the installed
sources with `ast`: an unknown key or a value of the wrong basic type is caught when params
load, and SFTConfig itself validates the values when training starts. Should a future TRL
move those classes, the real class is imported instead (slower, same answer).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import pickle
import subprocess
import sys
import threading
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

MISSING = dataclasses.MISSING

# Where each class of the chain is defined: (package, file inside it, class); later ones win.
_CHAIN = (
    ("transformers", "training_args.py", "TrainingArguments"),
    ("trl", "trainer/base_config.py", "_BaseConfig"),
    ("trl", "trainer/sft_config.py", "SFTConfig"),
)
_SIMPLE = {"int": int, "float": float, "bool": bool, "str": str, "dict": dict, "list": list, "Any": Any,
           "None": type(None), "Dict": dict, "List": list}


@dataclasses.dataclass(frozen=True)
class SFTField:
    name: str
    type: Any  # a typing annotation pydantic can validate (Any where the source type is not a builtin)
    default: Any  # the literal default, or MISSING (a factory or an expression)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # a top-level package: found, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _annotation(node: ast.AST | None) -> Any:
    """A source annotation as a typing object made of builtins; anything else is Any."""
    if node is None:
        return Any
    if isinstance(node, ast.Constant):
        return type(None) if node.value is None else Any  # a string is a forward reference
    if isinstance(node, ast.Name):
        return _SIMPLE.get(node.id, Any)
    if isinstance(node, ast.Attribute):
        return _SIMPLE.get(node.attr, Any)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([_annotation(node.left), _annotation(node.right)])
    if isinstance(node, ast.Subscript):
        outer = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "")
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if outer == "Optional":
            return _union([_annotation(args[0]), type(None)])
        if outer == "Union":
            return _union([_annotation(a) for a in args])
        if outer in ("list", "List"):
            return list
        if outer in ("dict", "Dict"):
            return dict
        if outer == "Literal" and all(isinstance(a, ast.Constant) for a in args):
            return Literal[tuple(a.value for a in args)]
    return Any


def _union(members: list[Any]) -> Any:
    if any(m is Any for m in members):
        return Any
    return Union[tuple(members)]  # noqa: UP007 (built from a runtime list)


def _default(value: ast.AST | None) -> Any:
    """`= X` or `field(default=X)` with a literal X; MISSING otherwise."""
    if value is None:
        return MISSING
    if isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) == "field":
        value = next((k.value for k in value.keywords if k.arg == "default"), None)
        if value is None:
            return MISSING
    try:
        return ast.literal_eval(value)
    except ValueError:
        return MISSING


def _class_fields(path: Path, class_name: str) -> dict[str, SFTField] | None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {
                stmt.target.id: SFTField(stmt.target.id, _annotation(stmt.annotation), _default(stmt.value))
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and not stmt.target.id.startswith("_") and "ClassVar" not in ast.unparse(stmt.annotation)
            }
    return None


def _from_sources() -> dict[str, SFTField] | None:
    fields: dict[str, SFTField] = {}
    for package, relative, class_name in _CHAIN:
        root = _package_dir(package)
        path = root / relative if root else None
        found = _class_fields(path, class_name) if path and path.is_file() else None
        if not found:
            return None
        fields.update(found)
    return fields


def _from_import() -> dict[str, SFTField]:
    from trl import SFTConfig

    hints = typing.get_type_hints(SFTConfig)
    return {
        f.name: SFTField(f.name, _simplify(hints.get(f.name, Any)), f.default)
        for f in dataclasses.fields(SFTConfig)
        if f.init and not f.name.startswith("_")
    }


def _simplify(hint: Any) -> Any:
    if hint in (int, float, bool, str, dict, list, type(None)):
        return hint
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return _union([_simplify(a) for a in typing.get_args(hint)])
    if origin in (list, dict):
        return origin
    return Any


@functools.cache
def sft_fields() -> dict[str, SFTField]:
    """Every init field of TRL's SFTConfig by name.

    CPython 3.11 keeps one AST-construction recursion counter for all threads (gh-106905):
    two threads building ASTs at once fail with "AST constructor recursion depth mismatch",
    and a Prefect worker parses flow sources on its own threads. So the sources are parsed
    here only while this is the process's one thread, else in a child process.
    """
    if threading.active_count() == 1:
        return _from_sources() or _from_import()
    child = subprocess.run([sys.executable, "-m", "cft.train.sft_fields"], capture_output=True)
    if child.returncode != 0:  # its traceback, not just its exit code
        raise RuntimeError(f"reading TRL's SFTConfig fields in a child process failed with exit code "
                           f"{child.returncode}:\n{child.stderr.decode(errors='replace').strip()}")
    return {name: SFTField(name, kind, MISSING if missing else default)
            for name, kind, default, missing in pickle.loads(child.stdout)}


def _pickled_fields() -> bytes:
    """For the child process: the fields as plain tuples (MISSING is a sentinel, not a value)."""
    fields = _from_sources() or _from_import()
    return pickle.dumps([(f.name, f.type, None if f.default is MISSING else f.default, f.default is MISSING)
                         for f in fields.values()])


__all__ = ["MISSING", "SFTField", "sft_fields"]


if __name__ == "__main__":  # the child of sft_fields(): the fields, pickled, on stdout
    from cft.train.sft_fields import _pickled_fields

    sys.stdout.buffer.write(_pickled_fields())
