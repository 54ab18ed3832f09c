"""Exponential moving average of parameters, swapped in for evaluation."""

from __future__ import annotations

import torch
import torch.nn as nn


class EMA:
    """Keeps shadow = decay * shadow + (1 - decay) * param after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = [p.detach().clone().float() for p in model.parameters()]
        self._backup: list[torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for s, p in zip(self.shadow, model.parameters()):
            if s.device != p.device:
                s.data = s.data.to(p.device)
            s.lerp_(p.detach().float(), 1 - self.decay)

    @torch.no_grad()
    def swap_in(self, model: nn.Module) -> None:
        """Replace the weights by the EMA weights (keeping a backup)."""
        self._backup = [p.detach().clone() for p in model.parameters()]
        for s, p in zip(self.shadow, model.parameters()):
            p.copy_(s.to(p.device, p.dtype))

    @torch.no_grad()
    def swap_out(self, model: nn.Module) -> None:
        if self._backup is None:
            return
        for b, p in zip(self._backup, model.parameters()):
            p.copy_(b)
        self._backup = None

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": [s.cpu() for s in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.shadow = [s.clone() for s in state["shadow"]]
