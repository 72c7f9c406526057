"""TensorBoard: scalars, images and the config as event files (``tracking = "tensorboard"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import Tracker, numbers


class TensorBoardTracker(Tracker):
    """Writes event files under ``log_dir`` (``<run>/tensorboard`` by default): scalars by name at the
    epoch, images as ``HWC`` arrays, the config as text. Read them with ``tensorboard --logdir``."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_scalars(self, values: dict[str, Any], step: int) -> None:
        for name, value in numbers(values).items():
            self.writer.add_scalar(name, value, step)

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        image = np.clip(image, 0.0, 1.0)
        self.writer.add_image(name, image if image.ndim == 3 else image[..., None], step, dataformats="HWC")

    def log_config(self, config: dict[str, Any], text: str) -> None:
        self.writer.add_text("config", "```toml\n" + text + "```", 0)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
