"""Data-parallel training over processes: torch.distributed, launched by ``torchrun``.

``torchrun --nproc-per-node N -m pyrovae train ...`` starts N processes (ranks) that each hold
the whole model. Every epoch has one shuffle, the same on every rank (drawn from a generator
seeded by the run's seed and the epoch); each global batch of ``batch_size`` points is cut into N
contiguous shards, one a rank, so the ranks see disjoint data. Each rank's loss carries the plate
scale N_data / B_rank; its gradient is weighted by B_rank / B and the weighted gradients are
summed across ranks once a step (one all-reduce of one flat buffer), which is the gradient of the
global batch with scale N_data / B. Each rank draws its particles (and dynamic binarizations) from
its own stream, seeded at every epoch from (seed, epoch, rank), so ranks never share noise and a
run resumed at an epoch's end draws what it would have drawn. Rank 0 writes the run directory.

Backends: NCCL on GPUs (each rank on ``cuda:LOCAL_RANK``), gloo on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import ConfigError

_SEED_MIX = 1_000_003


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle, the same on every rank."""
    return (seed * _SEED_MIX + epoch) % 2**63


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> Tensor:
    """Epoch ``epoch``'s shuffle under data parallelism, the same on every rank, ``[n]``."""
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=g).to(device)


def rank_seed(seed: int, epoch: int, rank: int, batches_done: int = 0) -> int:
    """The seed of rank ``rank``'s particles and binarizations in epoch ``epoch`` (from its start;
    ``batches_done`` > 0: for the rest of an epoch resumed with another number of processes)."""
    return ((epoch_seed(seed, epoch) * 1009 + rank + 1) * 65537 + batches_done) % 2**63


@dataclass(frozen=True)
class Ranks:
    """This process's place among the data-parallel processes (one process: rank 0 of 1, and every
    collective is the identity)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: Tensor) -> Tensor:
        """This rank's contiguous part of ``idx`` (sizes differ by at most one)."""
        return torch.tensor_split(idx, self.world)[self.rank] if self.active else idx

    def sum(self, t: Tensor) -> Tensor:
        """The sum of ``t`` over ranks (a new tensor)."""
        if not self.active:
            return t
        out = t.detach().clone()
        dist.all_reduce(out)
        return out

    def reduce_gradients(self, params: Iterable[torch.nn.Parameter], weight: float, flags: list[float]) -> Tensor:
        """grad <- sum over ranks of ``weight`` * grad, for every parameter, in one all-reduce; the
        ``flags`` (stop requests) ride in the same buffer and come back summed over ranks, as a
        tensor on the parameters' device (read it at a logging interval: no host sync here)."""
        params = [p for p in params if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) * weight for g in grads] + [grads[0].new_tensor(flags)])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            p.grad = flat[offset : offset + g.numel()].view_as(g)
            offset += g.numel()
        return flat[offset:]

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is set on any rank (a collective: every rank must ask)."""
        if not self.active:
            return bool(flag)
        return bool(self.sum(torch.tensor(float(flag), device=device)).item())

    def gather(self, t: Tensor) -> Tensor:
        """``t`` ``[n_r, ...]`` of every rank, concatenated in rank order (sizes may differ)."""
        if not self.active:
            return t
        sizes: list[Any] = [None] * self.world  # each rank's n_r, once gathered
        dist.all_gather_object(sizes, t.shape[0])
        padded = t.new_zeros((max(sizes), *t.shape[1:]))
        padded[: t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


ONE_PROCESS = Ranks()  # one process, no collectives


def is_main_process() -> bool:
    """Whether this process is rank 0 of a torchrun launch, or not launched by torchrun: the one
    that writes, known before any process group is set up."""
    return os.environ.get("RANK", "0") == "0"


def from_env(device: torch.device) -> Ranks:
    """The ranks torchrun set up (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` in the environment): the
    process group is initialized here, NCCL for a CUDA ``device`` and gloo otherwise. Without
    torchrun (or with one process) one rank of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ONE_PROCESS
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed: train with one process")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return Ranks(dist.get_rank(), dist.get_world_size(), local)


def shutdown(ranks: Ranks) -> None:
    if ranks.active and dist.is_initialized():
        dist.destroy_process_group()
