"""A progress bar for generation: rows done, rows/s and ETA (tqdm's own), plus tokens so far."""

from __future__ import annotations

from cft.generate.base import Generation


class GenerationProgress:
    """`update(result)` after each row; a failed row (an exception) counts as done but adds no tokens.

    `disable=None` lets tqdm switch itself off when stderr is not a terminal (CI logs).
    """

    def __init__(self, total: int, *, desc: str = "generate", initial: int = 0, disable: bool | None = None):
        from tqdm.auto import tqdm

        self.tokens = 0
        self.failed = 0
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="row", dynamic_ncols=True,
                         disable=disable, smoothing=0.1)

    def update(self, result: Generation | BaseException | None = None) -> None:
        if isinstance(result, Generation):
            self.tokens += result.completion_tokens
        elif isinstance(result, BaseException):
            self.failed += 1
        self._bar.set_postfix(tokens=self.tokens, failed=self.failed, refresh=False)
        self._bar.update(1)

    @property
    def n(self) -> int:
        return self._bar.n

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> GenerationProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
