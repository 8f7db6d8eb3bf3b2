"""Register, promote and roll back against a real MLflow tracking server (SQLite + local artifacts).

Against a server the registry lock is a lock model in the registry itself
(cft.registry.locking), so this also checks that no lock is left behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from registry_helpers import (
    build_checkpoint,
    fake_training_run,
    make_project,
    register,
    write_eval,
)

from cft.registry import manage
from cft.registry.locking import LOCK_SUFFIX

pytestmark = pytest.mark.integration
NAME = "cft-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, tiny checkpoint): the checkpoint is built while the server starts."""
    home = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    cmd = [
        str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{home / 'server.db'}", "--default-artifact-root", str(home / "artifacts"),
    ]  # fmt: skip
    log = open(home / "server.log", "w")
    # Own process group: the server starts uvicorn as a child; both are stopped together.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        checkpoint = build_checkpoint(home / "tiny")
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(home / 'server.log').read_text()[-3000:]}")
            time.sleep(0.25)
        yield url, checkpoint
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_register_promote_rollback_through_a_server(server, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    url, checkpoint = server
    root, params = make_project(tmp_path / "project", tracking_uri=url)
    client = MlflowClient(url)

    first = register(params, root, fake_training_run(params, root, checkpoint, "a"), write_eval(root, "a", 50.0))
    assert first["champion"] and first["version"] == 1
    assert client.get_model_version(NAME, "1").tags["lineage.dvc_lock"] == "missing"

    # a worse run, registered twice at once through the server's lock: one version, not promoted
    model_b, eval_b = fake_training_run(params, root, checkpoint, "b"), write_eval(root, "b", 40.0)
    results = []
    threads = [threading.Thread(target=lambda: results.append(register(params, root, model_b, eval_b))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 2 and {r["version"] for r in results} == {2}
    assert not any(r["champion"] for r in results)
    assert len(client.search_model_versions(f"name='{NAME}'")) == 2
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"

    assert manage.promote(client, NAME, 2, reason="manual check") == "1"
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert manage.rollback(client, NAME) == "1"
    assert not [m for m in client.search_registered_models() if m.name.endswith(LOCK_SUFFIX)]

    mlflow.set_tracking_uri(url)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert isinstance(model.predict(["What is 2+2?"], params={"max_new_tokens": 4})[0], str)
