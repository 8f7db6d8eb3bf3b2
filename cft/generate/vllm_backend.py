"""Offline batch generation with vLLM, in a subprocess.

The orchestrating process never imports vllm nor initialises CUDA (so tensor
parallel workers and later training launches get clean GPUs), and vllm may live
in its own environment: `python` is that environment's interpreter (DESIGN.md
section 6: vllm and prefect 3.8 cannot share one). The worker streams results
chunk by chunk, so `generate_iter` hands rows over while the batch is running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cft.generate.base import Chat, Generation, Sampling

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding `cft/`
_LOG_TAIL = 40


class VLLMUnavailable(RuntimeError):
    """The target interpreter cannot import vllm."""


class VLLMWorkerError(RuntimeError):
    """The vLLM worker process failed; the message ends with its last log lines."""


class VLLMGenerator:
    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        python: str = sys.executable,
        chunk_size: int = 512,
        engine_options: dict | None = None,
        env: dict[str, str] | None = None,
        poll_s: float = 0.5,
    ):
        self.model = model
        self.tensor_parallel_size = tensor_parallel_size
        self.dtype = dtype
        self.gpu_memory_utilization = gpu_memory_utilization
        self.python = python
        self.chunk_size = chunk_size
        self.engine_options = dict(engine_options or {})  # passed to vllm.LLM as is (max_model_len, ...)
        self.env = dict(env or {})
        self.poll_s = poll_s

    def __repr__(self) -> str:
        return (f"VLLMGenerator(model={self.model!r}, tensor_parallel_size={self.tensor_parallel_size}, "
                f"python={self.python!r})")

    def check(self) -> str:
        """The vllm version the target interpreter imports; VLLMUnavailable if none."""
        proc = subprocess.run([self.python, "-c", "import vllm; print(vllm.__version__)"],
                              capture_output=True, text=True, env=self._env(), timeout=300)
        if proc.returncode != 0:
            raise VLLMUnavailable(self._missing_message(proc.stderr.strip().splitlines()[-1:] or ["?"]))
        return proc.stdout.strip()

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        results: list[Generation | None] = [None] * len(chats)
        for i, generation in self.generate_iter(chats, sampling):
            results[i] = generation
        return results  # type: ignore[return-value]

    def generate_iter(self, chats: list[Chat], sampling: Sampling) -> Iterator[tuple[int, Generation]]:
        """(index, Generation) as the worker finishes each chunk. A worker failure raises
        VLLMWorkerError (rows already yielded stay valid): the failure is the engine's,
        not a row's, so it is not turned into per-row errors."""
        chats = list(chats)
        if not chats:
            return
        if not Path(self.python).exists():
            raise VLLMUnavailable(self._missing_message([f"interpreter {self.python} does not exist"]))
        with tempfile.TemporaryDirectory(prefix="cft-vllm-") as tmp:
            requests, results, log = Path(tmp, "requests.jsonl"), Path(tmp, "results.jsonl"), Path(tmp, "worker.log")
            self._write_requests(requests, chats, sampling)
            results.touch()
            with log.open("wb") as log_fh:
                proc = subprocess.Popen(
                    [self.python, "-m", "cft.generate.vllm_worker", "--requests", str(requests),
                     "--results", str(results), "--parent-pid", str(os.getpid())],
                    stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self._env(),
                )
            seen: set[int] = set()
            finished = False
            try:
                with results.open("rb") as fh:
                    buffer = b""
                    while True:
                        exited = proc.poll() is not None  # read once more after exit: nothing is missed
                        buffer += fh.read()
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            row = json.loads(line)
                            if "done" in row:
                                finished = True
                                continue
                            seen.add(row["i"])
                            yield row["i"], Generation(row["text"], row["prompt_tokens"], row["completion_tokens"])
                        if exited:
                            break
                        time.sleep(self.poll_s)
            finally:
                if proc.poll() is None:  # the caller stopped early or we are being torn down
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            if proc.returncode == 3 and b"CFT_VLLM_MISSING" in log.read_bytes():
                raise VLLMUnavailable(self._missing_message(_tail(log, 3)))
            if proc.returncode != 0 or not finished or len(seen) != len(chats):
                raise VLLMWorkerError(
                    f"vllm worker exited with status {proc.returncode} after {len(seen)}/{len(chats)} rows; "
                    f"last log lines:\n" + "\n".join(_tail(log, _LOG_TAIL)))

    def _write_requests(self, path: Path, chats: list[Chat], sampling: Sampling) -> None:
        config = {
            "model": self.model,
            "tensor_parallel_size": self.tensor_parallel_size,
            "dtype": self.dtype,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "chunk_size": self.chunk_size,
            "engine_options": self.engine_options,
            "sampling": sampling.as_dict(),
        }
        with path.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps({"config": config}) + "\n")
            for i, chat in enumerate(chats):
                fh.write(json.dumps({"i": i, "messages": chat}, ensure_ascii=False) + "\n")

    def _env(self) -> dict[str, str]:
        # The worker imports `cft.generate.vllm_worker` even where cft is not installed.
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        return env

    def _missing_message(self, detail: list[str]) -> str:
        return (f"vllm backend: vllm is not importable by {self.python} ({' '.join(detail)}). "
                "Install it in that environment (vLLM ships CUDA wheels only) or set the backend's "
                "`python` option to the interpreter of an environment that has it (DESIGN.md section 6).")


def _tail(path: Path, n: int) -> list[str]:
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    return lines[-n:]
