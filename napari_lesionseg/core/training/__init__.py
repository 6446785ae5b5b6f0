"""Training and fine-tuning: data with balanced patch sampling, losses, the loop, and atomic publishing.

The same `train()` runs from the CLI, from the dock (in a separate process, so the GUI never stalls) and under
torchrun (DistributedDataParallel).
"""

from .config import TrainConfig

__all__ = ["TrainConfig"]
