"""Prefetchers hand out exactly the loader's batches, in order, and report loader errors in turn."""
from itertools import islice

import pytest
import torch
from torch.utils.data import DataLoader

from llcv.data.paired_image_dataset import PairedImageDataset
from llcv.data.prefetch import CPUPrefetcher, wrap_prefetch
from llcv.data.sampler import InfiniteSeededSampler
from llcv.errors import DataError, OptionError

CPU = torch.device("cpu")


def seeded_loader(photo_pairs):
    gt, lq = photo_pairs
    ds = PairedImageDataset(str(gt), str(lq), "train", gt_size=16, use_hflip=True, use_rot=True)
    return DataLoader(ds, batch_size=2, sampler=InfiniteSeededSampler(len(ds), 2, seed=3))


def assert_same_batches(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"])
        assert a["gt_path"] == b["gt_path"]


@pytest.mark.parametrize("mode", [None, "cpu"])
def test_prefetch_keeps_the_loader_stream(photo_pairs, mode):
    loader = seeded_loader(photo_pairs)
    want = list(islice(iter(loader), 7))
    prefetcher = wrap_prefetch(iter(loader), mode, CPU)
    got = list(islice(prefetcher, 7))
    prefetcher.close()
    assert_same_batches(got, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_prefetch_keeps_the_loader_stream(photo_pairs):
    loader = seeded_loader(photo_pairs)
    want = list(islice(iter(loader), 5))
    prefetcher = wrap_prefetch(iter(loader), "cuda", torch.device("cuda"))
    got = list(islice(prefetcher, 5))
    assert all(b["gt"].is_cuda for b in got)
    assert_same_batches([{**b, "gt": b["gt"].cpu(), "lq": b["lq"].cpu()} for b in got], want)


def failing_stream():
    yield 1
    yield 2
    raise DataError("key 'x' of LMDB 'y.lmdb' is corrupt")


def test_cpu_prefetch_raises_loader_errors_after_the_good_batches():
    prefetcher = CPUPrefetcher(failing_stream(), num_batches=2)
    assert [next(prefetcher), next(prefetcher)] == [1, 2]
    with pytest.raises(DataError, match="key 'x'"):
        next(prefetcher)
    with pytest.raises(StopIteration):
        next(prefetcher)
    assert list(CPUPrefetcher(iter(range(5)))) == [0, 1, 2, 3, 4]


def test_close_stops_a_thread_waiting_on_a_full_queue():
    prefetcher = CPUPrefetcher(iter(range(10**9)), num_batches=1)
    assert next(prefetcher) == 0
    prefetcher.close()
    assert not prefetcher.thread.is_alive()


def test_cuda_mode_on_cpu_names_the_option():
    with pytest.raises(OptionError, match=r"^datasets.train.prefetch_mode: 'cuda' needs a CUDA"):
        wrap_prefetch(iter([]), "cuda", CPU)
