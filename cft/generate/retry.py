"""Our retry policy for remote generation: exponential backoff with full jitter.

Retried: 408/409/429, every 5xx, timeouts and dropped connections. Every other
4xx (bad request, auth, not found) fails at once: repeating it cannot help.
A server's Retry-After (seconds, HTTP date, or OpenAI's retry-after-ms) wins over
the jittered delay, capped so a hostile or broken header cannot park a worker.

The classification is duck-typed (`status_code`, `response.headers`, the class
name) so it works with the openai SDK's exceptions and with plain httpx ones.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 429})
# Exception class names that mean "the request may not have reached or left the
# server": connection refused/reset, timeouts, a response cut short.
_TRANSIENT_NAMES = ("Timeout", "ConnectionError", "ConnectError", "ReadError", "WriteError",
                    "RemoteProtocolError", "NetworkError", "ProtocolError")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6  # retries after the first attempt
    base_s: float = 1.0  # the first backoff window
    cap_s: float = 60.0  # no backoff window grows past this
    retry_after_cap_s: float = 120.0  # the longest Retry-After we obey

    def backoff_s(self, retry: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)] (retry counts from 0)."""
        window = min(self.cap_s, self.base_s * (2.0 ** retry))
        return (rng or random).uniform(0.0, window)


class RetryError(Exception):
    """A call that failed for good: `attempts` made, `retryable` says whether more might help."""

    def __init__(self, message: str, *, attempts: int, retryable: bool, status: int | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.retryable = retryable
        self.status = status


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def is_retryable(exc: BaseException) -> bool:
    status = status_of(exc)
    if status is not None:
        return status in RETRYABLE_STATUS or status >= 500
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    return any(name in cls.__name__ for cls in type(exc).__mro__ for name in _TRANSIENT_NAMES)


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    if headers is None:
        return None
    get = headers.get
    value = get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_of(exc: BaseException) -> float | None:
    return parse_retry_after(getattr(getattr(exc, "response", None), "headers", None))


def delay_for(exc: BaseException, retry: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """How long to wait before retry number `retry` (0-based) after `exc`."""
    after = retry_after_of(exc)
    if after is not None:
        return min(after, policy.retry_after_cap_s)
    return policy.backoff_s(retry, rng)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    describe: Callable[[BaseException], str] = lambda e: f"{type(e).__name__}: {e}",
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
    rng: random.Random | None = None,
) -> tuple[T, int]:
    """Run `fn` until it succeeds; returns (result, attempts). Raises RetryError.

    `describe` turns an exception into the message kept in RetryError (the caller
    redacts secrets there); `should_stop` lets a shutdown cut the waiting short.
    """
    attempt = 0
    while True:
        attempt += 1
        failure = None
        try:
            return fn(), attempt
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised as RetryError
            retryable = is_retryable(exc)
            if not retryable or attempt > policy.max_retries or should_stop():
                failure = RetryError(describe(exc), attempts=attempt, retryable=retryable, status=status_of(exc))
            else:
                delay = delay_for(exc, attempt - 1, policy, rng)
        if failure is not None:
            # Raised outside the except block so the original (whose message may hold
            # what `describe` redacted) is not kept as __context__.
            raise failure
        sleep(delay)
