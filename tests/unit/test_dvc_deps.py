"""dvc.yaml lists every code dependency of every stage, found from the code.

For each stage, the cft modules its command runs are found by walking the code from the
command's function in cft/cli.py: the imports it makes (lazy ones inside functions too),
the functions of cft it calls by name, transitively, and modules run by name in a
subprocess (`python -m cft.train.run`). Each module found must be covered by the stage's
`deps` (a file, or a folder above it); otherwise `dvc repro` would keep old results when
that code changes. Then, in a copy of the project, a change to the grader makes
`dvc status` report exactly the stages that use it.
"""

from __future__ import annotations

import ast
import json
import shlex
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "cft"
# The entry point of every command: what it does per stage is parse the arguments that
# dvc.yaml passes. As a dependency it would re-run every stage on any edit of any command.
NOT_A_DEP = {"cft/cli.py"}

Node = tuple  # ("module", name) | ("func", module, function)


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


class Module:
    """One parsed module: its top-level functions, its import-time code and what its imports bind."""

    def __init__(self, name: str):
        self.name, self.path = name, _module_file(name)
        self.is_package = self.path.name == "__init__.py"
        self.tree = ast.parse(self.path.read_text(encoding="utf-8"), filename=str(self.path))
        self.functions = {n.name: n for n in self.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        # At import: every statement but function bodies (class bodies whole: their methods run later,
        # but taking them with the class keeps the walk simple and errs on the safe side).
        self.import_time: list[ast.AST] = []
        for stmt in self.tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.import_time += [*stmt.decorator_list, *stmt.args.defaults, *filter(None, stmt.args.kw_defaults)]
            else:
                self.import_time.append(stmt)
        self.bindings = _bindings(self, self.import_time)

    @property
    def has_code(self) -> bool:
        """False for a module that is only a docstring: nothing in it can change a result."""
        body = self.tree.body
        return not (len(body) <= 1 and all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) for s in body))

    def resolve(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
        parts = parts[: len(parts) - node.level + 1]
        return ".".join(parts + ([node.module] if node.module else []))


@cache
def _module(name: str) -> Module:
    return Module(name)


def _is_ours(name: str) -> bool:
    return name.split(".")[0] == PACKAGE and _module_file(name) is not None


def _bindings(module: Module, code: list[ast.AST]) -> dict[str, Node]:
    """What the import statements in `code` bind: a name -> ("module", m) or ("symbol", m, attr)."""
    bound: dict[str, Node] = {}
    for part in code:
        for node in ast.walk(part):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        bound[alias.asname] = ("module", alias.name)
                    else:
                        bound[alias.name.split(".")[0]] = ("module", alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                source = module.resolve(node)
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    bound[alias.asname or alias.name] = ("module", full) if _is_ours(full) else ("symbol", source, alias.name)
    return bound


def _edges(module: Module, code: list[ast.AST]) -> set[Node]:
    """The modules and functions that running `code` (a part of `module`) imports or calls."""
    bound = {**module.bindings, **_bindings(module, code)}
    found: set[Node] = set()

    def symbol(mod: str, attr: str, hops: int = 0) -> None:
        """`mod.attr` is used: a submodule, a function of `mod`, or a name `mod` imported (re-exported)."""
        if _is_ours(f"{mod}.{attr}"):
            found.add(("module", f"{mod}.{attr}"))
        elif _is_ours(mod):
            found.add(("module", mod))
            target = _module(mod)
            if attr in target.functions:
                found.add(("func", mod, attr))
            elif attr in target.bindings and hops < 10:
                kind, *where = target.bindings[attr]
                if kind == "symbol":
                    symbol(*where, hops=hops + 1)
                elif _is_ours(where[0]):
                    found.add(("module", where[0]))

    for part in code:
        for node in ast.walk(part):
            if isinstance(node, ast.Import):
                found |= {("module", a.name) for a in node.names if _is_ours(a.name)}
            elif isinstance(node, ast.ImportFrom):  # imports the module; a name counts when it is used
                source = module.resolve(node)
                found |= {("module", m) for m in [source, *(f"{source}.{a.name}" for a in node.names)] if _is_ours(m)}
            elif isinstance(node, ast.Name):
                if node.id in module.functions:
                    found.add(("func", module.name, node.id))
                elif bound.get(node.id, ("",))[0] == "symbol":
                    _, mod, attr = bound[node.id]
                    symbol(mod, attr)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                target = bound.get(node.value.id)
                if target and target[0] == "module" and _is_ours(target[1]):
                    symbol(target[1], node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _is_ours(node.value):
                found.add(("module", node.value))  # a module run by name: `python -m cft.train.run`
    return found


def modules_run_by(entry: Node) -> set[str]:
    """Every cft module that running `entry` imports, transitively (with the packages above them)."""
    seen: set[Node] = set()
    todo = [entry]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if node[0] == "func":
            module = _module(node[1])
            todo.append(("module", node[1]))
            todo.extend(_edges(module, [module.functions[node[2]]]))
        else:
            parts = node[1].split(".")
            todo.extend(("module", ".".join(parts[:i])) for i in range(1, len(parts)) if _is_ours(".".join(parts[:i])))
            todo.extend(_edges(_module(node[1]), _module(node[1]).import_time))
    return {node[1] for node in seen if node[0] == "module"}


def _command_functions() -> dict[str, str]:
    """`cft <command>` -> the name of its function in cft/cli.py, as typer registers them."""
    from cft.cli import app

    return {info.name or info.callback.__name__.replace("_", "-"): info.callback.__name__ for info in app.registered_commands}


def _stages() -> dict[str, tuple[str, list[str]]]:
    """Each stage of dvc.yaml (as DVC resolves it) -> (its command line, its file deps)."""
    from cft.stages.graph import open_repo

    from dvc.dependency.param import ParamsDependency

    with open_repo(REPO) as repo:
        return {
            stage.name: (
                stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd),
                [Path(d.fs_path).relative_to(REPO).as_posix() for d in stage.deps if not isinstance(d, ParamsDependency)],
            )
            for stage in repo.index.stages
        }


def code_of(cmd: str) -> Node:
    words = shlex.split(cmd)
    commands = _command_functions()
    assert len(words) >= 2 and words[0] == "cft" and words[1] in commands, f"not a `cft <command>` line: {cmd!r}"
    return ("func", "cft.cli", commands[words[1]])


def _path(module: str) -> str:
    return _module_file(module).relative_to(REPO).as_posix()


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


STAGES = _stages()


def needed_by(stage: str) -> list[str]:
    """The files of cft that stage's command runs (those with code), sorted."""
    cmd, _ = STAGES[stage]
    return sorted(_path(m) for m in modules_run_by(code_of(cmd)) if _module(m).has_code and _path(m) not in NOT_A_DEP)


def _code_files(folder: str) -> list[str]:
    modules = (".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for p in (REPO / folder).rglob("*.py"))
    return sorted(_path(m) for m in modules if _module(m).has_code and _path(m) not in NOT_A_DEP)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_module_a_stage_runs_is_a_dependency(stage):
    deps = STAGES[stage][1]
    missing = [path for path in needed_by(stage) if not _covered(path, deps)]
    assert not missing, f"dvc.yaml: stage {stage!r} runs {', '.join(missing)} but does not list it in its deps"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_lists_only_code_it_runs(stage):
    # A file the stage does not run (or a folder with such a file) would re-run it for nothing.
    needed = set(needed_by(stage))
    code_deps = [dep for dep in STAGES[stage][1] if dep.startswith(f"{PACKAGE}/")]
    unused = [dep for dep in code_deps if not set(_code_files(dep) if (REPO / dep).is_dir() else [dep]) <= needed]
    assert not unused, (
        f"dvc.yaml: stage {stage!r} lists {', '.join(unused)} but runs only "
        f"{', '.join(p for p in sorted(needed) if any(_covered(p, [d]) for d in unused)) or 'nothing'} of it"
    )


def test_the_walk_finds_lazy_imports_and_modules_run_by_name():
    found = modules_run_by(code_of("cft train --train-dir d --out o"))
    assert "cft.config" in found  # params, through the CLI's helper
    assert "cft.train.run" in found  # started as `python -m cft.train.run` under accelerate
    assert "cft.cli" in found and "cft.stages.train" in found  # the command's own lazy import
    assert "cft.validate.suite" not in found


# --- the grader changes: DVC re-runs exactly the stages that grade ---------------------------


def _dummy_outputs(root: Path) -> None:
    """Stand-ins for every stage output, so that `dvc commit` can record a finished pipeline."""
    from cft.stages.graph import open_repo

    with open_repo(root) as repo:
        for stage in repo.index.stages:
            for out in stage.outs:
                path = Path(out.fs_path)
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(f"{path.name}\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "part.txt").write_text(f"{path.name}\n")
        for stage in repo.index.stages:  # a file some stage reads inside another's output folder
            for dep in stage.deps:
                path = Path(dep.fs_path)
                if not path.exists() and path.suffix and not path.name.endswith(".yaml"):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(f"{path.name}\n")


def _committed_copy(tmp_path, repo_root):
    """A copy of the project whose stages DVC sees as up to date (placeholder outputs committed)."""
    from project_copy import copy_project, project_env, run

    root = copy_project(repo_root, tmp_path / "project")
    env = project_env()
    _dummy_outputs(root)
    run([sys.executable, "-m", "dvc", "commit", "--force", "--quiet"], root, env)
    return root, env


@pytest.mark.integration
def test_a_grader_change_reruns_exactly_the_stages_that_grade(tmp_path, repo_root):
    from project_copy import run

    from cft.stages.graph import downstream, stage_graph

    root, env = _committed_copy(tmp_path, repo_root)
    assert json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], root, env)) == {}

    grader = root / "cft/evaluate/grade.py"
    grader.write_text(grader.read_text() + "\n# a change to the grader\n")
    changed = set(json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], root, env)))
    graders = {s for s, (cmd, _) in STAGES.items() if "cft.evaluate.grade" in modules_run_by(code_of(cmd))}
    assert {"respond", "evaluate@cft", "baseline@base"} <= graders
    assert changed == graders, f"dvc status: {sorted(changed)}; stages that run the grader: {sorted(graders)}"
    # and what follows them, as their outputs change; never the stages before
    g = stage_graph(root)
    rerun = {s.split("@")[0] for s in set().union(*(downstream(g, s) for s in changed))}
    assert not rerun & {"tiny_model", "ingest"}
    assert {"respond", "critique", "validate", "build", "train", "evaluate", "baseline", "report", "register"} <= rerun


