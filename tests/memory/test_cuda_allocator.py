"""The CUDA caching-allocator model against event sequences whose outcome PyTorch's rules fix.

Every expected figure below is worked out by hand from c10/cuda/CUDACachingAllocator.cpp:
512-byte rounding, 2 MiB small segments, 20 MiB segments for 1-10 MiB requests, larger ones
rounded to 2 MiB, best fit, split only when the rest is >= 512 B (small pool) or > 1 MiB (large).
"""
import pytest

from llcv.memory.alloc_conf import AllocatorConfig
from llcv.memory.cuda_allocator import (CachingAllocatorModel, ModelOutOfMemory, allocation_size,
                                        round_size)

KIB, MIB = 1 << 10, 1 << 20


def model(conf: str = "", limit=None) -> CachingAllocatorModel:
    return CachingAllocatorModel(AllocatorConfig.parse(conf), limit)


def figures(m: CachingAllocatorModel) -> tuple:
    s = m.stats
    return s.allocated, s.reserved, s.peak_allocated, s.peak_reserved


def test_rounding_and_segment_sizes():
    default = AllocatorConfig()
    assert [round_size(n, default) for n in (1, 512, 513, 1000, 4097)] == [512, 512, 1024, 1024,
                                                                          4608]
    assert allocation_size(1 * MIB, default) == 2 * MIB  # small pool: 2 MiB segments
    assert allocation_size(1 * MIB + 512, default) == 20 * MIB  # 1-10 MiB: kLargeBuffer
    assert allocation_size(10 * MIB - 512, default) == 20 * MIB
    assert allocation_size(10 * MIB, default) == 10 * MIB  # >= 10 MiB: rounded to 2 MiB
    assert allocation_size(11 * MIB, default) == 12 * MIB


def test_small_pool_packs_512_byte_blocks_into_one_2mib_segment():
    m = model()
    a = m.malloc("a", 1)  # -> 512 B, a new 2 MiB segment split at 512
    b = m.malloc("b", 513)  # -> 1024 B, best fit: the rest of the same segment
    assert (a.size, b.size, b.segment is a.segment, b.offset) == (512, 1024, True, 512)
    assert figures(m) == (1536, 2 * MIB, 1536, 2 * MIB)
    assert m.stats.requested == 514 and m.stats.segments == 1


def test_large_allocation_gets_its_own_segment_and_is_not_split():
    m = model()
    block = m.malloc("x", 11 * MIB)  # 12 MiB segment; the 1 MiB rest is not > 1 MiB: no split
    assert block.size == 12 * MIB and block.next is None
    assert figures(m) == (12 * MIB, 12 * MIB, 12 * MIB, 12 * MIB)
    m.malloc("s", 100)  # a small request never uses the large pool
    assert m.stats.reserved == 14 * MIB and m.stats.segments == 2


def test_mid_size_requests_split_a_20mib_segment_and_reuse_after_free():
    m = model()
    m.malloc("a", 3 * MIB)  # 20 MiB segment: 3 MiB allocated, 17 MiB cached
    assert figures(m) == (3 * MIB, 20 * MIB, 3 * MIB, 20 * MIB)
    b = m.malloc("b", 16 * MIB)  # best fit 17 MiB; the 1 MiB rest is not split off
    assert b.size == 17 * MIB and m.stats.allocated == 20 * MIB
    m.free("a")
    m.free("b")  # merges with a: one free 20 MiB block again
    assert figures(m) == (0, 20 * MIB, 20 * MIB, 20 * MIB)
    c = m.malloc("c", 5 * MIB)  # reuse: no new segment
    assert (c.offset, c.size, m.stats.reserved, m.stats.segments) == (0, 5 * MIB, 20 * MIB, 1)


def test_best_fit_prefers_the_smallest_block_then_the_lower_address():
    m = model()
    for key in "abcde":
        m.malloc(key, 4 * MIB)  # a-d in segment 1 (20 MiB: 4 x 4 + 4 rest), e splits the rest
    m.malloc("f", 4 * MIB)  # segment 1 is full: a new 20 MiB segment
    m.free("b")  # 4 MiB hole at 4 MiB in segment 1
    m.free("d")  # 4 MiB hole at 12 MiB in segment 1
    hit = m.malloc("g", 3 * MIB)  # smallest fitting is 4 MiB; lower address: b's
    assert (hit.segment.base, hit.offset) == (m.live["a"].segment.base, 4 * MIB)
    assert hit.size == 4 * MIB  # the 1 MiB rest is not > 1 MiB: whole block allocated


