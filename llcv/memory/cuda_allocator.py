"""A model of PyTorch's CUDA caching allocator, replayed on a stream of allocations and frees.

It follows ``c10/cuda/CUDACachingAllocator.cpp`` (PyTorch 2.13; constants in
``c10/core/AllocatorConfig.h``) for one device and one stream, and gives what
``torch.cuda.max_memory_allocated`` and ``max_memory_reserved`` would report:

- ``round_size``: a request is rounded up to a multiple of 512 bytes (``kMinBlockSize``; at
  least 512), or, when ``roundup_power2_divisions`` gives ``d > 1`` divisions for its interval
  and the request exceeds ``512 * d``, up to the next of ``d`` equal steps between two powers of
  two (a power of two stays as is).
- Pools: rounded sizes up to 1 MiB (``kSmallSize``) use the small pool, larger ones the large.
- A request no cached block can serve gets a new segment (``get_allocation_size``): 2 MiB
  (``kSmallBuffer``) for the small pool, ``large_segment_size`` (20 MiB, ``kLargeBuffer``) for
  requests under 10 MiB (``kMinLargeAlloc``), else the request rounded up to 2 MiB
  (``kRoundLarge``). ``reserved`` is the sum of segments.
- ``get_free_block``: best fit, the smallest free block of the pool at least as large as the
  request, lower address on ties; with ``max_split_size`` set, a request below it is not served
  by a block of at least that size, and a larger request not by a block ``max_non_split_rounding``
  or more above it.
- ``should_split``: the rest of the chosen block becomes a free block when it is at least 512
  bytes (small pool, or expandable segments), else when the request is below ``max_split_size``
  and the rest exceeds 1 MiB; otherwise the whole block is allocated (``allocated`` counts it).
- ``free_block``: a freed block merges with free neighbours of its segment; memory stays reserved.
- Expandable segments: one segment per pool whose memory is mapped on demand in pages of 2 MiB
  (small pool) or 20 MiB (large pool); a request maps the pages it needs at the lowest address
  with room (after a free block at the end of the mapped part, if any); best fit counts a free
  block followed by unmapped space at its expandable size.
- With an allowed amount (``limit``: a memory fraction), a segment that would exceed it is not
  created: first (``max_split_size`` set) the cached oversize blocks are released, then every
  fully free segment (free pages of expandable ones), then the allocation is retried, else it
  is out of memory. ``garbage_collection_threshold`` releases, before a new segment, unsplit
  cached large blocks older (in free-block searches) than average until the held memory is back
  under the threshold.

Addresses are not knowable in advance: segments are placed at increasing addresses in creation
order (what ``cudaMalloc`` usually does when nothing is freed), which decides ties between free
blocks of equal size.
"""
from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from typing import Hashable, Iterable, Optional

from llcv.errors import LLCVError
from llcv.memory.alloc_conf import K_LARGE_BUFFER, AllocatorConfig

K_MIN_BLOCK = 512  # kMinBlockSize
K_SMALL_SIZE = 1 << 20  # kSmallSize: largest small-pool request
K_SMALL_BUFFER = 2 << 20  # kSmallBuffer: small-pool segment
K_MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc
K_ROUND_LARGE = 2 << 20  # kRoundLarge
ADDRESS_SPACE = 1 << 48  # virtual space of one expandable segment (never the limit here)


class ModelOutOfMemory(LLCVError):
    """The modelled allocator cannot serve a request within its allowed memory."""


