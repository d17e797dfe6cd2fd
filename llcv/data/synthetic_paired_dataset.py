"""Clean images degraded on the fly: a fresh degradation for every training sample."""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from llcv.data.builtin_images import check_builtin_name, load_builtin_uint8
from llcv.data.image_io import make_backend, to_float, to_tensor
from llcv.data.paired_image_dataset import TRAIN_PHASE, check_phase
from llcv.data.sampler import SampleKey, sample_rng
from llcv.data.transforms import augment, center_crop, check_crop_size, random_crop
from llcv.errors import OptionError
from llcv.degradations.base import Degradation, build_child
from llcv.registry import DATASETS
from llcv.utils import check_int


@DATASETS.register_module()
class SyntheticPairedDataset(Dataset):
    """GT from a folder or LMDB (``dataroot_gt`` with ``io_backend``) or the bundled photos
    (``builtin_images``); LQ made by ``degradation(gt_hwc, rng)``, then clipped to [0, 1] as a
    camera saturates.

    Training: random ``gt_size`` crop, flips/rotations and degradation from the sample's rng.
    Validation: the same LQ for an index in every run (rng from ``seed`` and the index), after an
    optional centre crop to at most ``crop_val`` pixels a side. ``lq_path`` equals ``gt_path``.
    ``return_label`` adds what the degradation did (for all-in-one restoration): ``degradation``,
    its drawn parameters as a JSON string, and ``label``, the branch a ``RandomChoice`` took
    (-1 for any other degradation).
    """

    def __init__(self, phase: str, degradation: Mapping[str, Any],
                 dataroot_gt: Optional[str] = None,
                 builtin_images: Optional[Sequence[str]] = None, gt_size: Optional[int] = None,
                 use_hflip: bool = False, use_rot: bool = False, crop_val: Optional[int] = None,
                 seed: int = 0, io_backend: Optional[Mapping[str, Any]] = None,
                 return_label: bool = False) -> None:
        check_phase(phase)
        for name, value in (("gt_size", gt_size), ("crop_val", crop_val)):
            if value is not None:
                check_int(name, value, error=OptionError)
        if (dataroot_gt is None) == (builtin_images is None):
            raise OptionError("dataroot_gt: give exactly one of dataroot_gt (a folder of clean "
                              "images) and builtin_images (names of bundled photos)")
        self.degradation = build_child("degradation", degradation)
        self.return_label = return_label
        self.train = phase == TRAIN_PHASE
        self.gt_size, self.crop_val, self.seed = gt_size, crop_val, int(seed)
        self.use_hflip, self.use_rot = use_hflip, use_rot
        self.backend = None
        if dataroot_gt is not None:
            self.backend = make_backend(io_backend, dataroot_gt, "dataroot_gt")
            self.names = self.backend.keys()
        else:
            self.names = self._check_builtin(builtin_images)

    def _check_builtin(self, builtin_images: Sequence[str]) -> list[str]:
        """The bundled photo names, checked (and, for training, large enough for ``gt_size``)."""
        if isinstance(builtin_images, str) or not builtin_images:
            raise OptionError(f"builtin_images: expected a non-empty list of names, e.g. "
                              f"[astronaut, coffee], got {builtin_images!r}")
        for i, name in enumerate(builtin_images):
            check_builtin_name(name, f"builtin_images[{i}]")
            if self.train and self.gt_size is not None:
                check_crop_size(load_builtin_uint8(name), self.gt_size, "gt_size",
                                f"skimage:{name}")
        return list(builtin_images)

    def __len__(self) -> int:
        return len(self.names)

    def _read_gt(self, index: int) -> tuple[Any, str]:
        """GT image ``index`` in its stored dtype (array or lazily read view), and its path."""
        name = self.names[index]
        if self.backend is None:
            return load_builtin_uint8(name), f"skimage:{name}"
        return self.backend.read(name), self.backend.describe(name)

    def __getitem__(self, key: Union[int, SampleKey]) -> dict[str, Any]:
        index, rng = sample_rng(key, self.seed)
        gt, path = self._prepare_gt(index, rng)
        gt_tensor = to_tensor(gt, path)  # a copy: a degradation writing in place cannot alter it
        lq, params = self._degrade(gt, rng)
        return self._sample(gt_tensor, lq, path, params)

    def _prepare_gt(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """GT image ``index`` cropped (and, in training, flipped/rotated) as float, and its path."""
        gt, path = self._read_gt(index)
        if self.train and self.gt_size is not None:
            check_crop_size(gt, self.gt_size, "gt_size", path)
            gt = random_crop(gt, self.gt_size, rng)
        elif not self.train and self.crop_val is not None:
            gt = center_crop(gt, self.crop_val)
        gt = np.asarray(gt)  # a raw LMDB view reads its pixels here
        if self.train:
            (gt,) = augment((gt,), rng, self.use_hflip, self.use_rot)
        return to_float(gt, path), path

    def _sample(self, gt: torch.Tensor, lq: np.ndarray, path: str,
                params: Mapping[str, Any]) -> dict[str, Any]:
        """The sample dict: LQ and GT tensors, their path and, with ``return_label``, labels."""
        sample = {"lq": to_tensor(lq, path), "gt": gt, "lq_path": path, "gt_path": path}
        if self.return_label:
            sample["degradation"] = json.dumps(params, sort_keys=True)
            sample["label"] = int(params.get("choice", -1))
        return sample

    def _degrade(self, gt: np.ndarray, rng: np.random.Generator,
                 degradation: Optional[Degradation] = None) -> tuple[np.ndarray, dict]:
        """LQ from GT by ``degradation`` (default: the dataset's), clipped to [0, 1], and the
        drawn parameters; a non-image LQ is an error."""
        degradation = self.degradation if degradation is None else degradation
        lq, params = degradation.degrade(gt, rng)
        lq = np.asarray(lq, dtype=np.float32)
        if lq.ndim != 3 or lq.shape[2] != 3:
            raise OptionError(f"degradation: {type(degradation).__name__} returned shape "
                              f"{lq.shape}; expected an HxWx3 image")
        return np.clip(lq, 0.0, 1.0), params
