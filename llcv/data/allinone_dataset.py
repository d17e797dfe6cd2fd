"""The all-in-one restoration benchmark: clean images under several labelled degradations.

The default tasks are the five of the 5-degradation benchmark (IDR, CVPR 2023; used by DCPT,
ICLR 2025): haze (SOTS), rain streaks (Rain100L), Gaussian noise with sigma in {15, 25, 50}
(BSD68), motion blur (GoPro) and low light (LOL), synthesised here from the degradation
registry on any clean images, so a demo needs no download.
"""
from __future__ import annotations

import copy
import os
import zlib
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from llcv.data.image_io import to_tensor
from llcv.data.sampler import SampleKey
from llcv.data.synthetic_paired_dataset import SyntheticPairedDataset
from llcv.degradations.base import as_probs, build_child
from llcv.degradations.pipeline_degradation import RandomChoice
from llcv.errors import OptionError
from llcv.registry import DATASETS

#: Task name -> degradation options; the order is the label order of the default task list.
ALL_IN_ONE_TASKS: dict[str, dict] = {
    "haze": {"type": "Haze", "beta": [0.8, 2.0], "airlight": [0.75, 1.0]},
    "rain": {"type": "RainStreaks", "density": [0.004, 0.012]},
    "noise": {"type": "RandomChoice", "degradations": [
        {"type": "GaussianNoise", "sigma": sigma} for sigma in (15, 25, 50)]},
    "blur": {"type": "MotionBlur", "length": [9.0, 21.0]},
    "lowlight": {"type": "LowLight", "exposure": [0.08, 0.3], "gamma": [1.2, 2.0],
                 "noise": {"type": "PoissonNoise", "peak": [200.0, 800.0]}},
}


def task_configs(tasks: Sequence[str], task_opts: Optional[Mapping[str, Any]]) -> list[dict]:
    """Degradation options of each task: ``task_opts[name]`` where given, else the catalogue."""
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence) or not tasks:
        raise OptionError(f"tasks: expected a non-empty list of task names, e.g. "
                          f"[{', '.join(ALL_IN_ONE_TASKS)}], got {tasks!r}")
    task_opts = dict(task_opts or {})
    for name in task_opts:
        if name not in tasks:
            raise OptionError(f"task_opts.{name}: not one of tasks ({', '.join(map(str, tasks))})")
    cfgs = []
    for i, name in enumerate(tasks):
        if not isinstance(name, str) or (name not in ALL_IN_ONE_TASKS and name not in task_opts):
            raise OptionError(f"tasks.{i}: unknown task {name!r}; built in: "
                              f"{', '.join(ALL_IN_ONE_TASKS)} (others need task_opts.<name>)")
        if tasks.index(name) != i:
            raise OptionError(f"tasks.{i}: '{name}' is listed twice")
        cfgs.append(copy.deepcopy(task_opts[name] if name in task_opts
                                  else ALL_IN_ONE_TASKS[name]))
    return cfgs


@DATASETS.register_module()
class AllInOneDataset(SyntheticPairedDataset):
    """Clean images (``dataroot_gt`` folder/LMDB or ``builtin_images``) under ``tasks``.

    ``label`` is the task's position in ``tasks`` (the degradation class DCPT learns), ``task``
    its name and ``degradation`` what was drawn (JSON, as ``RandomChoice`` records it).
    ``task_opts.<name>`` replaces a task's degradation options or defines a new task (e.g.
    ``jpeg: {type: JPEGCompression, quality: [10, 40]}``).
    Training: a random crop of a random image under one task drawn with ``probs``.
    Validation: every image under every task (task-major), each the same in every run and
    whichever tasks the set holds (its randomness comes from the seed, the image and the task
    name), so a set of all tasks averages exactly the per-task sets of the same images; paths
    carry the task (``<image>_<task>``).
    """

    def __init__(self, phase: str, tasks: Sequence[str] = tuple(ALL_IN_ONE_TASKS),
                 task_opts: Optional[Mapping[str, Any]] = None,
                 probs: Optional[Sequence[float]] = None, dataroot_gt: Optional[str] = None,
                 builtin_images: Optional[Sequence[str]] = None, gt_size: Optional[int] = None,
                 use_hflip: bool = False, use_rot: bool = False, crop_val: Optional[int] = None,
                 seed: int = 0, io_backend: Optional[Mapping[str, Any]] = None) -> None:
        cfgs = task_configs(tasks, task_opts)
        self.tasks = list(tasks)
        self.branches = [build_child(f"task_opts.{name}", cfg) for name, cfg in zip(tasks, cfgs)]
        choice = RandomChoice(self.branches, as_probs("probs", probs, len(tasks)).tolist())
        super().__init__(phase, choice, dataroot_gt, builtin_images, gt_size, use_hflip,
                         use_rot, crop_val, seed, io_backend, return_label=True)

    def __len__(self) -> int:
        return len(self.names) * (1 if self.train else len(self.tasks))

    def __getitem__(self, key: Union[int, SampleKey]) -> dict[str, Any]:
        if self.train:
            sample = super().__getitem__(key)
            sample["task"] = self.tasks[sample["label"]]
            return sample
        task, index = divmod(int(key), len(self.names))
        name = self.tasks[task]
        rng = np.random.default_rng([self.seed, index, zlib.crc32(name.encode()), 0xA11])
        gt, path = self._prepare_gt(index, rng)
        gt_tensor = to_tensor(gt, path)  # a copy: a degradation writing in place cannot alter it
        lq, params = self._degrade(gt, rng, self.branches[task])
        root, ext = os.path.splitext(path)
        sample = self._sample(gt_tensor, lq, f"{root}_{name}{ext}",
                              {"choice": task, "type": type(self.branches[task]).__name__,
                               "params": params})
        sample["gt_path"], sample["task"] = path, name
        return sample
