"""Data held on the training device and batched by index, in the likelihood's representation."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..errors import ConfigError
from ..likelihoods import Likelihood
from .images import Images

BINARIZATIONS = ("dynamic", "fixed")
TEST_BINARIZATION_SEED = 0  # one binarized test set for every run, seed and estimator


def _binarize(grey: Tensor, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(grey.cpu(), generator=g).to(grey.device)


class InMemoryData:
    """Train and test images as tensors on ``device``, in the form ``likelihood`` models.

    The likelihood's ``data_kind`` picks the form: ``"binary"`` (Bernoulli draws with the grey
    level as probability: ``binarization="dynamic"`` redraws every time a batch is taken, so
    every epoch sees new draws; ``"fixed"`` draws once from ``seed``), ``"unit"`` (grey levels
    in [0, 1]) or ``"counts"`` (the 8-bit levels 0..255). Float data is kept as it is. Binary
    test data is always drawn once,
    from a seed of its own, so every run is scored on the same test set. The data is checked
    against the likelihood's support once, here.
    """

    def __init__(
        self,
        images: Images,
        likelihood: Likelihood,
        binarization: str = "dynamic",
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if binarization not in BINARIZATIONS:
            raise ConfigError(f"unknown binarization {binarization!r}; valid: {', '.join(BINARIZATIONS)}")
        self.images, self.device = images, torch.device(device)
        self.kind = likelihood.data_kind
        train = torch.from_numpy(images.train).to(self.device)
        test = torch.from_numpy(images.test).to(self.device)
        self.dynamic = False
        if self.kind not in ("binary", "unit", "counts"):
            raise ConfigError(f"likelihood {likelihood.name!r} has unknown data_kind {self.kind!r}")
        if train.dtype == torch.uint8:  # 8-bit pixels: the representation the likelihood models
            if self.kind == "counts":
                train, test = train.float(), test.float()
            else:
                train, test = train.float() / 255, test.float() / 255
            if self.kind == "binary":
                self.dynamic = binarization == "dynamic"
                if not self.dynamic:
                    train = _binarize(train, seed)
                test = _binarize(test, TEST_BINARIZATION_SEED)
        self.train, self.test = train, test
        likelihood.check_data((train > 0.5).float() if self.dynamic else train)
        likelihood.check_data(test)

    @property
    def num_train(self) -> int:
        return self.train.shape[0]

    @property
    def num_test(self) -> int:
        return self.test.shape[0]

    def _take(self, source: Tensor, idx: Tensor) -> Tensor:
        x = source[idx]
        return torch.bernoulli(x) if self.dynamic and source is self.train else x

    def epoch_order(self) -> Tensor:
        """A fresh shuffle of the training points, ``[N]``, drawn from torch's RNG."""
        return torch.randperm(self.num_train, device=self.device)

    def train_batches(
        self, batch_size: int, drop_last: bool = False, order: Tensor | None = None, start: int = 0
    ) -> Iterator[Tensor]:
        """One shuffled epoch. The last batch is smaller unless ``drop_last``; the model's
        ``num_data`` scale makes a small batch count for what it is. ``order`` (from
        :meth:`epoch_order`) and ``start`` (batches already taken) continue an interrupted epoch."""
        n = self.num_train
        perm = self.epoch_order() if order is None else order
        stop = n - n % batch_size if drop_last else n
        for i in range(start * batch_size, stop, batch_size):
            yield self._take(self.train, perm[i : i + batch_size])

    def test_batches(self, batch_size: int) -> Iterator[Tensor]:
        for i in range(0, self.num_test, batch_size):
            yield self.test[i : i + batch_size]
