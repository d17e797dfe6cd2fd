"""Validation: metrics over whole images under one of two protocols, sharded across ranks.

``uint8`` (BasicSR's default): outputs are clamped to [0,1], scaled to 255 and rounded before
the metrics. ``float`` (the SIDD tables' protocol): outputs are only clamped to [0,1].
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from llcv.degradations.bicubic_degradation import imresize_pt
from llcv.engine.dist import DistInfo, all_reduce_sum
from llcv.registry import METRICS, lookup
from llcv.utils import module_modes


class MetricSpec:
    """One metric of ``val.metrics``: the function, its fixed arguments, and which way is better."""

    def __init__(self, name: str, cfg: Mapping[str, Any]) -> None:
        self.name = name
        self.fn: Callable = lookup(METRICS, cfg["type"], f"val.metrics.{name}.type")
        self.higher_is_better = cfg.get("better", "higher") == "higher"
        self.kwargs = {k: v for k, v in cfg.items() if k not in ("type", "better")}
        self.input_kind = getattr(self.fn, "input_kind", "numpy")

    def __call__(self, out: torch.Tensor, gt: torch.Tensor, protocol: str) -> torch.Tensor:
        """Per-image values (N,) for a batch of RGB NCHW tensors already put under ``protocol``."""
        if self.input_kind == "tensor":
            return self.fn(out, gt, **self.kwargs).detach().double().cpu()
        values = [self.fn(to_bgr255(o, protocol), to_bgr255(g, protocol), **self.kwargs)
                  for o, g in zip(out, gt)]
        return torch.tensor(values, dtype=torch.float64)


def to_bgr255(img: torch.Tensor, protocol: str) -> np.ndarray:
    """RGB CHW [0,1] tensor -> BGR HWC array in [0,255]: uint8 under ``uint8``, else float64."""
    array = img.detach().double().cpu().numpy().transpose(1, 2, 0)[..., ::-1] * 255.0
    if protocol == "uint8":
        return np.ascontiguousarray(np.round(array).astype(np.uint8))
    return np.ascontiguousarray(array)


def apply_protocol(img: torch.Tensor, protocol: str) -> torch.Tensor:
    """Clamp to [0,1] in float64; under ``uint8`` also quantise to 1/255 steps as BasicSR does
    (float32 ``x * 255`` rounded half to even)."""
    img = img.detach().float().clamp(0.0, 1.0)
    if protocol == "uint8":
        return torch.round(img * 255.0).double() / 255.0
    return img.double()


def tensor_to_uint8_rgb(img: torch.Tensor) -> np.ndarray:
    """RGB CHW [0,1] tensor -> HWC uint8 array (for TensorBoard and PNG files)."""
    array = (img.detach().float().clamp(0, 1) * 255.0).round().byte().cpu().numpy()
    return array.transpose(1, 2, 0)


class Validator:
    """Runs a model over a validation set and returns the average of each metric."""

    def __init__(self, phase: str, loader: DataLoader, metrics: Mapping[str, Mapping[str, Any]],
                 protocol: str, dist: DistInfo, device: torch.device) -> None:
        self.phase, self.loader, self.protocol = phase, loader, protocol
        self.metrics = [MetricSpec(name, cfg) for name, cfg in metrics.items()]
        self.dist, self.device = dist, device
        self.reference: dict[str, float] | None = None

    @torch.no_grad()
    def run(self, model: nn.Module, on_batch: Callable[[int, dict, torch.Tensor], None] | None = None,
            show_progress: bool = True) -> dict[str, float]:
        """Average metrics of ``model`` over all ranks' shares of the set.

        The first call also computes the LQ-vs-GT reference (``self.reference``); a smaller
        (super-resolution) LQ is first upsampled bicubically to the GT's size.
        ``on_batch(index, batch, output)`` sees every output (saving images, TensorBoard).
        """
        sums = torch.zeros(2 * len(self.metrics) + 1, dtype=torch.float64)
        bar = tqdm(total=len(self.loader), desc=f"{self.phase}", unit="batch", leave=False,
                   disable=not (show_progress and self.dist.is_main), dynamic_ncols=True)
        with module_modes(model, False):
            for index, batch in enumerate(self.loader):
                lq, gt = batch["lq"].to(self.device), batch["gt"].to(self.device)
                out = apply_protocol(model(lq), self.protocol)
                gt_p = apply_protocol(gt, self.protocol)
                lq_p = None if self.reference is not None else apply_protocol(
                    lq if lq.shape[-2:] == gt.shape[-2:] else upsample_reference(lq, gt),
                    self.protocol)
                for i, metric in enumerate(self.metrics):
                    sums[i] += metric(out, gt_p, self.protocol).sum()
                    if lq_p is not None:
                        sums[len(self.metrics) + i] += metric(lq_p, gt_p, self.protocol).sum()
                sums[-1] += lq.shape[0]
                if on_batch is not None:
                    on_batch(index, batch, out)
                bar.update(1)
        bar.close()
        return self._averages(sums)

    def _averages(self, sums: torch.Tensor) -> dict[str, float]:
        sums = all_reduce_sum(sums.to(self.device)).cpu()
        count = max(sums[-1].item(), 1.0)
        result = {f"{self.phase}/{m.name}": sums[i].item() / count for i, m in enumerate(self.metrics)}
        if self.reference is None:
            self.reference = {f"{self.phase}/lq_{m.name}": sums[len(self.metrics) + i].item() / count
                              for i, m in enumerate(self.metrics)}
        return result


def upsample_reference(lq: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """A super-resolution LQ batch brought to the GT's size by MATLAB-style bicubic resizing,
    the "bicubic" baseline SR papers report."""
    return imresize_pt(lq.double(), size=gt.shape[-2:]).to(lq.dtype)


def save_image_png(img: torch.Tensor, path: str) -> None:
    """Write an RGB CHW [0,1] tensor as an 8-bit PNG."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(tensor_to_uint8_rgb(img), cv2.COLOR_RGB2BGR))
