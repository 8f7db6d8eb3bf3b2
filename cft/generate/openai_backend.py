"""Generation against any OpenAI-compatible chat-completions server (OpenAI, `vllm serve`, ...).

Retries are the openai client's own (`max_retries`): it retries 408, 409, 429, every
5xx, timeouts and dropped connections with exponential backoff and jitter, and
honours Retry-After. This module adds only what the client lacks:
- concurrency: the sync client sends one request at a time, so `concurrency` daemon
  threads share one client (daemon, so a stage stopped early does not wait for
  requests still retrying);
- a per-row outcome: a request that fails for good becomes that row's
  `RequestFailed`, with the number of attempts (counted by an httpx request hook: the
  client does not report them), instead of stopping the batch;
- redaction: the API key never appears in an error message (a server may echo it).

Requests go through `client.post` with a plain JSON body, the client's documented way
to call an endpoint untyped (same retries, timeouts and auth): the typed
`chat.completions.create` spends about 40% of the client's CPU building and parsing
models, and with 32 requests in flight that CPU is what bounds throughput on a small
machine (bench/bench_generate.py). A reply without text (a content filter, a refusal
without content) is a Generation flagged `empty`, not an error: it is kept and
validation quarantines it, instead of being paid for again on every run.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator

from cft.generate.base import Chat, Generation, GenerationError, Sampling, StreamingGenerator

_MAX_MESSAGE = 500  # error messages end up in failure files; keep them readable
MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")


class RequestFailed(GenerationError):
    """A request that failed for good, after the client's retries: `attempts` made, HTTP `status` if any."""

    reason = "request_failed"

    def __init__(self, message: str, *, attempts: int, status: int | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.status = status


class OpenAIGenerator(StreamingGenerator):
    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        max_retries: int = 6,
        concurrency: int = 16,
        prices: dict[str, float] | None = None,
        max_tokens_param: str = "max_tokens",
    ):
        import openai

        if concurrency < 1:
            raise ValueError(f"openai backend: concurrency must be >= 1, got {concurrency}")
        if max_tokens_param not in MAX_TOKENS_PARAMS:
            raise ValueError(f"openai backend: max_tokens_param must be one of {', '.join(MAX_TOKENS_PARAMS)}, "
                             f"got {max_tokens_param!r}")
        if api_key_env is None:
            key = "EMPTY"  # servers without auth (a local `vllm serve`) still need some value
        else:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise ValueError(
                    f"openai backend: environment variable {api_key_env} is not set "
                    "(set it to the API key; for a server without auth any value works, e.g. EMPTY)"
                )
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.max_tokens_param = max_tokens_param
        self._prices = _check_prices(prices)
        self._secret = key
        self._attempts = threading.local()  # per sending thread: requests sent for the current row
        http_client = openai.DefaultHttpxClient(event_hooks={"request": [self._count_attempt]})
        self._client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout_s, max_retries=max_retries,
                                     http_client=http_client)
        self._lock = threading.Lock()
        self._usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "failures": 0, "retries": 0,
                       "empty": 0}

    def __repr__(self) -> str:
        return (f"OpenAIGenerator(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency})")

    __str__ = __repr__

    def __reduce__(self):  # never pickle the key into a subprocess or a cache
        raise TypeError("OpenAIGenerator holds a credential and cannot be pickled; build one per process")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- generation -------------------------------------------------------------------


    def generate_iter(self, chats: list[Chat], sampling: Sampling) -> Iterator[tuple[int, Generation | RequestFailed]]:
        """Yield (index, Generation or RequestFailed) as each request finishes, in completion order.

        At most `concurrency` requests are in flight: one per sending thread. Closing the
        iterator early stops handing out new requests; the few in flight finish (or are
        dropped at exit) on their daemon threads.
        """
        chats = list(chats)
        if not chats:
            return
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(chats)):
            todo.put(i)
        done: queue.SimpleQueue[tuple[int, Generation | RequestFailed]] = queue.SimpleQueue()
        stop = threading.Event()

        def work() -> None:
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                done.put((i, self._one(chats[i], sampling)))

        for _ in range(min(self.concurrency, len(chats))):
            threading.Thread(target=work, name="cft-openai", daemon=True).start()
        try:
            for _ in range(len(chats)):
                yield done.get()
        finally:
            stop.set()

    def _count_attempt(self, request) -> None:
        self._attempts.n = getattr(self._attempts, "n", 0) + 1

    def _one(self, chat: Chat, sampling: Sampling) -> Generation | RequestFailed:
        self._attempts.n = 0
        body = {
            "model": self.model,
            "messages": chat,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
            self.max_tokens_param: sampling.max_new_tokens,
        }
        failure = None
        try:
            data = self._client.post("/chat/completions", body=body, cast_to=dict)
            generation = _parse(data)
        except Exception as exc:  # noqa: BLE001 - this row's failure, never a lost thread
            # Built here but returned outside: the original (whose text may hold the key)
            # must not ride along as __context__.
            failure = RequestFailed(self._describe(exc), attempts=max(1, self._attempts.n),
                                    status=getattr(exc, "status_code", None))
        attempts = max(1, self._attempts.n)
        if failure is not None:
            self._count(failures=1, retries=attempts - 1)
            return failure
        self._count(requests=1, retries=attempts - 1, empty=int(generation.empty),
                    prompt_tokens=generation.prompt_tokens, completion_tokens=generation.completion_tokens)
        return generation

    def _describe(self, exc: BaseException) -> str:
        status = getattr(exc, "status_code", None)
        head = type(exc).__name__ + (f" (HTTP {status})" if isinstance(status, int) else "")
        message = str(exc)
        if self._secret and len(self._secret) >= 4:
            message = message.replace(self._secret, "***")
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + "..."
        return f"{head}: {message}"

    # -- accounting -------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, value in deltas.items():
                self._usage[key] += value

    def usage(self) -> dict:
        """Token usage so far, per model, with cost in USD when prices were configured."""
        with self._lock:
            counts = dict(self._usage)
        if self._prices is not None:
            counts["cost_usd"] = round(
                counts["prompt_tokens"] * self._prices["prompt"] / 1e6
                + counts["completion_tokens"] * self._prices["completion"] / 1e6, 6)
        return {self.model: counts}


def _parse(data: dict) -> Generation:
    """A chat-completions response body; no text at all is an `empty` Generation."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices") or []
    message = (choices[0] or {}).get("message") or {} if choices else {}
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    usage = data.get("usage") or {}
    return Generation(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                      empty=not text.strip())


def _check_prices(prices: dict | None) -> dict[str, float] | None:
    """USD per 1M tokens: {"prompt": p, "completion": c} (this generator's one model)."""
    if prices is None:
        return None
    if set(prices) != {"prompt", "completion"}:
        raise ValueError(f"openai backend: prices must be {{'prompt': usd_per_1M, 'completion': usd_per_1M}}, "
                         f"got keys {sorted(prices)}")
    return {k: float(v) for k, v in prices.items()}
