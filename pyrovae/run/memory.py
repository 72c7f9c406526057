"""Whether a run fits in memory, estimated from its sizes before anything is allocated.

The estimate counts 4-byte floats: the parameters four times (weights, gradients, Adam's two
moments), a training step's activations for K particles of a batch (forward and backward), and an
evaluation chunk's. It is meant to refuse, in one line, sizes that cannot fit (``num_particles
10000000``, ``z_dim 1000000000``), not to predict the peak to the megabyte.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import Config
from ..errors import ConfigError

FLOAT = 4  # bytes


def memory_needed(cfg: Config, x_dim: int, num_params: int) -> tuple[int, str]:
    """(bytes, what dominates) for the run ``cfg`` on data of ``x_dim`` values a point, with a
    likelihood of ``num_params`` parameters a value."""
    z = sum(cfg.latents) if cfg.latents else cfg.z_dim
    hidden = list(cfg.hidden)
    encoder = [x_dim, *hidden, 2 * z]
    decoder = [z, *reversed(hidden), num_params * x_dim]
    weights = sum((a + 1) * b for layers in (encoder, decoder) for a, b in zip(layers, layers[1:], strict=False))
    weights += cfg.flow_layers * 2 * z * max(cfg.flow_hidden) if cfg.guide != "gaussian" else 0
    weights += cfg.prior_components * x_dim if cfg.prior == "vamp" else 0
    draws = cfg.num_particles * int(cfg.estimator_options.get("num_groups", 1) or 1)
    params = 4 * FLOAT * weights
    step = 3 * FLOAT * draws * cfg.batch_size * (sum(decoder) + 2 * z)
    evaluation = 2 * FLOAT * cfg.eval_chunk_size * cfg.eval_batch_size * sum(decoder)
    pieces = [
        (params, f"{weights:,} parameters with their gradients and Adam's moments"),
        (step, f"a step's activations: {draws:,} particles x {cfg.batch_size:,} points"),
        (evaluation, f"an evaluation chunk: {cfg.eval_chunk_size:,} particles x {cfg.eval_batch_size:,} points"),
    ]
    return params + max(step, evaluation), max(pieces)[1]


def available(device: torch.device) -> int | None:
    """Bytes free on ``device`` now (None where it cannot be read)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: Config, x_dim: int, num_params: int, device: torch.device) -> None:
    """One line if the run cannot fit in the memory ``device`` has free (see the module docstring)."""
    need, what = memory_needed(cfg, x_dim, num_params)
    free = available(device)
    if free is not None and need > free:
        raise ConfigError(
            f"this run needs about {need / 2**30:.3g} GiB ({what}), more than the {free / 2**30:.3g} GiB free on "
            f"{device}: lower num_particles, batch_size, eval_chunk_size, eval_batch_size or the network's sizes"
        )
