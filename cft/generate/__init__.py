"""Text generation backends behind one interface (see `base.Generator`).

Only `base` is imported here, because every stage imports this package (through params)
and so depends on what it imports. Generating with a progress display (the evaluate
stage, best-checkpoint scoring): `from cft.generate.progress import generate_with_progress`.
The journaled, resumable loop of the generation stages: `cft.generate.incremental`.
"""

from cft.generate.base import Generation, GenerationError, Generator, PromptTooLong, Sampling, get_generator

__all__ = ["Generation", "GenerationError", "Generator", "PromptTooLong", "Sampling", "get_generator"]