def test_max_split_size_keeps_oversize_blocks_whole():
    m = model("max_split_size_mb:40")
    m.malloc("big", 50 * MIB)
    m.free("big")
    small = m.malloc("small", 30 * MIB)  # below 40 MiB: may not take the 50 MiB block
    assert small.size == 30 * MIB and m.stats.reserved == 80 * MIB
    m.free("small")
    again = m.malloc("again", 45 * MIB)  # >= 40: the 50 MiB block is within 45 + 20 MiB
    assert again.size == 50 * MIB and m.stats.reserved == 80 * MIB


def test_roundup_power2_divisions():
    m = model("roundup_power2_divisions:4")
    assert m.malloc("a", 1200).size == 1536  # not above 512 * 4: plain 512 rounding
    assert m.malloc("b", 5000).size == 5120  # 4 steps of 1024 between 4096 and 8192
    assert m.malloc("c", 4096).size == 4096  # a power of two stays
    assert m.malloc("d", 3 * MIB + 1).size == 3 * MIB + 512 * KIB  # steps of 512 KiB


def test_expandable_segments_grow_one_segment_by_pages():
    m = model("expandable_segments:True")
    m.malloc("a", 3 * MIB)  # maps one 20 MiB page; the rest (17 MiB) splits off
    assert figures(m) == (3 * MIB, 20 * MIB, 3 * MIB, 20 * MIB)
    b = m.malloc("b", 30 * MIB)  # 17 MiB free + one more page -> 37 MiB run from 3 MiB
    assert (b.offset, b.size, m.stats.reserved) == (3 * MIB, 30 * MIB, 40 * MIB)
    assert m.stats.segments == 1  # without expandable segments: 20 + 30 = 50 MiB, 2 segments
    m.free("a")
    m.free("b")
    assert m.segment_sizes() == [40 * MIB] and m.stats.allocated == 0
    small = m.malloc("s", 600 * KIB)  # the small pool has its own segment, 2 MiB pages
    assert (small.size, m.stats.reserved) == (600 * KIB, 42 * MIB)


def test_release_under_a_memory_limit_and_out_of_memory():
    m = model(limit=40 * MIB)
    m.malloc("a", 25 * MIB)  # a 26 MiB segment
    m.free("a")
    m.malloc("b", 30 * MIB)  # 26 + 30 > 40: the cached segment is released first
    assert figures(m) == (30 * MIB, 30 * MIB, 30 * MIB, 30 * MIB) and m.stats.segments == 1
    with pytest.raises(ModelOutOfMemory, match="out of memory"):
        m.malloc("c", 12 * MIB)
    assert m.stats.ooms == 1


def test_garbage_collection_releases_the_oldest_cached_blocks():
    m = model("garbage_collection_threshold:0.5", limit=100 * MIB)
    m.malloc("a", 30 * MIB)  # search 1
    m.free("a")  # cached at search count 1
    m.malloc("b", 40 * MIB)  # search 2; reserved 70
    m.free("b")  # cached at search count 2
    m.malloc("c", 50 * MIB)  # search 3: nothing fits; 70 > 50: GC frees a (age 2 >= 1.5)
    assert m.stats.reserved == 90 * MIB and m.segment_sizes() == [40 * MIB, 50 * MIB]


def test_reset_peak_and_empty_cache():
    m = model()
    m.malloc("a", 11 * MIB)
    m.malloc("b", 1000)
    m.free("a")
    m.reset_peak()
    assert figures(m) == (1024, 14 * MIB, 1024, 14 * MIB)
    m.empty_cache()  # the 12 MiB segment is free; the small one still holds b
    assert (m.stats.reserved, m.stats.segments) == (2 * MIB, 1)
    with pytest.raises(ValueError, match="already allocated"):
        m.malloc("b", 10)
