"""A model logged by reference: MLflow stores a small pointer, the weights stay where DVC keeps them.

For a 7B checkpoint, copying ~15 GB into the MLflow artifact store duplicates what DVC
already versions (and pushes to its remote). MLflow's large-model guidance is to keep
weights out of the logged model and record where they are (cf. the transformers
flavour's `save_pretrained=False`, which stores a hub repo + commit instead). Here the
pointer is the pyfunc's `model_config`:

    {"kind": "cft-checkpoint-ref/v1", "project_root": "/abs/project", "path": "models/cft",
     "dvc_md5": "<md5>.dir" | null, "git_commit": "<sha>" | "none"}

At load time `resolve_checkpoint` finds the exact weights, in this order:
1. the DVC cache (content-addressed, so a later training run cannot change them): the
   `.dir` listing of `dvc_md5` is turned into a folder of symlinks to the cached files;
2. the checkpoint folder itself, when no md5 was recorded, or dvc.lock still records
   the same md5 for it (the workspace holds that version);
3. otherwise a FileNotFoundError that says how to restore it
   (`git checkout <commit> && dvc pull <path>`, or `dvc fetch` on this machine).
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

KIND = "cft-checkpoint-ref/v1"
LINKS_DIR = "cft-checkpoints"  # under the system temp dir: symlink folders, reused across loads


def make_ref(root: Path, model_dir: Path, git_commit: str = "none") -> dict:
    """The pointer for `model_dir`, with the md5 dvc.lock records for it (if any)."""
    from cft.stages.graph import recorded_md5

    root, model_dir = Path(root).resolve(), Path(model_dir).resolve()
    try:
        path = model_dir.relative_to(root).as_posix()
    except ValueError:
        path = str(model_dir)  # outside the project: an absolute path, no DVC
    return {"kind": KIND, "project_root": str(root), "path": path, "dvc_md5": recorded_md5(root, path), "git_commit": git_commit}


def dvc_cache_dir(root: Path) -> Path:
    """The project's DVC cache (`cache.dir` in .dvc/config[.local], else .dvc/cache)."""
    dvc_dir = Path(root) / ".dvc"
    cache_dir = None
    for name in ("config", "config.local"):  # .local wins, as in DVC
        parser = configparser.ConfigParser()
        try:
            parser.read(dvc_dir / name)
        except configparser.Error:
            continue
        if parser.has_option("cache", "dir"):
            cache_dir = parser.get("cache", "dir")
    if not cache_dir:
        return dvc_dir / "cache"
    return (dvc_dir / cache_dir).resolve()


def _cache_object(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def checkout_from_cache(root: Path, md5: str) -> Path | None:
    """A folder of symlinks into the DVC cache holding directory `md5`, or None if not cached."""
    if not md5.endswith(".dir"):
        return None
    cache = dvc_cache_dir(root)
    listing = _cache_object(cache, md5)
    if not listing.exists():
        return None
    entries = json.loads(listing.read_text())
    sources = [(e["relpath"], _cache_object(cache, e["md5"])) for e in entries]
    if not all(src.exists() for _, src in sources):
        return None
    # Keyed by cache too: the same content in another project's cache is another set of files.
    cache_key = hashlib.sha256(str(cache.resolve()).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / LINKS_DIR / f"{cache_key}-{md5.removesuffix('.dir')}"
    if target.exists():
        if all((target / relpath).exists() for relpath, _ in sources):  # exists() follows the links
            return target
        shutil.rmtree(target, ignore_errors=True)  # links left dangling by a cache cleanup
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    for relpath, src in sources:
        link = building / relpath
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(src)
    try:
        os.rename(building, target)  # atomic; another loader may have won the race
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
    return target


def resolve_checkpoint(ref: dict) -> Path:
    """The local folder holding exactly the weights `ref` points to (see module docstring)."""
    from cft.stages.graph import recorded_md5

    if ref.get("kind") != KIND:
        raise ValueError(f"not a cft checkpoint reference: {ref!r}")
    root, md5 = Path(ref["project_root"]), ref.get("dvc_md5")
    path = Path(ref["path"]) if Path(ref["path"]).is_absolute() else root / ref["path"]
    if md5:
        cached = checkout_from_cache(root, md5)
        if cached is not None:
            return cached
    if path.exists() and (not md5 or recorded_md5(root, ref["path"]) == md5):
        return path
    raise FileNotFoundError(
        f"checkpoint {ref['path']} (dvc md5 {md5}) is neither in the DVC cache of {root} nor in the workspace; "
        f"restore it with `git checkout {ref.get('git_commit')} && dvc pull {ref['path']}` in {root}"
    )
