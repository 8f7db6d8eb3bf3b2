"""Text generation backends behind one interface (see `base.Generator`)."""

from cft.generate.base import Generation, Generator, Sampling, get_generator

__all__ = ["Generation", "Generator", "Sampling", "get_generator"]
