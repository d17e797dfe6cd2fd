"""Model analysis: parameters, MACs/FLOPs and per-layer activation sizes at a given input shape."""
