"""Pairs of ground-truth and degraded images stored side by side, matched by file name."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import numpy as np
from torch.utils.data import Dataset

from llcv.data.image_io import make_backend, to_tensor
from llcv.data.sampler import SampleKey, sample_rng
from llcv.data.transforms import augment, check_crop_size, paired_random_crop
from llcv.errors import DataError, OptionError
from llcv.registry import DATASETS

TRAIN_PHASE = "train"


def check_phase(phase: str) -> None:
    """Fail unless ``phase`` is one llcv passes."""
    if phase not in ("train", "val", "test"):
        raise OptionError(f"phase: '{phase}' is not one of train, val, test")


def check_positive_int(value: Any, option: str, allow_none: bool = False) -> None:
    """Fail naming ``option`` unless ``value`` is an int >= 1 (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{option}: expected a positive integer, got {value!r}")


@DATASETS.register_module()
class PairedImageDataset(Dataset):
    """GT ``name.ext`` paired with LQ ``filename_tmpl.format(name).ext`` (extensions may differ).

    Training samples get a paired random crop and flips/rotations, all drawn from the sample's
    own rng; validation and test samples are the full images. ``io_backend``: ``{type: disk}``
    (folders) or ``{type: lmdb}`` (``.lmdb`` folders, BasicSR's PNG values or llcv's raw ones).
    """

    def __init__(self, dataroot_gt: str, dataroot_lq: str, phase: str,
                 io_backend: Optional[Mapping[str, Any]] = None, gt_size: Optional[int] = None,
                 use_hflip: bool = False, use_rot: bool = False, filename_tmpl: str = "{}",
                 scale: int = 1) -> None:
        check_phase(phase)
        check_positive_int(scale, "scale")
        check_positive_int(gt_size, "gt_size", allow_none=True)
        if gt_size is not None and gt_size % scale:
            raise OptionError(f"gt_size: {gt_size} is not a multiple of scale {scale}")
        if not isinstance(filename_tmpl, str) or "{}" not in filename_tmpl:
            raise OptionError(f"filename_tmpl: {filename_tmpl!r} must contain '{{}}' where the "
                              f"GT name goes, e.g. '{{}}_x4'")
        self.gt_backend = make_backend(io_backend, dataroot_gt, "dataroot_gt")
        self.lq_backend = make_backend(io_backend, dataroot_lq, "dataroot_lq")
        self.pairs = self._pair_names(filename_tmpl)
        self.train = phase == TRAIN_PHASE
        self.gt_size, self.scale = gt_size, scale
        self.use_hflip, self.use_rot = use_hflip, use_rot

    def _pair_names(self, filename_tmpl: str) -> list[tuple[str, str]]:
        """(GT name, LQ name) for every GT image; a GT without LQ partner is an error."""
        lq_names = set(self.lq_backend.keys())
        pairs = []
        for gt_name in self.gt_backend.keys():
            lq_name = filename_tmpl.format(gt_name)
            if lq_name not in lq_names:
                raise DataError(
                    f"dataroot_lq: GT image '{self.gt_backend.describe(gt_name)}' has no LQ "
                    f"partner '{lq_name}.*' in '{self.lq_backend.root}' (filename_tmpl "
                    f"'{filename_tmpl}'); add the LQ image or remove the GT image")
            pairs.append((gt_name, lq_name))
        return pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def _read_pair(self, index: int) -> tuple[Any, Any, str, str]:
        """GT and LQ of pair ``index`` (arrays or lazily read views) and their paths; sizes checked."""
        gt_name, lq_name = self.pairs[index]
        gt_path, lq_path = self.gt_backend.describe(gt_name), self.lq_backend.describe(lq_name)
        gt, lq = self.gt_backend.read(gt_name), self.lq_backend.read(lq_name)
        (hg, wg), (hl, wl) = gt.shape[:2], lq.shape[:2]
        if (hg, wg) != (hl * self.scale, wl * self.scale):
            raise DataError(
                f"GT '{gt_path}' is {hg}x{wg} but LQ '{lq_path}' is {hl}x{wl}; with scale "
                f"{self.scale} the GT must be {hl * self.scale}x{wl * self.scale}: fix the pair or "
                f"the scale option")
        return gt, lq, gt_path, lq_path

    def __getitem__(self, key: Union[int, SampleKey]) -> dict[str, Any]:
        index, rng = sample_rng(key)
        gt, lq, gt_path, lq_path = self._read_pair(index)
        if self.train and self.gt_size is not None:
            check_crop_size(gt, self.gt_size, "gt_size", gt_path)
            gt, lq = paired_random_crop(gt, lq, self.gt_size, self.scale, rng)
        gt, lq = np.asarray(gt), np.asarray(lq)  # a raw LMDB view reads its pixels here
        if self.train:
            gt, lq = augment((gt, lq), rng, self.use_hflip, self.use_rot)
        return {"lq": to_tensor(lq, lq_path), "gt": to_tensor(gt, gt_path),
                "lq_path": lq_path, "gt_path": gt_path}
