"""Mixed precision for a training step: autocast around forward and loss, and, for fp16, a
gradient scaler (its state goes into checkpoints so a resumed run scales as before).

``train.amp: bf16`` runs forward and loss in bfloat16 (CPU and recent GPUs; no scaler needed);
``fp16`` in float16 with dynamic loss scaling. Weights, gradients and optimizer state stay fp32.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable, Mapping, Optional

import torch
from torch import nn

from llcv.errors import OptionError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision:
    """What one step needs to train under ``amp`` (None: plain fp32)."""

    def __init__(self, amp: Optional[str], device: torch.device) -> None:
        if amp is not None and amp not in DTYPES:
            raise OptionError(f"train.amp: '{amp}' is not one of ~, bf16, fp16")
        self.device_type = torch.device(device).type
        self.dtype = DTYPES.get(amp)
        self.scaler = torch.amp.GradScaler(self.device_type) if amp == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the forward pass and the losses run in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` (scaled under fp16)."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter],
             clip_norm: Optional[float]) -> None:
        """Clip the (unscaled) gradient norm when asked, then step the optimizer."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(params, clip_norm)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
