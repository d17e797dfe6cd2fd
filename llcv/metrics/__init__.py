"""Registered image-quality metrics; every ``*_metric.py`` file here is imported on first use.

A registered metric is a function ``fn(img, img2, crop_border, ..., **kwargs)`` carrying an
``input_kind`` attribute that tells the validator what to feed it:

- ``"numpy"``: one image pair per call, HWC (or CHW with ``input_order``) uint8/float arrays in
  [0, 255], BGR channel order as ``cv2.imread`` returns; returns a float.
- ``"tensor"``: a batch per call, NCHW RGB float tensors in [0, 1]; returns a float64 tensor (N,)
  of per-image values, without autograd. On CPU they split the batch among
  ``torch.get_num_threads()`` worker threads.

Both kinds give the same numbers (BasicSR 1.4.2 semantics) to 1e-6; ``torch_ops`` holds the
differentiable pieces (Gaussian window, SSIM per image, BT.601 Y) that losses reuse.
"""
from llcv._imports import import_modules
from llcv.metrics.psnr_ssim_metric import (calculate_psnr, calculate_psnr_pt, calculate_ssim,
                                           calculate_ssim_pt)

import_modules(__name__, __path__, "_metric")

__all__ = ["calculate_psnr", "calculate_ssim", "calculate_psnr_pt", "calculate_ssim_pt"]
