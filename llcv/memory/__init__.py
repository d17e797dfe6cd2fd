"""Memory: measured per iteration (CUDA allocator or process RSS), estimated per model."""
from llcv.memory.measured import MemoryMeter

__all__ = ["MemoryMeter"]
