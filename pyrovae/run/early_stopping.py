"""Early stopping on the validation bound: stop once it has not improved for ``patience`` evaluations."""

from __future__ import annotations

import math
from typing import Any

from ..errors import CheckpointError


class EarlyStopping:
    """Tracks the best validation bound; ``stop`` once ``patience`` evaluations in a row have not
    beaten it. Its state goes into the checkpoint (``state_dict``), so a resumed run stops where an
    uninterrupted one would."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = 0
        self.since = 0  # evaluations since the best

    def update(self, value: float, epoch: int) -> bool:
        """Record an evaluation; True when it is the best so far."""
        if value > self.best:
            self.best, self.best_epoch, self.since = value, epoch, 0
            return True
        self.since += 1
        return False

    @property
    def stop(self) -> bool:
        return self.since >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "since": self.since}

    def load_state_dict(self, state: Any, path: str) -> None:
        ok = isinstance(state, dict) and isinstance(state.get("best"), float)
        ok = ok and isinstance(state.get("best_epoch"), int) and isinstance(state.get("since"), int)
        if not ok:
            raise CheckpointError(f"checkpoint {path}: its early-stopping state is not best, best_epoch and since")
        self.best, self.best_epoch, self.since = state["best"], state["best_epoch"], state["since"]
