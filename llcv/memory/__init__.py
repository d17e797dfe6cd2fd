"""Memory: measured per iteration (CUDA allocator, process RSS, CPU allocator peak) and estimated
per model and input shape (inference or a training step) without running it — on CUDA as the
caching allocator holds it (allocated, reserved) and, calibrated, the device total."""
from llcv.memory.alloc_conf import AllocatorConfig
from llcv.memory.allocator import AllocatorPeakMeter, measure_peak, resident_bytes
from llcv.memory.calibration import Calibration, load_calibration
from llcv.memory.estimate import (MEMORY_KINDS, LiveTensor, MemoryEstimate, estimate_peak_memory,
                                  output_shape)
from llcv.memory.fields import MemoryEstimateFields, structure_key
from llcv.memory.measured import MemoryMeter

__all__ = ["MEMORY_KINDS", "AllocatorConfig", "AllocatorPeakMeter", "Calibration", "LiveTensor",
           "MemoryEstimate", "MemoryEstimateFields", "MemoryMeter", "estimate_peak_memory",
           "load_calibration", "measure_peak", "output_shape", "resident_bytes", "structure_key"]
