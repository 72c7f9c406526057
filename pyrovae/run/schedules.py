"""Learning-rate schedules over epochs, as PyTorch's own schedulers (saved with the checkpoint).

Each schedule is a factor of the configured ``lr`` as a function of the completed epochs, run by
``torch.optim.lr_scheduler.LambdaLR``, which steps once an epoch. Its state (the epoch count, the
base learning rates) goes into the checkpoint and comes back on resume, so a resumed run follows
the same schedule as one never stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import ConfigError

BURDA_STAGES = 8  # i = 0..7: 3^i epochs at lr * 10^(-i/7); 3,280 epochs in all


def burda2016(epoch: int) -> float:
    """Burda et al. 2016's schedule: stage i lasts 3^i epochs at lr * 10^(-i/7), i = 0..7
    (3,280 epochs in all); after the last stage the rate stays at the last stage's.

    References: Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders" (sec. 5).
    """
    stage, end = 0, 1
    while epoch >= end and stage < BURDA_STAGES - 1:
        stage += 1
        end += 3**stage
    return 10.0 ** (-stage / 7)


def constant(epoch: int) -> float:
    """The configured lr throughout."""
    return 1.0


def cosine(total_epochs: int) -> Callable[[int], float]:
    """Cosine annealing from lr to 0 over ``total_epochs`` (Loshchilov & Hutter 2017, "SGDR")."""

    def factor(epoch: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, total_epochs) / total_epochs))

    return factor


SCHEDULES = ("constant", "burda2016", "cosine")


def burda2016_epochs() -> int:
    """The length of Burda et al.'s whole schedule, 3,280 epochs."""
    return sum(3**i for i in range(BURDA_STAGES))


def make(name: str, optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule ``name`` (one of SCHEDULES) on ``optimizer``; ``epochs`` sets the length of
    "cosine"."""
    if name == "constant":
        factor: Callable[[int], float] = constant
    elif name == "burda2016":
        factor = burda2016
    elif name == "cosine":
        factor = cosine(epochs)
    else:
        raise ConfigError(f"unknown lr_schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
