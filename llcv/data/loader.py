"""Build datasets and data loaders from the ``datasets`` option section."""
from __future__ import annotations

import copy
import functools
import random
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from llcv.data.sampler import InfiniteSeededSampler
from llcv.registry import DATASETS, build
from llcv.schema import BOOL, INT, STR, Key

#: keys of a ``datasets.<phase>`` section read by the loader; the rest go to the dataset class
DATASET_LOADER_KEYS = {
    "name": Key(STR, ""),
    "batch_size_per_gpu": Key(INT, 1, low=1),
    "num_worker_per_gpu": Key(INT, 0, low=0),
    "dataset_enlarge_ratio": Key(INT, 1, low=1),
    "use_shuffle": Key(BOOL, True),
    "pin_memory": Key(BOOL, True),
    "prefetch_mode": Key((str, type(None)), None, (None, "cpu", "cuda")),
    # Restormer's progressive patches (llcv.data.progressive): per-stage batch, iterations, size
    "mini_batch_sizes": Key((list, type(None)), None),
    "iters": Key((list, type(None)), None),
    "gt_sizes": Key((list, type(None)), None),
}


def dataset_kwargs(section: Mapping[str, Any]) -> dict:
    """The part of a dataset section passed to the dataset class (loader keys removed)."""
    return {k: copy.deepcopy(v) for k, v in section.items() if k not in DATASET_LOADER_KEYS}


def build_dataset(section: Mapping[str, Any], phase: str) -> Dataset:
    """Build the dataset of ``datasets.<phase>`` (loader keys are left out)."""
    kind = "train" if phase == "train" else "val"
    return build(DATASETS, dataset_kwargs(section), f"datasets.{phase}", phase=kind)


def seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """Seed a worker's global RNGs from (seed, rank, worker) for datasets that use them."""
    worker_seed = int(np.random.SeedSequence([seed, rank, worker_id]).generate_state(1)[0])
    random.seed(worker_seed)
    np.random.seed(worker_seed)
    torch.manual_seed(worker_seed)


def build_train_loader(dataset: Dataset, section: Mapping[str, Any], seed: int, rank: int,
                       world_size: int, start_iter: int, device: torch.device) -> DataLoader:
    """An endless loader whose ``i``-th batch is the same in every run and after resume."""
    sampler = InfiniteSeededSampler(
        len(dataset), section["batch_size_per_gpu"], seed=seed, rank=rank, world_size=world_size,
        enlarge_ratio=section["dataset_enlarge_ratio"], shuffle=section["use_shuffle"],
        start_iter=start_iter)
    workers = section["num_worker_per_gpu"]
    return DataLoader(
        dataset, batch_size=section["batch_size_per_gpu"], sampler=sampler, num_workers=workers,
        pin_memory=section["pin_memory"] and device.type == "cuda", drop_last=True,
        worker_init_fn=functools.partial(seed_worker, seed=seed, rank=rank),
        persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)


def build_val_loader(dataset: Dataset, section: Mapping[str, Any], device: torch.device,
                     rank: int = 0, world_size: int = 1) -> DataLoader:
    """This rank's share (every ``world_size``-th image) of a validation set, in order."""
    return DataLoader(
        dataset, batch_size=section["batch_size_per_gpu"], sampler=range(rank, len(dataset), world_size),
        num_workers=section["num_worker_per_gpu"], drop_last=False,
        pin_memory=section["pin_memory"] and device.type == "cuda")


def iters_per_epoch(loader: DataLoader) -> int:
    """Number of training iterations in one pass over the (enlarged) dataset for this rank."""
    return loader.sampler.iters_per_epoch
