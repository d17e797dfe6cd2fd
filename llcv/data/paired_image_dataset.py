"""Pairs of ground-truth and degraded images stored side by side, matched by file name."""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Union

import numpy as np
from torch.utils.data import Dataset

from llcv.data.image_io import make_backend, to_float, to_tensor
from llcv.data.sampler import SampleKey, sample_rng
from llcv.data.transforms import augment, check_crop_size, paired_random_crop
from llcv.errors import DataError, OptionError
from llcv.registry import DATASETS
from llcv.utils import bt601_y, check_int

TRAIN_PHASE = "train"


def read_meta_info(path: Optional[str]) -> Optional[list[str]]:
    """GT names listed in a BasicSR ``meta_info`` file (``name.png (h,w,c) ...`` or ``name``)."""
    if path is None:
        return None
    if not os.path.isfile(path):
        raise DataError(f"meta_info_file: '{path}' does not exist")
    with open(path, encoding="utf-8") as f:
        names = [os.path.splitext(line.split()[0])[0] for line in f if line.strip()]
    if not names:
        raise DataError(f"meta_info_file: '{path}' lists no images")
    return names


def check_phase(phase: str) -> None:
    """Fail unless ``phase`` is one llcv passes."""
    if phase not in ("train", "val", "test"):
        raise OptionError(f"phase: '{phase}' is not one of train, val, test")


COLORS = (None, "y")


def rgb_to_y_float(img: np.ndarray) -> np.ndarray:
    """BT.601 luma (HxWx1, float32, [16/255, 235/255]) of an RGB image, as BasicSR's Y data."""
    return bt601_y(to_float(img)[..., ::-1])[..., None]


# Registered also under Restormer's name for the same dataset, so its option files carry over.
@DATASETS.register_module(name=["PairedImageDataset", "Dataset_PairedImage"])
class PairedImageDataset(Dataset):
    """GT ``name.ext`` paired with LQ ``filename_tmpl.format(name).ext`` (extensions may differ).

    Training samples get a paired random crop and flips/rotations, all drawn from the sample's
    own rng; validation and test samples are the full images. ``io_backend``: ``{type: disk}``
    (folders) or ``{type: lmdb}`` (``.lmdb`` folders, BasicSR's PNG values or llcv's raw ones).
    ``meta_info_file`` (BasicSR) restricts the pairs to the GT names it lists (first word of each
    line, extension dropped); ``color: y`` gives 1-channel BT.601 luma images (gray/Y models).
    ``use_flip`` (BasicSR's name) sets ``use_hflip``; ``geometric_augs`` (Restormer's) sets both.
    """

    def __init__(self, dataroot_gt: str, dataroot_lq: str, phase: str,
                 io_backend: Optional[Mapping[str, Any]] = None, gt_size: Optional[int] = None,
                 use_hflip: bool = False, use_rot: bool = False, filename_tmpl: str = "{}",
                 scale: int = 1, meta_info_file: Optional[str] = None,
                 color: Optional[str] = None, use_flip: Optional[bool] = None,
                 geometric_augs: bool = False) -> None:
        check_phase(phase)
        if color not in COLORS:
            raise OptionError(f"color: {color!r} is not one of ~ (RGB) or 'y' (BT.601 luma)")
        check_int("scale", scale, error=OptionError)
        if gt_size is not None:
            check_int("gt_size", gt_size, error=OptionError)
        if gt_size is not None and gt_size % scale:
            raise OptionError(f"gt_size: {gt_size} is not a multiple of scale {scale}")
        if not isinstance(filename_tmpl, str) or "{}" not in filename_tmpl:
            raise OptionError(f"filename_tmpl: {filename_tmpl!r} must contain '{{}}' where the "
                              f"GT name goes, e.g. '{{}}_x4'")
        self.gt_backend = make_backend(io_backend, dataroot_gt, "dataroot_gt")
        self.lq_backend = make_backend(io_backend, dataroot_lq, "dataroot_lq")
        self.pairs = self._pair_names(filename_tmpl, read_meta_info(meta_info_file))
        self.train = phase == TRAIN_PHASE
        self.gt_size, self.scale, self.color = gt_size, scale, color
        self.use_hflip = use_hflip if use_flip is None else use_flip
        self.use_hflip, self.use_rot = self.use_hflip or geometric_augs, use_rot or geometric_augs

    def _pair_names(self, filename_tmpl: str, only: Optional[list[str]]
                    ) -> list[tuple[str, str]]:
        """(GT name, LQ name) for every GT image (those in ``only`` when given); a GT without
        LQ partner is an error."""
        lq_names = set(self.lq_backend.keys())
        gt_names = self.gt_backend.keys()
        if only is not None:
            missing = sorted(set(only) - set(gt_names))
            if missing:
                raise DataError(f"meta_info_file: lists {len(missing)} image(s) not in "
                                f"'{self.gt_backend.root}', e.g. '{missing[0]}'")
            gt_names = only
        pairs = []
        for gt_name in gt_names:
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
        self._check_sizes(gt.shape[:2], lq.shape[:2], gt_path, lq_path)
        return gt, lq, gt_path, lq_path

    def _check_sizes(self, gt_hw: tuple[int, ...], lq_hw: tuple[int, ...], gt_path: str,
                     lq_path: str) -> None:
        """The GT must be the LQ's size times ``scale``; else the error names both files."""
        (hg, wg), (hl, wl) = gt_hw, lq_hw
        if (hg, wg) != (hl * self.scale, wl * self.scale):
            raise DataError(
                f"GT '{gt_path}' is {hg}x{wg} but LQ '{lq_path}' is {hl}x{wl}; with scale "
                f"{self.scale} the GT must be {hl * self.scale}x{wl * self.scale}: fix the pair or "
                f"the scale option")

    def check_files(self) -> int:
        """Read every pair's headers, not its pixels: each file must be a whole image and the
        GT the LQ's size times ``scale`` (a run does this for its validation sets before it
        starts). Returns the number of pairs."""
        for gt_name, lq_name in self.pairs:
            self._check_sizes(self.gt_backend.size(gt_name), self.lq_backend.size(lq_name),
                              self.gt_backend.describe(gt_name), self.lq_backend.describe(lq_name))
        return len(self.pairs)

    def __getitem__(self, key: Union[int, SampleKey]) -> dict[str, Any]:
        index, rng = sample_rng(key)
        gt, lq, gt_path, lq_path = self._read_pair(index)
        if self.train and self.gt_size is not None:
            check_crop_size(gt, self.gt_size, "gt_size", gt_path)
            gt, lq = paired_random_crop(gt, lq, self.gt_size, self.scale, rng)
        gt, lq = np.asarray(gt), np.asarray(lq)  # a raw LMDB view reads its pixels here
        if self.train:
            gt, lq = augment((gt, lq), rng, self.use_hflip, self.use_rot)
        if self.color == "y":
            gt, lq = rgb_to_y_float(gt), rgb_to_y_float(lq)
        return {"lq": to_tensor(lq, lq_path), "gt": to_tensor(gt, gt_path),
                "lq_path": lq_path, "gt_path": gt_path}
