"""Sample order and per-sample randomness that depend only on (seed, epoch, position).

A training sampler yields :class:`SampleKey` values: the dataset index plus a seed for that
sample's augmentation and degradation. The stream is therefore the same whatever the number of
workers, and a resumed run re-enters it at the exact position it left.
"""
from __future__ import annotations

import math
from typing import Iterator, NamedTuple, Union

import numpy as np
import torch
from torch.utils.data import Sampler

from llcv.errors import OptionError


class SampleKey(NamedTuple):
    """A dataset index and the seed of that sample's random augmentation."""

    index: int
    seed: int


def sample_rng(key: Union[int, SampleKey], dataset_seed: int = 0) -> tuple[int, np.random.Generator]:
    """Split a dataset key into (index, rng).

    Training keys carry their own seed; a plain ``int`` (validation, test) gets an rng fixed by
    the index, so each validation sample is the same in every run.
    """
    if isinstance(key, SampleKey):
        return int(key.index), np.random.default_rng(key.seed)
    index = int(key)
    return index, np.random.default_rng([dataset_seed, index, 0x5EED])


class InfiniteSeededSampler(Sampler):
    """Endless stream of :class:`SampleKey` for one rank, resumable at any iteration.

    Epoch ``e`` is a permutation of ``len(dataset) * enlarge_ratio`` positions drawn from
    ``seed + e``; rank ``r`` of ``world_size`` takes every ``world_size``-th position from ``r``.
    Each epoch yields whole batches only (``drop_last``), so iteration ``i`` always maps to the
    same samples and ``start_iter`` re-enters the stream exactly.
    """

    def __init__(self, dataset_len: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, enlarge_ratio: int = 1, shuffle: bool = True,
                 start_iter: int = 0) -> None:
        self.num_positions = dataset_len * enlarge_ratio
        self.dataset_len = dataset_len
        self.per_rank = math.ceil(self.num_positions / world_size)
        self.iters_per_epoch = self.per_rank // batch_size
        if self.iters_per_epoch == 0:
            raise OptionError(
                f"batch_size_per_gpu: {batch_size} is larger than the {self.per_rank} samples each "
                f"of {world_size} process(es) gets from {dataset_len} images; lower the batch size "
                f"or raise dataset_enlarge_ratio")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.shuffle = shuffle
        self.start_iter = start_iter

    def epoch_positions(self, epoch: int) -> list[int]:
        """Positions (into the enlarged dataset) this rank visits in ``epoch``, whole batches only."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.num_positions, generator=gen).tolist()
        else:
            order = list(range(self.num_positions))
        order += order[: self.per_rank * self.world_size - len(order)]  # pad so ranks are equal
        mine = order[self.rank::self.world_size]
        return mine[: self.iters_per_epoch * self.batch_size]

    def __iter__(self) -> Iterator[SampleKey]:
        epoch, offset = divmod(self.start_iter, self.iters_per_epoch)
        skip = offset * self.batch_size
        while True:
            for position in self.epoch_positions(epoch)[skip:]:
                seed = int(np.random.SeedSequence([self.seed, epoch, position]).generate_state(1)[0])
                yield SampleKey(position % self.dataset_len, seed)
            epoch, skip = epoch + 1, 0
