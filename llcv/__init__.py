"""llcv: config-driven training for low-level computer vision, with memory-aware pruning."""

__version__ = "0.1.0"
