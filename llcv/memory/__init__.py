"""Memory: measured per iteration (CUDA allocator, process RSS, CPU allocator peak) and estimated
per model and input shape (inference or a training step) without running it."""
from llcv.memory.allocator import AllocatorPeakMeter, measure_peak, resident_bytes
from llcv.memory.estimate import LiveTensor, MemoryEstimate, estimate_peak_memory
from llcv.memory.fields import MemoryEstimateFields, structure_key
from llcv.memory.measured import MemoryMeter

__all__ = ["AllocatorPeakMeter", "LiveTensor", "MemoryEstimate", "MemoryEstimateFields",
           "MemoryMeter", "estimate_peak_memory", "measure_peak", "resident_bytes",
           "structure_key"]
