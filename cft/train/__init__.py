"""Training: the typed config, the trainer entry point (run inside `accelerate launch`),
the launcher that builds that command, and best-checkpoint selection.

Nothing here imports torch at package import time: the orchestrator stays light and
never initialises CUDA.
"""

from cft.train.config import BestCheckpointConfig, LoraConfig, TrainConfig


class TrainingError(RuntimeError):
    """The training subprocess failed; the message names the exit code and the command.

    Defined here, not in the launcher: every `cft` command catches it, and importing the
    launcher would make every stage depend on the training code."""


__all__ = ["BestCheckpointConfig", "LoraConfig", "TrainConfig", "TrainingError"]
