"""Training: the typed config, the trainer entry point (run inside `accelerate launch`),
the launcher that builds that command, and best-checkpoint selection.

Nothing here imports torch at package import time: the orchestrator stays light and
never initialises CUDA.
"""

from cft.train.config import BestCheckpointConfig, LoraConfig, TrainConfig

__all__ = ["BestCheckpointConfig", "LoraConfig", "TrainConfig"]
