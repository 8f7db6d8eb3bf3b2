"""Lineage: what a training run was made from, so any model version leads back to its data.

`collect_lineage` reads files only (dvc.yaml and dvc.lock through DVC's own API in
cft.stages.graph, git, params); `log_lineage` writes the result onto an MLflow run; the
register stage copies the run's `lineage.*` tags onto the model version. Tag names are
stable (other code reads them, e.g. the retraining decision in cft.registry.retrain):

    lineage.dvc.<path>               md5 of an upstream DVC output as dvc.lock writes it
                                     (directories end in `.dir`), e.g.
                                     lineage.dvc.data/validated, lineage.dvc.data/critiques.jsonl,
                                     lineage.dvc.data/problems.jsonl, lineage.dvc.data/responses.jsonl,
                                     lineage.dvc.data/train, lineage.dvc.models/tiny; also source
                                     data that no stage produces (lineage.dvc.sources/problems).
                                     Register adds the checkpoint's own: lineage.dvc.models/cft.
    lineage.dvc_lock                 "found" or "missing" (a run outside `dvc repro`)
    lineage.git.commit               HEAD's sha, or "none" outside git / before the first commit
    lineage.git.dirty                "true" / "false": tracked files differ from HEAD
                                     (dvc.lock excluded: DVC rewrites it during every repro,
                                     and its content is recorded above)
    lineage.params.md5               md5 of the resolved params of the stages up to train
    lineage.train.base_model         the base model's hub id or path
    lineage.train.mode               cft | sft_noisy | sft_verified | sft_teacher
    lineage.critique.teachers        ";"-joined teachers: `reference` or `llm:<model>:<prompt_version>`
    lineage.critique.prompt_versions ","-joined sorted prompt versions of LLM teachers, or "none"
    lineage.critique.imports         ";"-joined imported critique files, or "none"
    lineage.ingest.sources           ";"-joined `<path>:<format>:<limit or all>`

The resolved params are also logged as MLflow params (`train.learning_rate`, ...) and
in full as the run artifact `lineage/params.json`; secrets never are (only the names
of the variables that hold API keys are in params, and anything named like a secret
is masked).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

PREFIX = "lineage."
DVC_PREFIX = "lineage.dvc."
TRAIN_STAGE = "train"
# Sections that say how a model was made; `orchestrate` only says when.
LINEAGE_SECTIONS = ("tiny_model", "ingest", "respond", "critique", "validate", "build", "train")
# Code is versioned by the git commit; only data dependencies get a dvc tag.
CODE_PREFIXES = ("cft/", "flows/", "configs/", "tests/", "scripts/")
_SECRET_KEY = re.compile(r"(api_?key|token|secret|password|credential)s?$", re.IGNORECASE)
_BAD_TAG_CHARS = re.compile(r"[^/\w.\- :]")
_URL_USERINFO = re.compile(r"//[^/@\s]+@")


def tag_name(prefix: str, path: str) -> str:
    """A valid MLflow tag key for a path (MLflow allows / . - _ : and spaces)."""
    return prefix + _BAD_TAG_CHARS.sub("_", path.strip("/"))


def dvc_hashes(root: Path, stage: str = TRAIN_STAGE) -> dict[str, str] | None:
    """md5 per path of the outputs of `stage`'s upstream stages (as dvc.lock records them),
    plus the data those stages read that no stage produces. None when there is no dvc.lock."""
    from cft.stages.graph import upstream_data

    return upstream_data(Path(root), stage, exclude_prefixes=CODE_PREFIXES)


def git_state(root: Path) -> tuple[str, bool]:
    """(HEAD sha or "none", dirty). No commit yet counts as dirty: nothing to check out."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "none", True
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock")
        return head.stdout.strip(), bool(status.stdout.strip()) or status.returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        return "none", True


def redact(obj: Any) -> Any:
    """Mask values whose key looks like a secret; `*_env` keys hold variable names and stay."""
    if isinstance(obj, dict):
        return {k: "***" if _SECRET_KEY.search(str(k)) and v else redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return _URL_USERINFO.sub("//***@", obj)  # https://user:key@host
    return obj


def resolved_params(params) -> dict[str, Any]:
    """The params sections that made the model, as plain JSON data, secrets masked."""
    data = params.model_dump(mode="json", by_alias=True)
    return redact({k: data[k] for k in LINEAGE_SECTIONS if k in data})


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}; lists stay whole values."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: obj}


def _teacher(t) -> str:
    return "reference" if t.kind == "reference" else f"llm:{t.model}:{t.prompt_version}"


def collect_lineage(root: Path, params) -> dict[str, str]:
    """Lineage tags (names in the module docstring) for a run trained in project `root`."""
    root = Path(root)
    commit, dirty = git_state(root)
    hashes = dvc_hashes(root)
    data = resolved_params(params)
    llm_versions = sorted({t.prompt_version for t in params.critique.teachers if t.kind == "llm"})
    tags = {
        "lineage.git.commit": commit,
        "lineage.git.dirty": str(dirty).lower(),
        "lineage.dvc_lock": "missing" if hashes is None else "found",
        "lineage.params.md5": hashlib.md5(json.dumps(data, sort_keys=True).encode()).hexdigest(),
        "lineage.train.base_model": params.train.base_model,
        "lineage.train.mode": params.train.mode,
        "lineage.critique.teachers": ";".join(_teacher(t) for t in params.critique.teachers) or "none",
        "lineage.critique.prompt_versions": ",".join(llm_versions) or "none",
        "lineage.critique.imports": ";".join(i.path for i in params.critique.imports) or "none",
        "lineage.ingest.sources": ";".join(f"{s.path}:{s.format}:{s.limit or 'all'}" for s in params.ingest.sources),
    }
    for path, md5 in (hashes or {}).items():
        tags[tag_name(DVC_PREFIX, path)] = md5
    return tags


def log_lineage(client, run_id: str, lineage: dict[str, str], params=None) -> None:
    """Write lineage tags on a run; with `params`, also the resolved params (MLflow params
    + `lineage/params.json`). Params already on the run are left alone (they are immutable)."""
    from mlflow.entities import Param, RunTag
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

    tags = [RunTag(k, v) for k, v in lineage.items()]
    for i in range(0, len(tags), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=tags[i : i + MAX_PARAMS_TAGS_PER_BATCH])
    if params is None:
        return
    data = resolved_params(params)
    client.log_dict(run_id, data, "lineage/params.json")
    logged = client.get_run(run_id).data.params
    new = [
        Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v))
        for k, v in flatten(data).items()
        if k not in logged
    ]
    # A long value (a list of models) is cut in the param; params.json has it whole.
    new = [Param(p.key, p.value[:MAX_PARAM_VAL_LENGTH]) for p in new]
    for i in range(0, len(new), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=new[i : i + MAX_PARAMS_TAGS_PER_BATCH])


def run_lineage(client, run_id: str) -> dict[str, str]:
    """The `lineage.*` tags of a run (to copy onto its model version)."""
    return {k: v for k, v in client.get_run(run_id).data.tags.items() if k.startswith(PREFIX)}
