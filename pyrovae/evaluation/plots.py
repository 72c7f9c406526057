"""PNG grids of images: samples, and reconstructions beside their inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.image
import numpy as np
import torch
from torch import Tensor


def grid(images: Tensor, image_shape: Sequence[int], ncol: int, pad: int = 1) -> np.ndarray:
    """Tile ``[n, C*H*W]`` images with values in [0, 1] into one ``[rows, cols]`` or RGB array."""
    c, h, w = image_shape
    imgs = images.detach().float().clamp(0, 1).cpu().numpy().reshape(-1, c, h, w)
    n = imgs.shape[0]
    nrow = -(-n // ncol)
    out = np.ones((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.float32)
    for i in range(n):
        r, q = divmod(i, ncol)
        out[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = imgs[i]
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def save_grid(path: str | Path, images: Tensor, image_shape: Sequence[int], ncol: int = 8) -> None:
    save_image(path, grid(images, image_shape, ncol))


def save_image(path: str | Path, image: np.ndarray) -> None:
    """A :func:`grid` array as a PNG (grey levels, or RGB)."""
    matplotlib.image.imsave(str(path), image, cmap="gray", vmin=0, vmax=1)


def interleave(inputs: Tensor, outputs: Tensor) -> Tensor:
    """``[n, D]`` and ``[n, D]`` -> ``[2n, D]``: input, output, input, ... so that a grid with an
    even number of columns shows each reconstruction right of its input."""
    return torch.stack([inputs, outputs], dim=1).reshape(-1, inputs.shape[-1])
