"""The stage graph of dvc.yaml, answered by DVC itself: order, upstream, outputs, hashes, staleness.

Every part of the project that asks about the pipeline's structure asks here (the flows,
lineage, register, the retraining decision); nothing else reads dvc.yaml or dvc.lock.

Stages are named as `dvc` commands name them: `train`, or `train@cft` for a stage that
`foreach`/`matrix` generates; a name that is a `foreach` group (`train`) stands for all of
its stages. Paths are relative to the project root, with `/`.

DVC's Python API resolves targets against the working directory; every call here passes
absolute targets instead, so the caller's working directory does not matter. A folder
with dvc.yaml but no `dvc init` (a registry test's project) works too: hashes then come
from its dvc.lock alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DVC_YAML = "dvc.yaml"
DVC_LOCK = "dvc.lock"


@contextmanager
def open_repo(root: Path) -> Iterator:
    """DVC's `Repo` for the project at `root`, closed afterwards."""
    from dvc.repo import Repo

    with Repo(str(Path(root).resolve()), uninitialized=True) as repo:
        yield repo


def _root(repo) -> Path:
    return Path(repo.root_dir)


def _name(stage, root: Path) -> str:
    """DVC's addressing of a stage, relative to the project root instead of the working directory."""
    dvcfile = Path(stage.path)
    if getattr(stage, "name", None) is None:  # a .dvc file
        return os.path.relpath(dvcfile, root)
    if dvcfile == root / DVC_YAML:
        return stage.name
    return f"{Path(os.path.relpath(dvcfile, root)).as_posix()}:{stage.name}"


def _target(root: Path, name: str) -> str:
    return name if ":" in name else f"{root / DVC_YAML}:{name}"


