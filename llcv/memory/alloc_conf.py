"""``PYTORCH_CUDA_ALLOC_CONF``: the caching-allocator options that change how much memory it holds.

Parsed as PyTorch 2.13 parses them (``c10/core/AllocatorConfig.{h,cpp}`` for the device-generic
keys, ``c10/cuda/CUDAAllocatorConfig.h`` for the CUDA ones): the string is cut into tokens at
``,`` ``:`` ``[`` ``]`` with white space dropped, and read as ``key:value`` pairs. The variables
are looked up in the order ``PYTORCH_CUDA_ALLOC_CONF``, ``PYTORCH_ALLOC_CONF`` and the first one
set is used. Values and their checks:

- ``large_segment_size_mb`` (> 10; default 20): the segment a 1-10 MiB request gets; read
  before the other keys, and ``max_non_split_rounding_mb`` defaults to it.
- ``max_split_size_mb`` (>= ``large_segment_size_mb``; default unlimited): larger cached blocks
  are never split.
- ``max_non_split_rounding_mb`` (>= ``large_segment_size_mb``): how much larger than a request
  of at least ``max_split_size`` an unsplittable cached block may be and still serve it.
- ``roundup_power2_divisions``: ``N`` (a power of two) for every size, or ``[64:8,256:4,>:1]``
  per power-of-two interval of MiB (1 MiB .. 64 GiB, 16 intervals; the first boundary's value
  also covers the intervals below it, ``>`` the ones after the last boundary).
- ``garbage_collection_threshold`` (0 < t < 1): with a memory fraction set, cached blocks are
  reclaimed before the held memory passes ``t`` x the allowed memory.
- ``expandable_segments`` (``True``/``False``): one growing segment per pool instead of one
  ``cudaMalloc`` per segment.
- ``per_process_memory_fraction`` (0..1): the allowed memory, as a fraction of the device.
- ``backend``: ``native`` (modelled) or ``cudaMallocAsync`` (not modelled: refused).

Keys that do not change device memory (``release_lock_on_cudamalloc``, ``pinned_*``,
``graph_capture_record_stream_reuse``, ``throw_on_cudamalloc_oom``) are accepted and ignored;
an unknown key is an error, as in PyTorch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Optional

from llcv.errors import OptionError

MIB = 1 << 20
K_LARGE_BUFFER = 20 * MIB  # kLargeBuffer: default large_segment_size
K_MIN_LARGE_ALLOC = 10 * MIB  # kMinLargeAlloc
INTERVALS = 16  # kRoundUpPowerOfTwoIntervals: 1 MiB .. 64 GiB
ENV_VARS = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")
IGNORED_KEYS = frozenset({
    "release_lock_on_cudamalloc", "pinned_use_cuda_host_register", "pinned_num_register_threads",
    "pinned_use_background_threads", "pinned_reserve_segment_size_mb", "pinned_free_catch_all",
    "pinned_max_round_threshold", "pinned_max_cached_size", "graph_capture_record_stream_reuse",
    "throw_on_cudamalloc_oom"})


@dataclass(frozen=True)
class AllocatorConfig:
    """The caching allocator's options (bytes); the defaults are PyTorch's."""

    large_segment_size: int = K_LARGE_BUFFER
    max_split_size: Optional[int] = None  # None: unlimited (SIZE_MAX)
    max_non_split_rounding: int = K_LARGE_BUFFER
    roundup_power2_divisions: tuple = field(default=(0,) * INTERVALS)
    garbage_collection_threshold: float = 0.0
    expandable_segments: bool = False
    memory_fraction: float = 1.0
    text: str = ""  # the option string it was read from

    @classmethod
    def parse(cls, text: str) -> "AllocatorConfig":
        """Read an allocator option string (``"expandable_segments:True,..."``)."""
        return _Parser(text).config()

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "AllocatorConfig":
        """The options in ``PYTORCH_CUDA_ALLOC_CONF`` (else ``PYTORCH_ALLOC_CONF``)."""
        environ = os.environ if environ is None else environ
        for name in ENV_VARS:
            if name in environ:
                return _Parser(environ[name], name).config()
        return cls()

    def divisions(self, size: int) -> int:
        """``roundup_power2_divisions`` for a request of ``size`` bytes (its MiB interval)."""
        index = max(size.bit_length() - 1 - 20, 0)  # log2(size) - log2(1 MiB)
        return self.roundup_power2_divisions[min(index, INTERVALS - 1)]


def tokenize(text: str) -> list[str]:
    """Tokens of an option string: ``, : [ ]`` are tokens of their own, white space is dropped."""
    tokens, word = [], ""
    for ch in text:
        if ch in ",:[]":
            if word:
                tokens.append(word)
                word = ""
            tokens.append(ch)
        elif not ch.isspace():
            word += ch
    return tokens + ([word] if word else [])


class _Parser:
    """Reads ``key:value`` pairs from the tokens into an :class:`AllocatorConfig`."""

    def __init__(self, text: str, source: str = "PYTORCH_CUDA_ALLOC_CONF") -> None:
        self.text, self.source, self.tokens = text, source, tokenize(text)
        self.values: dict = {"text": text}

    def fail(self, message: str) -> OptionError:
        return OptionError(f"{self.source}: {message} (in {self.text!r})")

    def token(self, i: int, expected: Optional[str] = None) -> str:
        if i >= len(self.tokens) or (expected is not None and self.tokens[i] != expected):
            raise self.fail(f"expected {expected!r}" if expected else "missing a value")
        return self.tokens[i]

    def number(self, i: int, kind: type = int):
        text = self.token(i)
        try:
            return kind(text)
        except ValueError:
            raise self.fail(f"expected a number, got {text!r}") from None

    def config(self) -> AllocatorConfig:
        """Parse every pair; ``large_segment_size_mb`` first since other checks depend on it."""
        pairs = self.pairs()
        segment = self.values["large_segment_size"] = self.segment_size(pairs)
        self.values["max_non_split_rounding"] = segment
        for key, i in pairs:
            self.read(key, i, segment)
        return AllocatorConfig(**self.values)

    def pairs(self) -> list[tuple[str, int]]:
        """``(key, index of its value)`` for every pair, checking the ``,`` between them."""
        pairs, i = [], 0
        while i < len(self.tokens):
            key = self.token(i)
            self.token(i + 1, ":")
            pairs.append((key, i + 2))
            i = self.skip_value(i + 2) + 1
            if i < len(self.tokens):
                self.token(i, ",")
                i += 1
        return pairs

    def skip_value(self, i: int) -> int:
        """Index of the value's last token (the ``]`` of a list)."""
        if self.token(i) != "[":
            return i
        while self.token(i) != "]":
            i += 1
        return i

    def segment_size(self, pairs: list[tuple[str, int]]) -> int:
        for key, i in pairs:
            if key == "large_segment_size_mb":
                mb = self.number(i)
                if mb <= K_MIN_LARGE_ALLOC // MIB:
                    raise self.fail(f"large_segment_size_mb must be > {K_MIN_LARGE_ALLOC // MIB}")
                return mb * MIB
        return K_LARGE_BUFFER

    def read(self, key: str, i: int, segment: int) -> None:
        """Store one pair's value (checked as PyTorch checks it)."""
        if key in ("max_split_size_mb", "max_non_split_rounding_mb"):
            mb = self.number(i)
            if mb * MIB < segment:
                raise self.fail(f"{key} too small, must be >= {segment // MIB}")
            name = "max_split_size" if key == "max_split_size_mb" else "max_non_split_rounding"
            self.values[name] = mb * MIB
        elif key == "garbage_collection_threshold":
            value = self.number(i, float)
            if not 0.0 < value < 1.0:
                raise self.fail("garbage_collection_threshold must be in (0.0, 1.0)")
            self.values["garbage_collection_threshold"] = value
        elif key == "roundup_power2_divisions":
            self.values["roundup_power2_divisions"] = self.divisions(i)
        elif key == "expandable_segments":
            self.values["expandable_segments"] = self.boolean(i)
        elif key == "per_process_memory_fraction":
            self.values["memory_fraction"] = self.fraction(i)
        elif key == "backend":
            if self.token(i) != "native":
                raise self.fail(f"backend {self.token(i)!r} is not modelled; llcv models the "
                                f"native caching allocator")
        elif key not in IGNORED_KEYS and key != "large_segment_size_mb":
            raise self.fail(f"unrecognized allocator option {key!r}")

    def boolean(self, i: int) -> bool:
        value = self.token(i)
        if value not in ("True", "False"):
            raise self.fail(f"expected True or False, got {value!r}")
        return value == "True"

    def fraction(self, i: int) -> float:
        value = self.number(i, float)
        if not 0.0 <= value <= 1.0:
            raise self.fail("per_process_memory_fraction must be in [0.0, 1.0]")
        return value

    def divisions(self, i: int) -> tuple:
        """The 16 per-interval division counts of ``N`` or ``[MB:N, ..., >:N]``."""
        table = [0] * INTERVALS
        if self.token(i) != "[":
            table = [self.power_of_two(self.number(i), "divisions")] * INTERVALS
            return tuple(table)
        first, last, i = True, 0, i + 1
        while self.token(i) != "]":
            bound = self.token(i)
            self.token(i + 1, ":")
            value = self.number(i + 2)
            if value:
                self.power_of_two(value, "divisions")
            if bound == ">":
                table[last + 1:] = [value] * (INTERVALS - last - 1)
            else:
                index = min(self.power_of_two(self.number(i), "intervals").bit_length() - 1,
                            INTERVALS - 1)
                if first:
                    table[:index] = [value] * index
                    first = False
                table[index], last = value, index
            i += 3
            if self.token(i) == ",":
                i += 1
        return tuple(table)

    def power_of_two(self, value: int, what: str) -> int:
        if value <= 0 or value & (value - 1):
            raise self.fail(f"for roundups, the {what} have to be powers of 2, got {value}")
        return value
