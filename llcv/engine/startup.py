"""The dry start: what would fail at the first iteration or validation, found before the run
folder is touched.

It reads the batch the first iteration trains on and puts its first sample through the network
(no gradients, eval mode), and reads the header of every validation file, comparing each pair's
sizes. Nothing is written and no global RNG moves, so a run is the same with or without it.
"""
from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from llcv.errors import DataError, OptionError
from llcv.utils import module_modes


def first_batch(loader: DataLoader) -> dict[str, Any]:
    """The batch the first iteration trains on, read in this process (the loader's workers
    and position are left alone)."""
    keys = list(itertools.islice(iter(loader.sampler), loader.batch_size))
    return loader.collate_fn([loader.dataset[key] for key in keys])


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape))


def check_forward(model: nn.Module, batch: dict[str, Any], device: torch.device) -> str:
    """One forward pass of the batch's first ``lq`` (one sample is as telling as all, and
    cheaper); fail naming ``network_g`` when the network cannot take the data or its output
    does not have the GT's shape. Returns 'lq A -> B'."""
    lq, gt = batch["lq"][:1].to(device), batch["gt"][:1]
    with module_modes(model, training=False), torch.no_grad():
        try:
            out = model(lq)
        except RuntimeError as err:
            raise OptionError(
                f"network_g: cannot take a datasets.train batch (lq {_shape(lq)}): "
                f"{str(err).strip().splitlines()[0]}; give the network the data's {lq.shape[1]} "
                f"input channel(s) (e.g. network_g.in_ch)") from None
    if isinstance(out, torch.Tensor) and out.shape[1:] != gt.shape[1:]:
        raise OptionError(
            f"network_g: turns a datasets.train lq of {_shape(lq)} into {_shape(out)}, but the "
            f"gt is {_shape(gt)}; match the network's output channels and upscaling to the "
            f"data (e.g. network_g.out_ch, scale)")
    return f"lq {_shape(lq)} -> {_shape(out)}"


def check_files(dataset: Dataset, key: str) -> int:
    """Read the header of every file of a validation set (its ``check_files()``) or, for a
    dataset without one, its first sample; errors start with ``key``. Returns the images read."""
    check = getattr(dataset, "check_files", None)
    try:
        if check is None:
            dataset[0]
            return 1
        return check()
    except DataError as err:
        text = str(err)
        raise DataError(text if text.startswith(key) else f"{key}: {text}") from None