def _rel(path: str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _stages(repo, names: list[str] | None = None) -> list:
    """The stages `names` stand for (a `foreach` group name stands for all of its stages)."""
    if names is None:
        return list(repo.index.stages)
    from dvc.exceptions import NoOutputOrStageError
    from dvc.stage.exceptions import StageNotFound

    found = []
    for name in names:
        try:
            found += [s for s in repo.stage.collect(_target(_root(repo), name)) if s not in found]
        except (StageNotFound, NoOutputOrStageError):
            known = ", ".join(sorted(_name(s, _root(repo)) for s in repo.index.stages))
            raise KeyError(f"no stage {name!r} in {_root(repo) / DVC_YAML} (stages: {known})") from None
    return found


# --- the graph, as plain data ------------------------------------------------------------


def stage_graph(root: Path) -> dict[str, list[str]]:
    """Each stage with the stages it directly depends on."""
    with open_repo(root) as repo:
        graph, base = repo.index.graph, _root(repo)
        # DVC's graph points from a stage to the stages it depends on.
        return {_name(s, base): sorted(_name(d, base) for d in graph.successors(s)) for s in graph.nodes}


def topological(graph: dict[str, list[str]]) -> list[str]:
    """Stages in dependency order; ties broken by name so the order is stable."""
    import networkx as nx

    dag = nx.DiGraph()
    dag.add_nodes_from(graph)
    dag.add_edges_from((dep, name) for name, deps in graph.items() for dep in deps)
    try:
        return list(nx.lexicographical_topological_sort(dag))
    except nx.NetworkXUnfeasible:
        raise ValueError(f"dependency cycle in the stage graph: {nx.find_cycle(dag)}") from None


def _members(graph: dict[str, list[str]], name: str) -> list[str]:
    """`name` itself, or the stages of the `foreach` group `name`."""
    members = [s for s in graph if s == name or s.startswith(f"{name}@")]
    if not members:
        raise KeyError(f"no stage {name!r} in dvc.yaml (stages: {', '.join(sorted(graph))})")
    return members


def upstream(graph: dict[str, list[str]], target: str) -> list[str]:
    """`target` and every stage it depends on, in dependency order."""
    needed: set[str] = set()
    todo = _members(graph, target)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(graph.get(name, []))
    return [name for name in topological(graph) if name in needed]


def downstream(graph: dict[str, list[str]], target: str) -> list[str]:
    """`target` and every stage that depends on it, in dependency order."""
    after = {name for name in graph if set(_members(graph, target)) & set(upstream(graph, name))}
    return [name for name in topological(graph) if name in after]


def order(root: Path) -> list[str]:
    """Every stage of the project, in dependency order."""
    return topological(stage_graph(root))


# --- outputs and the hashes dvc.lock records ----------------------------------------------


def outputs(root: Path, stage: str, *, metrics: bool | None = None) -> list[str]:
    """The output paths of `stage` (with `metrics`, only its metrics files or only the others)."""
    with open_repo(root) as repo:
        base = _root(repo)
        return [
            _rel(out.fs_path, base)
            for s in _stages(repo, [stage])
            for out in s.outs
            if metrics is None or bool(out.metric) == metrics
        ]


def producer(root: Path, path: str) -> str | None:
    """The stage that has `path` as an output, or None (no such stage, or no dvc.yaml)."""
    root = Path(root).resolve()
    if not (root / DVC_YAML).exists():
        return None
    with open_repo(root) as repo:
        base = _root(repo)
        wanted = (base / path).resolve()
        return next((_name(s, base) for s in repo.index.stages for out in s.outs if Path(out.fs_path) == wanted), None)


def uncached_outputs(root: Path) -> list[str]:
    """Outputs that DVC leaves to git (`cache: false`: metrics, plots): users commit them."""
    with open_repo(root) as repo:
        base = _root(repo)
        return sorted(_rel(out.fs_path, base) for s in repo.index.stages for out in s.outs if not out.use_cache)


def _hash(entry) -> str | None:
    info = entry.hash_info
    return info.value if info and info.value else None


def recorded_outputs(root: Path) -> dict[str, str]:
    """md5 of every stage output as dvc.lock records it ({} without dvc.lock); folders end in `.dir`."""
    with open_repo(root) as repo:
        base = _root(repo)
        return {_rel(out.fs_path, base): md5 for s in repo.index.stages for out in s.outs if (md5 := _hash(out))}


def recorded_md5(root: Path, path: str) -> str | None:
    """The md5 dvc.lock records for `path` as some stage's output, or None."""
    return recorded_outputs(root).get(path.rstrip("/"))


def _file_deps(stage) -> list:
    from dvc.dependency.param import ParamsDependency

    return [dep for dep in stage.deps if not isinstance(dep, ParamsDependency)]


def upstream_data(root: Path, stage: str, *, exclude_prefixes: tuple[str, ...] = ()) -> dict[str, str] | None:
    """What `stage` was (or will be) made from, as dvc.lock records it: the outputs of every
    stage upstream of it, and the files those stages read that no stage produces (source
    data), except paths starting with `exclude_prefixes` (code). None without dvc.lock."""
    root = Path(root).resolve()
    if not (root / DVC_LOCK).exists():
        return None
    graph = stage_graph(root)
    names = set(upstream(graph, stage)) - set(_members(graph, stage))
    with open_repo(root) as repo:
        base = _root(repo)
        every = list(repo.index.stages)
        produced = {_rel(out.fs_path, base) for s in every for out in s.outs}
        hashes: dict[str, str] = {}
        for s in every:
            if _name(s, base) not in names:
                continue
            for out in s.outs:
                if md5 := _hash(out):
                    hashes[_rel(out.fs_path, base)] = md5
            for dep in _file_deps(s):
                path = _rel(dep.fs_path, base)
                if (md5 := _hash(dep)) and path not in produced and not path.startswith(exclude_prefixes):
                    hashes[path] = md5
        return dict(sorted(hashes.items()))


def stage_inputs(root: Path, stage: str) -> dict[str, str | None]:
    """The dependencies of `stage` that other stages produce, with the md5 dvc.lock records
    for them as outputs (None when not produced yet): the data `stage` reads next time."""
    with open_repo(root) as repo:
        base = _root(repo)
        made = {_rel(out.fs_path, base): _hash(out) for s in repo.index.stages for out in s.outs}
        paths = {_rel(dep.fs_path, base) for s in _stages(repo, [stage]) for dep in _file_deps(s)}
        return {path: made[path] for path in sorted(paths) if path in made}


# --- what is stale, what ran -------------------------------------------------------------


def resolve(root: Path, stages: list[str]) -> list[str]:
    """The stages `stages` name, as DVC names them (a `foreach` group name: all of its stages)."""
    with open_repo(root) as repo:
        return [_name(s, _root(repo)) for s in _stages(repo, stages)]


def stale(root: Path, stages: list[str]) -> list[str]:
    """Those of `stages` that `dvc repro` would run now (`dvc status`: changed deps, params,
    outputs or command), by name; a `foreach` group name stands for its stages."""
    with open_repo(root) as repo:
        base = _root(repo)
        found = _stages(repo, stages)
        changed = repo.status(targets=[_target(base, _name(s, base)) for s in found])
        return [_name(s, base) for s in found if changed.get(s.addressing)]
