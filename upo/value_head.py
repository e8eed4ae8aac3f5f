"""The value function `V(x)` of UPO: a small head on the policy's last hidden state at the last prompt token."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ValueHead(nn.Module):
    """`V(x) = w . layer_norm(h_x) + b`, where `h_x` is a detached copy of the prompt's last hidden state.

    Detaching means the value loss never moves the policy; the parameter-free layer norm keeps the input on
    one scale whatever the model, so one learning rate fits every model. Zero-initialised: `V = 0` at the
    start, so the first advantages are the standardised rewards themselves.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, prompt_hidden: torch.Tensor) -> torch.Tensor:
        """Shape: (B, hidden_size) -> (B,)"""
        h = prompt_hidden.detach().to(self.linear.weight.dtype)
        return self.linear(F.layer_norm(h, h.shape[-1:])).squeeze(-1)
