"""Data held on the training device and batched by index, in the likelihood's representation."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from ..likelihoods import Likelihood
from ..likelihoods.base import REGISTRY
from .images import Images

BINARIZATIONS = ("dynamic", "fixed")
TEST_BINARIZATION_SEED = 0  # one binarized test set for every run, seed and estimator
VALID_BINARIZATION_SEED = 1  # and one binarized validation set


def _binarize(grey: Tensor, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(grey.cpu(), generator=g).to(grey.device)


def _represent(array: np.ndarray, images: Images, likelihood: Likelihood, device: torch.device) -> Tensor:
    """``array`` as floats in the likelihood's representation, before any binarization: 8-bit
    pixels become counts 0..255 or grey levels in [0, 1]; grey, binary and float values stay."""
    kind = likelihood.data_kind
    if kind == "counts" and images.pixels in ("grey", "binary"):
        held = "grey levels in [0, 1]" if images.pixels == "grey" else "binary pixels"
        others = [n for n in REGISTRY.names() if REGISTRY.get(n).data_kind != "counts"]
        raise DataError(
            f"{images.source} holds {held}, not 8-bit levels: likelihood {likelihood.name!r} models "
            f"counts 0..255; use one of {', '.join(others)}"
        )
    x = torch.from_numpy(array if array.flags.writeable else array.copy()).to(device)  # read-only: parsed bytes
    if images.pixels == "8bit":
        return x.float() if kind == "counts" else x.float() / 255
    return x.float()


class InMemoryData:
    """Train, test (and validation) data as tensors on ``device``, in the form ``likelihood`` models.

    The likelihood's ``data_kind`` picks the form. ``"binary"``: Bernoulli draws with the grey
    level as probability (``binarization="dynamic"`` redraws every time a batch is taken, so
    every epoch sees new draws; ``"fixed"`` draws once from ``seed``); data that is already
    binary (``pixels="binary"``) is used as it is. ``"unit"``: grey levels in [0, 1]. ``"counts"``:
    the 8-bit levels 0..255 (grey or binary data cannot be counts: one :class:`DataError`). Float
    values (``pixels="values"``) are kept as they are. Binary test and validation data are drawn
    once, each from a seed of its own, so every run is scored on the same points. The data is
    checked against the likelihood's support once, here.
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
        if self.kind not in ("binary", "unit", "counts"):
            raise ConfigError(f"likelihood {likelihood.name!r} has unknown data_kind {self.kind!r}")
        train, test = (_represent(a, images, likelihood, self.device) for a in (images.train, images.test))
        valid = None if images.valid is None else _represent(images.valid, images, likelihood, self.device)
        self.dynamic = False
        if self.kind == "binary" and images.pixels in ("8bit", "grey"):  # grey levels to draw from
            self.dynamic = binarization == "dynamic"
            if not self.dynamic:
                train = _binarize(train, seed)
            test = _binarize(test, TEST_BINARIZATION_SEED)
            valid = None if valid is None else _binarize(valid, VALID_BINARIZATION_SEED)
        self.train, self.test, self.valid = train, test, valid
        likelihood.check_data((train > 0.5).float() if self.dynamic else train)
        likelihood.check_data(test)
        if valid is not None:
            likelihood.check_data(valid)

    @property
    def num_train(self) -> int:
        return self.train.shape[0]

    @property
    def num_test(self) -> int:
        return self.test.shape[0]

    @property
    def num_valid(self) -> int:
        """Validation points (0 when the data set has none)."""
        return 0 if self.valid is None else self.valid.shape[0]

    def _take(self, source: Tensor, idx: Tensor) -> Tensor:
        x = source[idx]
        return torch.bernoulli(x) if self.dynamic and source is self.train else x

    def epoch_order(self) -> Tensor:
        """A fresh shuffle of the training points, ``[N]``, drawn from torch's RNG."""
        return torch.randperm(self.num_train, device=self.device)

    def train_batches(
        self,
        batch_size: int,
        drop_last: bool = False,
        order: Tensor | None = None,
        start: int = 0,
        shard: Callable[[Tensor], Tensor] | None = None,
    ) -> Iterator[Tensor]:
        """One shuffled epoch. The last batch is smaller unless ``drop_last``; the model's
        ``num_data`` scale makes a small batch count for what it is. ``order`` (from
        :meth:`epoch_order`) and ``start`` (batches already taken) continue an interrupted epoch.
        ``shard`` maps a batch's indices to this process's part of them (data parallelism)."""
        n = self.num_train
        perm = self.epoch_order() if order is None else order
        stop = n - n % batch_size if drop_last else n
        for i in range(start * batch_size, stop, batch_size):
            idx = perm[i : i + batch_size]
            yield self._take(self.train, idx if shard is None else shard(idx))

    def test_batches(self, batch_size: int) -> Iterator[Tensor]:
        for i in range(0, self.num_test, batch_size):
            yield self.test[i : i + batch_size]

    def valid_batches(self, batch_size: int) -> Iterator[Tensor]:
        """The validation set in order, like :meth:`test_batches`; nothing when there is none."""
        if self.valid is None:
            return
        for i in range(0, self.num_valid, batch_size):
            yield self.valid[i : i + batch_size]
