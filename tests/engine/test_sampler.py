"""The training stream is fixed by (seed, epoch, position): resumable and split across ranks."""
from itertools import islice

import pytest

from llcv.data.sampler import InfiniteSeededSampler, sample_rng
from llcv.errors import OptionError


def _take(sampler, n):
    return list(islice(iter(sampler), n))


def test_resume_reenters_stream_exactly():
    full = _take(InfiniteSeededSampler(7, 2, seed=5), 40)  # 3 iters/epoch: crosses epochs
    for start_iter in (1, 3, 7):
        resumed = _take(InfiniteSeededSampler(7, 2, seed=5, start_iter=start_iter), 10)
        assert resumed == full[start_iter * 2: start_iter * 2 + 10]


def test_epochs_are_permutations_with_whole_batches():
    sampler = InfiniteSeededSampler(10, 3, seed=1)
    assert sampler.iters_per_epoch == 3
    keys = _take(sampler, 18)
    first, second = [k.index for k in keys[:9]], [k.index for k in keys[9:]]
    assert len(set(first)) == 9 and len(set(second)) == 9 and first != second
    assert len({k.seed for k in keys}) == 18


def test_ranks_split_disjointly():
    ranks = [_take(InfiniteSeededSampler(8, 2, seed=0, rank=r, world_size=2), 4) for r in (0, 1)]
    indices = [k.index for keys in ranks for k in keys]
    assert sorted(indices) == list(range(8))


def test_enlarge_ratio_repeats_dataset():
    sampler = InfiniteSeededSampler(3, 2, seed=0, enlarge_ratio=4)
    assert sampler.iters_per_epoch == 6
    assert sorted(k.index for k in _take(sampler, 12)) == sorted(list(range(3)) * 4)


def test_batch_larger_than_data_is_refused():
    with pytest.raises(OptionError, match="batch_size_per_gpu"):
        InfiniteSeededSampler(3, 4, seed=0)


def test_sample_rng_is_deterministic():
    a = sample_rng(4)[1].random(3)
    b = sample_rng(4)[1].random(3)
    assert (a == b).all() and (sample_rng(5)[1].random(3) != a).all()
