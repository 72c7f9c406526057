"""The data plate and Pyro's param store, as every model of pyrovae and the estimators' fast path
use them: the mini-batch scale N / B, a data plate that takes its indices, and the registration
of a module's parameters that ``pyro.module`` does (refusing a name clash)."""

from __future__ import annotations

import pyro
import torch
from pyro.params.param_store import param_with_module_name
from torch import Tensor, nn

from .errors import ModelStructureError


def register_module(name: str, module: nn.Module) -> None:
    """Register ``module``'s parameters in Pyro's global param store, as ``pyro.module`` does.

    Unlike ``pyro.module`` it refuses a store that already holds *other* tensors under these
    names (two VAEs given one name would otherwise train one set of parameters and run the
    other). With ``pyro.settings.set(module_local_params=True)`` nothing is registered: the
    parameters live in the module and a torch optimizer over ``module.parameters()`` trains them.
    """
    if pyro.settings.get("module_local_params"):
        return
    for pname, p in module.named_parameters():
        if not p.requires_grad:  # frozen, as pyro.module leaves it
            continue
        full = param_with_module_name(name, pname)
        if not p.is_contiguous():  # the store would keep (and train) a contiguous copy instead
            p.data = p.data.contiguous()
        if pyro.param(full, p) is not p:
            raise ModelStructureError(
                f"Pyro's param store holds another tensor under {full!r}: two modules share "
                f"the name {name!r}. Give each VAE its own name= or call pyro.clear_param_store()"
            )


def data_scale(batch_size: int, num_data: int | None) -> float:
    """The mini-batch scale N / B of the VAE's data plate (1 for a full batch)."""
    if num_data is None or num_data == batch_size:
        return 1.0
    if num_data < batch_size:
        raise ValueError(f"num_data={num_data} is smaller than the batch ({batch_size})")
    return num_data / batch_size


class DataPlate:
    """``pyro.plate("data", num_data, dim=-1)`` over a mini-batch of the given size.

    With ``num_data`` (the data set's size N) the plate is subsampled, so Pyro scales the batch
    by N / B; the subsample indices are passed in, so no random numbers are drawn for them.
    """

    def __init__(self) -> None:
        self._index: dict[tuple[int, torch.device], Tensor] = {}

    def __call__(self, batch_size: int, num_data: int | None, device: torch.device) -> pyro.plate:
        if data_scale(batch_size, num_data) == 1.0:
            return pyro.plate("data", batch_size, dim=-1)
        key = (batch_size, device)
        if key not in self._index:
            self._index[key] = torch.arange(batch_size, device=device)
        return pyro.plate("data", num_data, subsample=self._index[key], dim=-1)
