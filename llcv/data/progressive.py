"""Progressive patch training (Restormer): small patches in large batches first, then larger.

Stage ``j`` lasts ``iters[j]`` iterations; in it each loaded batch (``batch_size_per_gpu``
samples of ``gt_size``) is cut down to ``mini_batch_sizes[j]`` samples cropped to
``gt_sizes[j]`` (one crop window for the whole batch). Every draw comes from a generator seeded
by (seed, rank, iteration), so a resumed run cuts the same batches.
"""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from llcv.errors import OptionError
from llcv.utils import is_int

KEYS = ("mini_batch_sizes", "iters", "gt_sizes")


class ProgressivePatches:
    """Cuts each training batch to the current stage's batch size and patch size."""

    def __init__(self, mini_batch_sizes: Sequence[int], iters: Sequence[int],
                 gt_sizes: Sequence[int], batch_size: int, gt_size: int, scale: int = 1,
                 seed: int = 0, rank: int = 0, key: str = "datasets.train") -> None:
        lists = {"mini_batch_sizes": mini_batch_sizes, "iters": iters, "gt_sizes": gt_sizes}
        for name, values in lists.items():
            if not isinstance(values, list) or not values or not all(
                    is_int(v) and v > 0 for v in values) or len(values) != len(iters):
                raise OptionError(f"{key}.{name}: expected {len(iters)} positive integers (one "
                                  f"per stage, like iters), got {values!r}")
        for size, batch in zip(gt_sizes, mini_batch_sizes):
            if size > gt_size or size % scale:
                raise OptionError(f"{key}.gt_sizes: {size} must be at most gt_size ({gt_size}) "
                                  f"and a multiple of the scale ({scale})")
            if batch > batch_size:
                raise OptionError(f"{key}.mini_batch_sizes: {batch} exceeds "
                                  f"batch_size_per_gpu ({batch_size}), the batch it is cut from")
        self.batches, self.sizes, self.scale = list(mini_batch_sizes), list(gt_sizes), scale
        self.ends = list(itertools.accumulate(iters))
        self.seed, self.rank = seed, rank

    @classmethod
    def from_section(cls, section: Mapping[str, Any], scale: int, seed: int, rank: int
                     ) -> Optional["ProgressivePatches"]:
        """The schedule a ``datasets.train`` section asks for (None when it has none)."""
        given = [k for k in KEYS if section.get(k) is not None]
        if not given:
            return None
        if len(given) < len(KEYS) or section.get("gt_size") is None:
            missing = [k for k in (*KEYS, "gt_size") if section.get(k) is None]
            raise OptionError(f"datasets.train.{missing[0]}: progressive training needs "
                              f"mini_batch_sizes, iters, gt_sizes and gt_size together")
        return cls(section["mini_batch_sizes"], section["iters"], section["gt_sizes"],
                   section["batch_size_per_gpu"], section["gt_size"], scale, seed, rank)

    def stage(self, it: int) -> int:
        """The stage of iteration ``it`` (1-based); past the last stage, the last one."""
        return next((j for j, end in enumerate(self.ends) if it <= end), len(self.ends) - 1)

    def __call__(self, batch: dict, it: int) -> dict:
        """``batch`` cut to the stage of iteration ``it`` (the same for every run and resume)."""
        j = self.stage(it)
        rng = np.random.default_rng([self.seed, self.rank, it])
        lq, gt = batch["lq"], batch["gt"]
        out = dict(batch)
        size = self.sizes[j] // self.scale
        h, w = lq.shape[-2:]
        if size < min(h, w):
            top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            s = self.scale
            lq = lq[..., top:top + size, left:left + size]
            gt = gt[..., top * s:(top + size) * s, left * s:(left + size) * s]
        if self.batches[j] < lq.shape[0]:
            keep = np.sort(rng.choice(lq.shape[0], self.batches[j], replace=False))
            lq, gt = lq[keep], gt[keep]
            for name, value in batch.items():
                if isinstance(value, list):
                    out[name] = [value[i] for i in keep]
        out["lq"], out["gt"] = lq.contiguous(), gt.contiguous()
        return out