@pytest.mark.integration
def test_adding_a_baseline_evaluates_only_that_model(tmp_path, repo_root):
    # Baselines are their own params section: no evaluate@<mode> stage depends on it, and each
    # baseline stage has its model in its command, so a new one re-evaluates nothing else.
    from project_copy import edit_params

    from cft.stages.graph import stale

    root, env = _committed_copy(tmp_path, repo_root)
    assert stale(root, ["evaluate", "baseline", "report"]) == []

    edit_params(root, lambda p: p["baselines"].update(other="models/other"))
    assert stale(root, ["evaluate", "baseline", "report"]) == ["baseline@other", "report"]


def suggested_deps(stage: str) -> list[str]:
    """The code deps `stage` needs: a folder where the stage runs all of its code, files otherwise."""
    needed = needed_by(stage)
    folders = sorted({p.rsplit("/", 1)[0] for p in needed if p.count("/") > 1}, key=lambda f: f.count("/"))
    deps, done = [], set()
    for folder in folders:
        files = _code_files(folder)
        if len(files) > 1 and set(files) <= set(needed) and not set(files) & done:
            deps.append(folder)
            done |= set(files)
    return sorted(deps + [p for p in needed if p not in done])


if __name__ == "__main__":  # python tests/unit/test_dvc_deps.py: the cft/ deps each stage should list
    for name in sorted(STAGES):
        print(f"{name}:\n" + "".join(f"  - {dep}\n" for dep in suggested_deps(name)))
