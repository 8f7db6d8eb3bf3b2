"""One writer at a time for a registered model's versions and aliases.

Deciding a promotion is read-compare-write (read the champion's score, compare, move
the alias); two registers doing it at once could both read the old champion and the
worse one could win by writing last. MLflow has no conditional alias update, so the
read-decide-write runs under a lock:

- SQLite (and other local) stores: an OS file lock (`fcntl.flock`) on a file beside the
  database. The OS releases it when the holder dies, so it never goes stale.
- Any other store (an MLflow server, PostgreSQL, ...): a lock held *in the registry*:
  creating a registered model `<name>.cft-lock` succeeds for exactly one caller (the
  name is unique in the backend), deleting it releases. A holder that died leaves it
  behind, so a lock older than `stale_after_s` is broken. It is visible in the UI while
  held (seconds).
"""

from __future__ import annotations

import random
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

LOCK_SUFFIX = ".cft-lock"
OWNER_TAG = "cft.lock.owner"


def local_lock_file(tracking_uri: str, name: str) -> Path | None:
    """The lock file for a local store, or None for a remote one."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])
        return db.with_name(f"{db.name}.{_safe(name)}.lock")
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("", "file"):
        store = Path(parsed.path if parsed.scheme else tracking_uri)
        return store / f".{_safe(name)}.lock"
    return None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@contextmanager
def file_lock(path: Path, timeout_s: float = 600.0):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(path, "a+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"registry lock {path} held for more than {timeout_s:.0f} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def registry_model_lock(client, name: str, timeout_s: float = 600.0, stale_after_s: float = 900.0):
    from mlflow.exceptions import MlflowException

    lock_name = name + LOCK_SUFFIX
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"registry lock {lock_name} not acquired in {timeout_s:.0f} s (delete it if stale)")
        try:
            client.create_registered_model(lock_name, tags={OWNER_TAG: owner}, description="cft registry lock; safe to delete if stale")
            break
        except MlflowException:
            try:
                held = client.get_registered_model(lock_name)
            except MlflowException:
                time.sleep(0.05)
                continue  # released in between: try again
            if held.tags.get(OWNER_TAG) == owner:
                break  # our create went through but its reply was lost
            if time.time() - held.creation_timestamp / 1000 > stale_after_s:
                _delete_quietly(client, lock_name)  # its holder died
                continue
            time.sleep(0.1 + random.random() * 0.2)
    try:
        yield
    finally:
        _delete_quietly(client, lock_name)


def _delete_quietly(client, lock_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(lock_name)
    except MlflowException:
        pass


@contextmanager
def registry_lock(client, name: str, timeout_s: float = 600.0):
    """Hold the lock for registered model `name` in `client`'s registry (see module docstring)."""
    path = local_lock_file(getattr(client, "_registry_uri", None) or client.tracking_uri, name)
    if path is not None:
        with file_lock(path, timeout_s):
            yield
    else:
        with registry_model_lock(client, name, timeout_s):
            yield
