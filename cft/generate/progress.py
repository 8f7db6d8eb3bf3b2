"""Generation progress on stderr: rows done, rows/s and ETA, plus tokens and failures so far.

On a terminal it is tqdm's bar. Anywhere else (a Prefect log, CI, `dvc repro` piped to
a file) a bar redrawn with carriage returns would show nothing until the stage ends,
so a plain line is printed when the run starts, every `interval_s` seconds and at the
end, with the same numbers (formatted by tqdm, so both read alike).

`generate_with_progress` is what a caller outside the journaled stages uses (the
evaluate stage, best-checkpoint scoring): the backend's streaming path when it has one,
a progress display, results in input order.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from cft.generate.base import Chat, Generation, Generator, Sampling, iter_generations

if TYPE_CHECKING:
    from typing import TextIO

_LINE = "{desc}: {n_fmt}/{total_fmt} rows ({percentage:.0f}%), {elapsed} elapsed, {rate_fmt}, ETA {remaining}{postfix}"


class GenerationProgress:
    """`update(result)` after each row; a failed row (an exception) counts as done but adds no tokens.

    `disable=None`: a bar on a terminal, plain lines otherwise; `True`: nothing.
    """

    def __init__(self, total: int, *, desc: str = "generate", initial: int = 0, disable: bool | None = None,
                 interval_s: float = 10.0, file: TextIO | None = None):
        self.total = total
        self.desc = desc
        self.initial = initial
        self.tokens = 0
        self.failed = 0
        self.interval_s = interval_s
        self._file = file or sys.stderr
        self._n = initial
        self._start = time.monotonic()
        self._last_line = self._start
        self._bar = None
        self._closed = False
        self._plain = False
        if disable:
            return
        isatty = getattr(self._file, "isatty", None)
        if isatty is not None and isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="row", dynamic_ncols=True,
                             file=self._file, smoothing=0.1)
        else:
            self._plain = True
            self._print()

    def update(self, result: Generation | BaseException | None = None) -> None:
        if isinstance(result, Generation):
            self.tokens += result.completion_tokens
        elif isinstance(result, BaseException):
            self.failed += 1
        self._n += 1
        if self._bar is not None:
            self._bar.set_postfix(tokens=self.tokens, failed=self.failed, refresh=False)
            self._bar.update(1)
        elif self._plain:
            now = time.monotonic()
            if now - self._last_line >= self.interval_s:
                self._last_line = now
                self._print()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._start

    def line(self) -> str:
        """The progress as one line of text (what non-terminal output shows)."""
        from tqdm import tqdm

        return tqdm.format_meter(self._n, self.total, self.elapsed_s, prefix=self.desc, unit=" rows",
                                 bar_format=_LINE, postfix=f"tokens={self.tokens}, failed={self.failed}",
                                 initial=self.initial)

    def _print(self) -> None:
        print(self.line(), file=self._file, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._plain:
            self._print()

    def __enter__(self) -> GenerationProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class GenerationFailed(RuntimeError):
    """Some rows failed; `errors` maps their indices to the exceptions, `results` holds the rest."""

    def __init__(self, errors: dict[int, BaseException], results: list[Generation | None]):
        first = min(errors)
        super().__init__(f"{len(errors)} of {len(results)} generations failed; first (#{first}): {errors[first]}")
        self.errors = errors
        self.results = results


def generate_with_progress(generator: Generator, chats: list[Chat], sampling: Sampling, *,
                           desc: str = "generate", progress: bool | None = None,
                           chunk_size: int = 64) -> list[Generation]:
    """One Generation per chat, in input order, showing progress while they come in.

    Rows stream through the backend's `generate_iter` when it has one (vLLM, OpenAI),
    else through `generate` on chunks of `chunk_size`. If any row fails, every row is
    still attempted and then GenerationFailed is raised (it carries the results).
    `progress=False` shows nothing; None shows a bar or plain lines (see the module).
    """
    results: list[Generation | None] = [None] * len(chats)
    errors: dict[int, BaseException] = {}
    with GenerationProgress(len(chats), desc=desc, disable=progress is False) as bar:
        for i, result in iter_generations(generator, list(chats), sampling, chunk_size=chunk_size):
            if isinstance(result, BaseException):
                errors[i] = result
            else:
                results[i] = result
            bar.update(result)
    if errors:
        raise GenerationFailed(errors, results)
    return results  # type: ignore[return-value]