def round_size(size: int, config: AllocatorConfig) -> int:
    """The block size the allocator uses for a request of ``size`` bytes."""
    if size < K_MIN_BLOCK:
        return K_MIN_BLOCK
    divisions = config.divisions(size)
    if divisions > 1 and size > K_MIN_BLOCK * divisions:
        return _next_division(size, divisions)
    return -(-size // K_MIN_BLOCK) * K_MIN_BLOCK


def _next_division(size: int, divisions: int) -> int:
    """``size`` rounded up to one of ``divisions`` equal steps between powers of two."""
    if size & (size - 1) == 0:
        return size
    floor = 1 << (size.bit_length() - 1)
    step = floor >> (divisions.bit_length() - 1)
    if step == 0:
        return floor << 1
    return size if size % step == 0 else (size // step + 1) * step


def allocation_size(size: int, config: AllocatorConfig) -> int:
    """The segment a rounded request gets when nothing cached can serve it."""
    if size <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if size < K_MIN_LARGE_ALLOC:
        return config.large_segment_size
    return -(-size // K_ROUND_LARGE) * K_ROUND_LARGE


@dataclass(eq=False)
class Segment:
    """A ``cudaMalloc`` (or, expandable, a reserved address range) at a modelled address."""

    base: int
    small: bool
    expandable: bool = False
    page: int = 0  # mapping granularity of an expandable segment


@dataclass(eq=False)
class Block:
    """A piece of a segment: allocated, cached free, or (expandable) not mapped."""

    segment: Segment
    offset: int
    size: int
    allocated: bool = False
    mapped: bool = True
    prev: Optional["Block"] = None
    next: Optional["Block"] = None
    gc_base: int = 0
    requested: int = 0

    @property
    def address(self) -> int:
        return self.segment.base + self.offset

    def is_split(self) -> bool:
        return self.prev is not None or self.next is not None

    def free(self) -> bool:
        """Free and mapped: may merge with a freed neighbour or serve a request."""
        return not self.allocated and self.mapped


class _Pool:
    """Cached free blocks of one pool, ordered by (size, address), and unmapped ranges."""

    def __init__(self, small: bool) -> None:
        self.small = small
        self.keys: list[tuple[int, int]] = []
        self.blocks: dict[tuple[int, int], Block] = {}
        self.unmapped: list[Block] = []  # expandable segments' unmapped blocks, by address
        self.searches = 0  # get_free_blocks_call_count (counted when GC is on)

    def add(self, block: Block) -> None:
        key = (block.size, block.address)
        bisect.insort(self.keys, key)
        self.blocks[key] = block
        block.gc_base = self.searches

    def remove(self, block: Block) -> None:
        key = (block.size, block.address)
        del self.keys[bisect.bisect_left(self.keys, key)]
        del self.blocks[key]

    def from_size(self, size: int) -> Iterable[Block]:
        """Free blocks of at least ``size`` bytes, best fit first."""
        for i in range(bisect.bisect_left(self.keys, (size, -1)), len(self.keys)):
            yield self.blocks[self.keys[i]]

    def add_unmapped(self, block: Block) -> None:
        self.unmapped.insert(bisect.bisect([b.address for b in self.unmapped], block.address),
                             block)


@dataclass
class AllocatorStats:
    """The counters ``torch.cuda.memory_stats`` would show (bytes)."""

    allocated: int = 0
    reserved: int = 0
    requested: int = 0
    peak_allocated: int = 0
    peak_reserved: int = 0
    segments: int = 0
    ooms: int = 0


@dataclass
class CachingAllocatorModel:
    """Replays ``malloc(key, nbytes)`` / ``free(key)`` as PyTorch's CUDA caching allocator does.

    ``limit`` is the allowed memory in bytes (a per-process memory fraction of the device);
    None is an unlimited device, where cached memory is never released.
    """

    config: AllocatorConfig = field(default_factory=AllocatorConfig)
    limit: Optional[int] = None
    stats: AllocatorStats = field(default_factory=AllocatorStats)

    def __post_init__(self) -> None:
        self.pools = {True: _Pool(True), False: _Pool(False)}
        self.live: dict[Hashable, Block] = {}
        self._next_address = itertools.count(1 << 50, 1 << 50).__next__  # segment placement

    # ------------------------------------------------------------------ public
    def malloc(self, key: Hashable, nbytes: int) -> Block:
        """Allocate ``nbytes`` for ``key`` (a storage); returns the block that serves it."""
        if key in self.live:
            raise ValueError(f"malloc: {key!r} is already allocated")
        size = round_size(nbytes, self.config)
        pool = self.pools[size <= K_SMALL_SIZE]
        block = self._get_free_block(pool, size) or self._new_block(pool, size)
        if self._should_split(block, size):
            block = self._split(block, size, pool)
        block.allocated, block.requested = True, nbytes
        self.live[key] = block
        self._count(allocated=block.size, requested=nbytes)
        return block

    def free(self, key: Hashable) -> None:
        """Free ``key``'s block: it goes back to its pool, merged with free neighbours."""
        block = self.live.pop(key)
        block.allocated = False
        self._count(allocated=-block.size, requested=-block.requested)
        pool = self.pools[block.segment.small]
        for neighbour in (block.prev, block.next):
            self._merge(block, neighbour, pool)
        pool.add(block)

    def reset_peak(self) -> None:
        """``torch.cuda.reset_peak_memory_stats``: peaks restart from the current figures."""
        self.stats.peak_allocated = self.stats.allocated
        self.stats.peak_reserved = self.stats.reserved

    def empty_cache(self) -> None:
        """``torch.cuda.empty_cache``: release every fully free segment (free pages)."""
        self._release_cached()

    def segment_sizes(self) -> list[int]:
        """Held bytes of every segment (mapped bytes of an expandable one), by address."""
        sizes: dict[int, int] = {}
        for pool in self.pools.values():
            for block in list(pool.blocks.values()) + [b for b in self.live.values()
                                                       if b.segment.small == pool.small]:
                sizes[block.segment.base] = sizes.get(block.segment.base, 0) + block.size
        return [sizes[base] for base in sorted(sizes)]

    # ------------------------------------------------------------------ bookkeeping
    def _count(self, allocated: int = 0, reserved: int = 0, requested: int = 0) -> None:
        s = self.stats
        s.allocated += allocated
        s.reserved += reserved
        s.requested += requested
        s.peak_allocated = max(s.peak_allocated, s.allocated)
        s.peak_reserved = max(s.peak_reserved, s.reserved)

    def _gc_on(self) -> bool:
        return self.limit is not None and self.config.garbage_collection_threshold > 0

    # ------------------------------------------------------------------ finding a block
    def _get_free_block(self, pool: _Pool, size: int) -> Optional[Block]:
        """Best fit among the pool's cached blocks, with the ``max_split_size`` rules."""
        if self._gc_on():
            pool.searches += 1
        candidates = iter(pool.from_size(size))
        block = next(candidates, None)
        if block is not None and block.segment.expandable:
            block = _least_expandable(block, candidates)
        if block is None or not self._may_serve(block, size):
            return None
        pool.remove(block)
        return block

    def _may_serve(self, block: Block, size: int) -> bool:
        limit = self.config.max_split_size
        if limit is None:
            return True
        if size < limit:
            return block.size < limit
        return block.size < size + self.config.max_non_split_rounding

    def _should_split(self, block: Block, size: int) -> bool:
        remaining = block.size - size
        if block.segment.small or self.config.expandable_segments:
            return remaining >= K_MIN_BLOCK
        limit = self.config.max_split_size
        return (limit is None or size < limit) and remaining > K_SMALL_SIZE

    def _split(self, block: Block, size: int, pool: _Pool) -> Block:
        """Cut ``size`` bytes off the front of ``block``; the rest is cached in ``pool``."""
        front = Block(block.segment, block.offset, size, prev=block.prev, next=block)
        if block.prev is not None:
            block.prev.next = front
        block.prev, block.offset, block.size = front, block.offset + size, block.size - size
        pool.add(block)
        return front

    def _merge(self, block: Block, other: Optional[Block], pool: _Pool) -> None:
        """Absorb a free neighbour (mapped like ``block``) into ``block``."""
        if other is None or other.allocated or other.mapped != block.mapped:
            return
        if other.mapped:
            pool.remove(other)
        else:
            pool.unmapped.remove(other)
        if other is block.prev:
            block.offset, block.prev = other.offset, other.prev
            if other.prev is not None:
                other.prev.next = block
        else:
            block.next = other.next
            if other.next is not None:
                other.next.prev = block
        block.size += other.size

    # ------------------------------------------------------------------ new memory
    def _new_block(self, pool: _Pool, size: int) -> Block:
        """A new segment (or newly mapped pages), releasing cached memory under a limit."""
        if self._gc_on():
            self._garbage_collect()
        block = self._alloc_block(pool, size)
        if block is None and self._release_available(pool, size):
            block = self._alloc_block(pool, size)
        if block is None and self._release_cached():
            block = self._alloc_block(pool, size)
        if block is None:
            self.stats.ooms += 1
            raise ModelOutOfMemory(
                f"the modelled CUDA caching allocator is out of memory: {size} bytes requested "
                f"with {self.stats.reserved} of {self.limit} allowed bytes reserved")
        return block

    def _fits(self, nbytes: int) -> bool:
        return self.limit is None or self.stats.reserved + nbytes <= self.limit

    def _alloc_block(self, pool: _Pool, size: int) -> Optional[Block]:
        if self.config.expandable_segments:
            return self._expand(pool, size)
        nbytes = allocation_size(size, self.config)
        if not self._fits(nbytes):
            return None
        segment = Segment(self._next_address(), pool.small)
        self.stats.segments += 1
        self._count(reserved=nbytes)
        return Block(segment, 0, nbytes)

    # ------------------------------------------------------------------ expandable segments
    def _expand(self, pool: _Pool, size: int) -> Optional[Block]:
        """``try_allocate_expandable_block``: map pages so a free run of ``size`` bytes exists
        at the lowest possible address; returns that run as one block (out of the pool)."""
        candidate = self._expandable_candidate(pool, size)
        if not candidate.mapped:
            candidate = self._map(candidate, min(candidate.size, size), pool)
            if candidate is None:
                return None
        while candidate.size < size:
            nxt = candidate.next
            mapped = self._map(nxt, min(size - candidate.size, nxt.size), pool)
            if mapped is None:
                return None
            candidate = mapped
        pool.remove(candidate)
        return candidate

    def _expandable_candidate(self, pool: _Pool, size: int) -> Block:
        """The lowest unmapped range (with the free block before it) that can hold ``size``."""
        for block in list(pool.unmapped):
            start = block.prev if block.prev is not None and block.prev.free() else block
            room, b = 0, start
            while b is not None and not b.allocated and room < size:
                room, b = room + b.size, b.next
            if room >= size:
                return start
        page = K_SMALL_BUFFER if pool.small else K_LARGE_BUFFER
        segment = Segment(self._next_address(), pool.small, expandable=True, page=page)
        self.stats.segments += 1
        block = Block(segment, 0, ADDRESS_SPACE, mapped=False)
        pool.add_unmapped(block)
        return block

    def _map(self, block: Block, size: int, pool: _Pool) -> Optional[Block]:
        """Map whole pages covering ``size`` bytes at the start of an unmapped ``block``;
        the mapped part merges with free neighbours and is cached. None when over the limit."""
        page = block.segment.page
        nbytes = min(-(-size // page) * page, block.size)
        if not self._fits(nbytes):
            return None
        pool.unmapped.remove(block)
        if nbytes < block.size:
            rest = Block(block.segment, block.offset + nbytes, block.size - nbytes,
                         mapped=False, prev=block, next=block.next)
            if block.next is not None:
                block.next.prev = rest
            block.next, block.size = rest, nbytes
            pool.add_unmapped(rest)
        block.mapped = True
        self._merge(block, block.prev, pool)
        self._merge(block, block.next, pool)
        pool.add(block)
        self._count(reserved=nbytes)
        return block

    def _unmap(self, block: Block, pool: _Pool) -> int:
        """Unmap the whole pages inside a cached free ``block``; returns the bytes unmapped."""
        page = block.segment.page
        end = block.offset + block.size
        start, stop = -(-block.offset // page) * page, end // page * page
        if stop <= start:
            return 0
        pool.remove(block)
        prev, hole = block.prev, None
        for begin, until, mapped in ((block.offset, start, True), (start, stop, False),
                                     (stop, end, True)):
            if until > begin:
                piece = Block(block.segment, begin, until - begin, mapped=mapped, prev=prev)
                if prev is not None:
                    prev.next = piece
                prev = piece
                if mapped:
                    pool.add(piece)
                else:
                    hole = piece
                    pool.add_unmapped(piece)
        prev.next = block.next
        if block.next is not None:
            block.next.prev = prev
        self._merge(hole, hole.prev, pool)
        self._merge(hole, hole.next, pool)
        self._count(reserved=-(stop - start))
        return stop - start

    # ------------------------------------------------------------------ releasing
    def _release_segment(self, block: Block, pool: _Pool) -> int:
        """``cudaFree`` a cached block that is a whole segment; returns its size."""
        pool.remove(block)
        self.stats.segments -= 1
        self._count(reserved=-block.size)
        return block.size

    def _release_available(self, pool: _Pool, size: int) -> bool:
        """``release_available_cached_blocks``: free cached oversize blocks (``max_split_size``
        set) — the smallest one of at least ``max(size, max_split_size)``, else the largest
        ones until that much is freed."""
        limit = self.config.max_split_size
        if limit is None:
            return False
        want = max(size, limit)
        whole = [b for b in pool.blocks.values() if not b.segment.expandable]
        fitting = [b for b in whole if b.size >= want]
        if fitting:
            self._release_or_unmap(min(fitting, key=lambda b: (b.size, b.address)), pool)
            return True
        freed = 0
        for block in sorted(whole, key=lambda b: (b.size, b.address), reverse=True):
            if freed >= want or block.size < limit:
                break
            freed += self._release_or_unmap(block, pool)
        return freed >= want

    def _release_or_unmap(self, block: Block, pool: _Pool) -> int:
        if block.segment.expandable:
            return self._unmap(block, pool)
        return self._release_segment(block, pool) if not block.is_split() else 0

    def _release_cached(self) -> bool:
        """``release_cached_blocks``: free every unsplit cached segment, unmap free pages."""
        for pool in self.pools.values():
            for block in list(pool.blocks.values()):
                if block.segment.expandable or not block.is_split():
                    self._release_or_unmap(block, pool)
        return True

    def _garbage_collect(self) -> None:
        """``garbage_collect_cached_blocks``: release unsplit cached large blocks of at least
        average age until the held memory is under the threshold (or nothing is left)."""
        threshold = int(self.config.garbage_collection_threshold * self.limit)
        if self.stats.reserved <= threshold:
            return
        target, reclaimed = self.stats.reserved - threshold, 0
        pool = self.pools[False]
        freeable = [b for b in pool.blocks.values() if not b.is_split()]
        while freeable and reclaimed < target:
            age = sum(pool.searches - b.gc_base for b in freeable) / len(freeable)
            old = [b for b in freeable if pool.searches - b.gc_base >= age]
            for block in old:
                reclaimed += self._release_segment(block, pool)
            freeable = [b for b in freeable if b not in old]


def _least_expandable(block: Block, others: Iterable[Block]) -> Block:
    """Among expandable candidates, move on while the next one can grow to less."""
    def grows_to(b: Block) -> int:
        return b.size + (b.next.size if b.next is not None and not b.next.mapped else 0)

    for other in others:
        if not block.segment.expandable or grows_to(other) >= grows_to(block):
            break
        block = other
    return block

