"""Offline batch generation with vLLM, in one long-lived worker process per generator.

The orchestrating process never imports vllm nor initialises CUDA (so tensor
parallel workers and later training launches get clean GPUs), and vllm may live
in its own environment: `python` is that environment's interpreter (docs/design.md,
"Library facts": vllm and prefect 3.8 cannot share one).

The worker (`cft.generate.vllm_worker`) loads the engine once, on the first call,
and serves every later `generate` call of this generator: n samples per problem, or
the evaluate stage's benchmarks and sample indices, cost one engine load per model.
Requests travel in chunks of `chunk_size`; the worker answers a whole chunk once
vLLM's `generate` returns for it, so `generate_iter` hands rows over chunk by chunk
while later chunks run, and a killed run loses at most the chunk in flight. `close()`
(or `with`, or the generator being garbage collected) stops the worker and frees the GPUs.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

from cft.generate.base import Chat, Generation, GenerationError, PromptTooLong, Sampling, StreamingGenerator
from cft.generate.vllm_worker import MISSING_MARK, VLLM_MISSING

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding `cft/`
_LOG_TAIL = 40
_EXIT_MARK = None  # what the reader thread queues when the worker's stdout closes


class VLLMUnavailable(RuntimeError):
    """The target interpreter cannot import vllm."""


class VLLMWorkerError(RuntimeError):
    """The vLLM worker process failed; the message ends with its last log lines."""


class _Worker:
    """A running worker: the process, the queue its answers arrive on, its log."""

    def __init__(self, cmd: list[str], env: dict[str, str], config: dict):
        self.tmp = tempfile.TemporaryDirectory(prefix="cft-vllm-")
        self.log = Path(self.tmp.name, "worker.log")
        with self.log.open("wb") as log_fh:
            # Its own session: stopping it stops vLLM's engine and tensor-parallel processes too.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_fh,
                                         env=env, start_new_session=True)
        self.answers: queue.SimpleQueue[dict | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, name="cft-vllm-reader", daemon=True).start()
        try:
            self.send({"config": config})
        except OSError:
            pass  # it died at start; the reader's end-of-output mark and the log say why

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                self.answers.put(json.loads(line))
        finally:
            self.answers.put(_EXIT_MARK)

    def send(self, message: dict) -> None:
        """Write one line to the worker (blocks while the worker is busy and the pipe is full)."""
        self.proc.stdin.write(json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def tail(self, n: int = _LOG_TAIL) -> list[str]:
        try:
            return self.log.read_bytes().decode("utf-8", errors="replace").splitlines()[-n:]
        except OSError:
            return []

    def exit_status(self) -> int | None:
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            return None


def _stop(worker: _Worker, graceful: bool) -> None:
    """End the worker: idle, it leaves when its stdin closes; busy (or slow to leave), its
    process group is terminated, then killed."""
    proc = worker.proc
    try:
        if proc.poll() is None and graceful:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
    finally:
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        worker.tmp.cleanup()


class VLLMGenerator(StreamingGenerator):
    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        trust_remote_code: bool = False,
        engine_args: dict | None = None,
        python: str = sys.executable,
        chunk_size: int = 512,
        env: dict[str, str] | None = None,
    ):
        self.model = model
        self.engine_config = {
            "model": model,
            "tensor_parallel_size": tensor_parallel_size,
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_model_len": max_model_len,
            "enforce_eager": enforce_eager,
            "trust_remote_code": trust_remote_code,
            "engine_args": dict(engine_args or {}),  # passed to vllm.LLM as is, by vLLM's own names
        }
        self.python = python
        self.chunk_size = max(1, int(chunk_size))
        self.env = dict(env or {})
        self.max_model_len: int | None = None  # the engine's, once it is loaded
        self._worker: _Worker | None = None
        self._stopper: weakref.finalize | None = None
        self._calls = 0
        self._lock = threading.Lock()
        self._usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "failures": 0}

    def __repr__(self) -> str:
        return (f"VLLMGenerator(model={self.model!r}, tensor_parallel_size={self.engine_config['tensor_parallel_size']}, "
                f"python={self.python!r})")

    def check(self) -> str:
        """The vllm version the target interpreter imports; VLLMUnavailable if none."""
        proc = subprocess.run([self.python, "-c", "import vllm; print(vllm.__version__)"],
                              capture_output=True, text=True, env=self._env(), timeout=300)
        if proc.returncode != 0:
            raise VLLMUnavailable(self._missing_message(proc.stderr.strip().splitlines()[-1:] or ["?"]))
        return proc.stdout.strip()

    def usage(self) -> dict:
        """Tokens used so far, keyed by model like the other backends."""
        with self._lock:
            return {self.model: dict(self._usage)}

    # -- the worker -------------------------------------------------------------------

    def _start(self) -> _Worker:
        if self._worker is not None and self._worker.proc.poll() is None:
            return self._worker
        self.close()
        if not Path(self.python).exists():
            raise VLLMUnavailable(self._missing_message([f"interpreter {self.python} does not exist"]))
        cmd = [self.python, "-m", "cft.generate.vllm_worker", "--parent-pid", str(os.getpid())]
        worker = _Worker(cmd, self._env(), self.engine_config)
        self._stopper = weakref.finalize(self, _stop, worker, True)  # no leaked GPUs if close() is forgotten
        self._worker = worker
        ready = worker.answers.get()  # the engine load: minutes for a large model
        if ready is _EXIT_MARK or "ready" not in ready:
            status, tail = worker.exit_status(), worker.tail()
            self.close(graceful=False)
            if status == VLLM_MISSING and any(MISSING_MARK in line for line in tail):
                raise VLLMUnavailable(self._missing_message(tail[-3:]))
            raise VLLMWorkerError(f"vllm worker exited with status {status} while loading {self.model}; "
                                  "last log lines:\n" + "\n".join(tail))
        self.max_model_len = ready["ready"].get("max_model_len")
        return worker

    def close(self, *, graceful: bool = True) -> None:
        """Stop the worker (the engine and its GPUs); the next call starts a new one."""
        stopper, self._stopper, self._worker = self._stopper, None, None
        guarded = stopper.detach() if stopper is not None else None  # None: already stopped
        if guarded is not None:
            _, _, (worker, _), _ = guarded
            _stop(worker, graceful)

    def __enter__(self) -> VLLMGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- generation -------------------------------------------------------------------


    def generate_iter(self, chats: list[Chat], sampling: Sampling) -> Iterator[tuple[int, Generation | GenerationError]]:
        """(index, Generation or a row's GenerationError such as PromptTooLong) as rows finish.

        A worker that dies raises VLLMWorkerError (rows already yielded stay valid): the
        failure is the engine's, not a row's. A call abandoned midway (the caller stopped
        iterating, or an error) stops the worker, which may still be busy with its chunks.
        """
        chats = list(chats)
        if not chats:
            return
        worker = self._start()
        self._calls += 1
        call = self._calls
        chunks = [{"call": call, "sampling": sampling.as_dict(),
                   "requests": [{"i": i, "messages": chats[i]} for i in range(start, min(start + self.chunk_size, len(chats)))]}
                  for start in range(0, len(chats), self.chunk_size)]

        def feed() -> None:
            try:
                for chunk in chunks:
                    worker.send(chunk)
            except (OSError, ValueError):
                pass  # the worker is gone; the reader reports it

        threading.Thread(target=feed, name="cft-vllm-feed", daemon=True).start()
        received = 0
        finished = False
        try:
            while received < len(chats):
                answer = worker.answers.get()
                if answer is _EXIT_MARK:
                    status = worker.exit_status()
                    raise VLLMWorkerError(
                        f"vllm worker exited with status {status} after {received}/{len(chats)} rows; "
                        "last log lines:\n" + "\n".join(worker.tail()))
                if answer.get("call") != call or "i" not in answer:
                    continue
                received += 1
                yield answer["i"], self._result(answer)
            finished = True
        finally:
            if not finished:
                self.close(graceful=False)

    def _result(self, answer: dict) -> Generation | GenerationError:
        if "error" in answer:
            with self._lock:
                self._usage["failures"] += 1
            cls = PromptTooLong if answer.get("reason") == PromptTooLong.reason else GenerationError
            return cls(answer["error"])
        text = answer["text"]
        with self._lock:
            self._usage["requests"] += 1
            self._usage["prompt_tokens"] += answer["prompt_tokens"]
            self._usage["completion_tokens"] += answer["completion_tokens"]
        return Generation(text, answer["prompt_tokens"], answer["completion_tokens"], empty=not text.strip())

    def _env(self) -> dict[str, str]:
        # The worker imports `cft.generate.vllm_worker` even where cft is not installed.
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        return env

    def _missing_message(self, detail: list[str]) -> str:
        return (f"vllm backend: vllm is not importable by {self.python} ({' '.join(detail)}). "
                "Install it in that environment (vLLM ships CUDA wheels only) or set the backend's "
                "`python` option to the interpreter of an environment that has it (README, 'Scaling out').")

