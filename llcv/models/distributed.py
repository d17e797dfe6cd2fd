"""Data parallelism for what a training step trains: the DDP wrapper when the run has peers, and
gradient averaging for tensors outside any wrapper (a no-op in one process)."""
from __future__ import annotations

import torch
from torch import nn


def has_peers() -> bool:
    """Whether a process group of several ranks is running."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def ddp_wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module``, or a DistributedDataParallel wrapper of it when the run has peers (its
    parameters are broadcast from rank 0 at construction)."""
    if not has_peers():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def average_gradients(params: list[torch.Tensor]) -> None:
    """Average the gradients of ``params`` (those that have one) over the process group, for
    tensors outside any DDP wrapper."""
    if not has_peers():
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= torch.distributed.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
