"""Generation against any OpenAI-compatible chat-completions server (OpenAI, `vllm serve`, ...).

The sync `openai` client runs in a thread pool: simple, and at tens of requests
in flight the threads cost nothing next to the network. The SDK's own retries are
off (`max_retries=0`) so one policy (`retry.py`) decides what is retried and how
long to wait. The API key is read from the environment variable *named* in the
config and is redacted from every message this module produces.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from cft.generate.base import Chat, Generation, Sampling
from cft.generate.retry import RetryError, RetryPolicy, call_with_retry, status_of

_MAX_MESSAGE = 500  # error messages end up in failure files; keep them readable


class EmptyCompletion(ValueError):
    """The server answered 200 but without text (content filter, refusal, no choices)."""


class OpenAIGenerator:
    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_retries: int = 6,
        concurrency: int = 16,
        prices: dict | None = None,
        backoff_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        retry_after_cap_s: float = 120.0,
        max_tokens_param: str = "max_tokens",
    ):
        import openai

        if concurrency < 1:
            raise ValueError(f"openai backend: concurrency must be >= 1, got {concurrency}")
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
        self.concurrency = concurrency
        self.max_tokens_param = max_tokens_param
        self.policy = RetryPolicy(max_retries=max_retries, base_s=backoff_s, cap_s=backoff_cap_s,
                                  retry_after_cap_s=retry_after_cap_s)
        self._prices = _check_prices(prices, model)
        self._secret = key
        self._client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout_s, max_retries=0)
        self._slots = threading.BoundedSemaphore(concurrency)  # per generator, across calls
        self._lock = threading.Lock()
        self._usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "failures": 0, "retries": 0}

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

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        """One generation per chat, in order; raises the first failure after all finished."""
        results: list[Generation | Exception | None] = [None] * len(chats)
        for i, result in self.generate_iter(chats, sampling):
            results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results  # type: ignore[return-value]

    def generate_iter(self, chats: list[Chat], sampling: Sampling) -> Iterator[tuple[int, Generation | Exception]]:
        """Yield (index, Generation or RetryError) as each request finishes, in completion order.

        Only a bounded window of requests is queued at a time, so a million chats
        cost no more memory than a hundred. Closing the iterator early stops the
        retries in progress and abandons what was not started.
        """
        chats = list(chats)
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="cft-openai")
        pending: dict[Future, int] = {}
        todo = iter(range(len(chats)))

        def refill() -> None:
            while len(pending) < 2 * self.concurrency:
                i = next(todo, None)
                if i is None:
                    return
                pending[pool.submit(self._one, chats[i], sampling, stop)] = i

        try:
            refill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                finished = [(pending.pop(f), f.result()) for f in done]
                refill()  # keep the server busy while the caller writes rows
                yield from sorted(finished, key=lambda pair: pair[0])
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _one(self, chat: Chat, sampling: Sampling, stop: threading.Event) -> Generation | Exception:
        retries = 0

        def attempt() -> Generation:
            nonlocal retries
            retries += 1
            with self._slots:
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=chat,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    seed=sampling.seed,
                    **{self.max_tokens_param: sampling.max_new_tokens},
                )
            return self._parse(response)

        try:
            generation, _ = call_with_retry(attempt, self.policy, describe=self._describe,
                                            sleep=stop.wait, should_stop=stop.is_set)
        except RetryError as exc:
            self._count(failures=1, retries=retries - 1)
            return exc
        except Exception as exc:  # noqa: BLE001 - a bug becomes this row's failure, not a lost thread
            self._count(failures=1, retries=retries - 1)
            return RetryError(self._describe(exc), attempts=retries, retryable=False)
        self._count(requests=1, retries=retries - 1, prompt_tokens=generation.prompt_tokens,
                    completion_tokens=generation.completion_tokens)
        return generation

    @staticmethod
    def _parse(response) -> Generation:
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise EmptyCompletion("response has no choices")
        content = choices[0].message.content
        if content is None:
            raise EmptyCompletion(f"response has no text (finish_reason={choices[0].finish_reason!r})")
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        return Generation(content, prompt_tokens, completion_tokens)

    def _describe(self, exc: BaseException) -> str:
        status = status_of(exc)
        head = type(exc).__name__ + (f" (HTTP {status})" if status is not None else "")
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


def _check_prices(prices: dict | None, model: str) -> dict | None:
    """USD per 1M tokens: {"prompt": p, "completion": c}, or {model: {...}} for several models."""
    if prices is None:
        return None
    if model in prices and isinstance(prices[model], dict):
        prices = prices[model]
    elif not {"prompt", "completion"} <= set(prices):
        return None if all(isinstance(v, dict) for v in prices.values()) else _bad_prices(prices)
    if set(prices) != {"prompt", "completion"}:
        _bad_prices(prices)
    return {k: float(v) for k, v in prices.items()}


def _bad_prices(prices: dict):
    raise ValueError(f"openai backend: prices must be {{'prompt': usd_per_1M, 'completion': usd_per_1M}} "
                     f"(optionally keyed by model), got keys {sorted(prices)}")
