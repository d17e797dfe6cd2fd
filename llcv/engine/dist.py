"""Process-group facts for the runner: rank, world size, device; rank 0 alone writes files."""
from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist

from llcv.errors import LLCVError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_dist(launcher: str, timeout_s: float = 1800.0, backend: str = "auto",
              port: int | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA).

    ``timeout_s`` bounds every collective: a rank whose peer died fails after at most this long.
    ``port`` (BasicSR's ``dist_params.port``) is the rendezvous port when the launcher sets none.
    """
    if launcher == "none":
        return DistInfo()
    if launcher != "pytorch":
        raise LLCVError(f"--launcher: '{launcher}' is not one of none, pytorch")
    if port is not None:
        os.environ.setdefault("MASTER_PORT", str(port))
    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
               if k not in os.environ]
    if missing:
        raise LLCVError(f"--launcher pytorch: environment lacks {', '.join(missing)}; start with "
                        f"`torchrun --nproc_per_node=N tools/train.py -opt ... --launcher pytorch`")
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                    int(os.environ["LOCAL_RANK"]))
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return info


def close_dist() -> None:
    """Leave the process group (its threads must stop before the interpreter exits)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def select_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` is CUDA (this rank's GPU) when available, else CPU; ``cpu``/``cuda[:N]`` force it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LLCVError(f"device: '{name}' requested but CUDA is not available; use 'auto' or 'cpu'")
        return torch.device(name if ":" in name else f"cuda:{info.local_rank}")
    if name != "cpu":
        raise LLCVError(f"device: '{name}' is not one of auto, cpu, cuda, cuda:N")
    return torch.device("cpu")


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over ranks (identity in a single process)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.all_reduce(values, op=torch_dist.ReduceOp.SUM)
    return values


def all_reduce_max(values: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of ``values`` over ranks (identity in a single process)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.all_reduce(values, op=torch_dist.ReduceOp.MAX)
    return values


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` from every rank, in rank order (``[obj]`` in a single process)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself in a single process)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for a local process group or server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def param_checksum(model: torch.nn.Module) -> tuple[float, float]:
    """Cheap fingerprint of the weights: sum and sum of squares in float64 (exact across ranks)."""
    total, squares = 0.0, 0.0
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.dtype.is_floating_point:
                values = tensor.detach().double()
                total += values.sum().item()
                squares += values.square().sum().item()
    return total, squares


def check_ranks_in_sync(model: torch.nn.Module, when: str) -> str:
    """Compare weight checksums across ranks; fail naming the ranks that differ from rank 0."""
    sums = all_gather_objects(param_checksum(model))
    diverged = [rank for rank, value in enumerate(sums) if value != sums[0]]
    if diverged:
        raise LLCVError(f"ranks {diverged} hold different weights from rank 0 {when} "
                        f"(checksums {sums}); restart from the last checkpoint")
    return f"weights identical on all {len(sums)} ranks {when} (checksum {sums[0][0]:.10e})"


PEER_FAILURE_MARKERS = ("Connection closed by peer", "Connection reset by peer", "gloo",
                        "NCCL", "timed out", "Timed out")


def is_peer_failure(err: BaseException) -> bool:
    """True when ``err`` comes from a collective that lost a peer or timed out.

    DDP's reducer raises plain ``RuntimeError`` from gloo/nccl, so the message is the only sign.
    """
    if isinstance(err, torch_dist.DistError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err) for m in PEER_FAILURE_MARKERS)
