"""PSNR and SSIM with BasicSR 1.4.2 semantics: numpy (one image, HWC BGR in [0, 255]) and
batched torch (NCHW RGB in [0, 1]) versions that agree to 1e-6.

Protocol: PSNR = 10 log10(255^2 / MSE) in float64 (inf when MSE is 0); SSIM per channel on the
valid region of an 11x11, sigma 1.5 Gaussian window, averaged; optional BT.601 Y channel rounded
through float32 exactly as BasicSR does; ``crop_border`` pixels dropped on each side first.
"""
from __future__ import annotations

import math
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import cv2
import numpy as np
import torch
from torch import Tensor

from llcv.metrics.torch_ops import (SsimBuffers, gaussian_kernel_1d, rgb_to_y,
                                    ssim_from_statistics_, ssim_statistics)
from llcv.registry import METRICS
from llcv.utils import bt601_y

_INPUT_ORDERS = ("HWC", "CHW")
_WINDOW = 11  # SSIM window size; also the smallest image side SSIM accepts after cropping
_WINDOW_2D = np.outer(cv2.getGaussianKernel(_WINDOW, 1.5), cv2.getGaussianKernel(_WINDOW, 1.5))
# Values (images x channels x pixels) per chunk of the torch metrics: 2^18 float64 values (2 MiB
# per input) keep the per-chunk buffers small. Within a chunk SSIM filters about 2^16 values of
# planes at once: for 256x256 images one plane, which measured faster than a whole RGB image.
_CHUNK_VALUES = 1 << 18
_GROUP_VALUES = 1 << 16


# ----------------------------------------------------------------------------- numpy (BasicSR)
def _check_pair(shape: tuple, shape2: tuple, crop_border: int) -> None:
    """Fail clearly on mismatched shapes or a negative crop."""
    if tuple(shape) != tuple(shape2):
        raise ValueError(f"image shapes differ: {tuple(shape)} vs {tuple(shape2)}; "
                         "compare an output with the ground truth of the same size")
    if not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")


def _to_hwc(img: np.ndarray, input_order: str) -> np.ndarray:
    """HW, HWC or CHW array as HWC (a 2-D image gets one channel)."""
    if input_order not in _INPUT_ORDERS:
        raise ValueError(f"input_order must be one of {', '.join(_INPUT_ORDERS)}, "
                         f"got {input_order!r}")
    if img.ndim == 2:
        return img[..., None]
    return img.transpose(1, 2, 0) if input_order == "CHW" else img


def _y_channel_bgr(img: np.ndarray) -> np.ndarray:
    """BT.601 Y of an HWC BGR image in [0, 255], as float32 in [16, 235], unrounded (BasicSR way).

    The image goes to float32 [0, 1]; Y is computed in float64, divided by 255, stored as float32
    and scaled back by 255 in float32. Non-RGB images only take the float32 round trip.
    """
    unit = img.astype(np.float32) / 255.0
    if unit.shape[2] == 3:
        unit = bt601_y(unit)[..., None]
    return unit * np.float32(255.0)


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str,
             test_y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 HWC after the checks, the crop and the optional Y transform."""
    _check_pair(img.shape, img2.shape, crop_border)
    pair = []
    for image in (img, img2):
        image = _to_hwc(np.asarray(image), input_order)
        if crop_border:
            image = image[crop_border:-crop_border, crop_border:-crop_border]
        if test_y_channel:
            image = _y_channel_bgr(image)
        pair.append(image.astype(np.float64))
    return pair[0], pair[1]


@METRICS.register_module()
def calculate_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str = "HWC",
                   test_y_channel: bool = False, **kwargs) -> float:
    """PSNR in dB of two [0, 255] images (BGR when ``test_y_channel``); inf for identical images."""
    a, b = _prepare(img, img2, crop_border, input_order, test_y_channel)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 * 255.0 / mse))


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of one float64 channel: 2-D ``cv2.filter2D`` with the 11x11 window, valid part only."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    r = _WINDOW // 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, _WINDOW_2D)[r:-r, r:-r]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def _check_ssim_size(height: int, width: int) -> None:
    if min(height, width) < _WINDOW:
        raise ValueError(f"SSIM needs images of at least {_WINDOW}x{_WINDOW} pixels after "
                         f"crop_border, got {height}x{width}; reduce crop_border")


@METRICS.register_module()
def calculate_ssim(img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str = "HWC",
                   test_y_channel: bool = False, **kwargs) -> float:
    """SSIM of two [0, 255] images: per-channel Gaussian SSIM (Wang et al. 2004), averaged."""
    a, b = _prepare(img, img2, crop_border, input_order, test_y_channel)
    _check_ssim_size(a.shape[0], a.shape[1])
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))


calculate_psnr.input_kind = "numpy"
calculate_ssim.input_kind = "numpy"


# ----------------------------------------------------------------------------- torch (batched)
def _check_batch(img: Tensor, img2: Tensor, crop_border: int) -> None:
    _check_pair(img.shape, img2.shape, crop_border)
    if img.dim() != 4:
        raise ValueError(f"expected image batches of shape (N, C, H, W), got {tuple(img.shape)}")
    if not (img.is_floating_point() and img2.is_floating_point()):
        raise ValueError(f"expected float images in [0, 1], got {img.dtype} and {img2.dtype}; "
                         "divide integer images by 255 first")


def _y_channel_255(x: Tensor) -> Tensor:
    """BT.601 Y (N1HW, float64 in [16, 235]) of RGB [0, 1] images, rounded as ``_y_channel_bgr``.

    Images with other than 3 channels only take the float32 round trip, as in the numpy version.
    """
    unit = x.to(torch.float32)
    if x.shape[1] == 3:
        unit = rgb_to_y(unit.to(torch.float64)).to(torch.float32)
    return (unit * 255.0).to(torch.float64)


def _float64_pair(img: Tensor, img2: Tensor, test_y: bool) -> tuple[Tensor, Tensor, float]:
    """The pair in float64 with its data range: RGB kept in [0, 1], or BasicSR's Y in [16, 235]."""
    if test_y:
        return _y_channel_255(img), _y_channel_255(img2), 255.0
    return img.to(torch.float64), img2.to(torch.float64), 1.0


_ChunkFn = Callable[[int, int, dict], Tensor]


def _run_chunks(fn: _ChunkFn, total: int, step: int, device: torch.device) -> Tensor:
    """``fn(start, stop, cache)`` over chunks of ``step`` items, concatenated (a cache per worker).

    On CPU, ``torch.get_num_threads()`` Python threads take chunks from a shared queue and run
    torch ops single-threaded: one chunk per core avoids an OpenMP barrier per tensor op, which
    is slower, and much slower when other processes compete for the cores; the queue lets a
    worker that is not descheduled take over the remaining chunks.
    """
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for start in range(0, total, step):
        pending.put(start)
    results: dict[int, Tensor] = {}

    def work(_: int) -> None:
        cache: dict = {}
        while True:
            try:
                start = pending.get_nowait()
            except queue.Empty:
                return
            results[start] = fn(start, min(start + step, total), cache)

    workers = min(pending.qsize(), torch.get_num_threads()) if device.type == "cpu" else 1
    if workers < 2:
        work(0)
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # threads started from here on run torch ops single-threaded
        try:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(work, range(workers)))
        finally:
            torch.set_num_threads(threads)
    if not results:
        return torch.zeros(0, dtype=torch.float64, device=device)
    return torch.cat([results[start] for start in sorted(results)])


def _images_per_chunk(img: Tensor) -> int:
    return max(1, _CHUNK_VALUES // max(1, math.prod(img.shape[1:])))


def _cropped(img: Tensor, crop_border: int) -> Tensor:
    return img[:, :, crop_border:-crop_border, crop_border:-crop_border] if crop_border else img


@METRICS.register_module()
def calculate_psnr_pt(img: Tensor, img2: Tensor, crop_border: int, test_y_channel: bool = False,
                      **kwargs) -> Tensor:
    """PSNR in dB (N,) of RGB NCHW batches in [0, 1]; matches ``calculate_psnr`` per image.

    Not differentiable (computed without autograd); inf for identical images.
    """
    _check_batch(img, img2, crop_border)
    img, img2 = _cropped(img, crop_border), _cropped(img2, crop_border)

    def psnr(start: int, stop: int, cache: dict) -> Tensor:
        a, b, data_range = _float64_pair(img[start:stop], img2[start:stop], test_y_channel)
        if cache.get("diff") is None or cache["diff"].shape != a.shape:
            cache["diff"] = torch.empty_like(a)  # reused: saves page-faulting a new one per chunk
        mse = torch.sub(a, b, out=cache["diff"]).square_().flatten(1).mean(dim=1)
        return 10.0 * torch.log10(data_range * data_range / mse)  # x / 0 = inf

    with torch.no_grad():
        return _run_chunks(psnr, img.shape[0], _images_per_chunk(img), img.device)


@METRICS.register_module()
def calculate_ssim_pt(img: Tensor, img2: Tensor, crop_border: int, test_y_channel: bool = False,
                      **kwargs) -> Tensor:
    """SSIM (N,) of RGB NCHW batches in [0, 1]; matches ``calculate_ssim`` per image.

    Float64, separable filtering of a few (H, W) planes at a time (to stay in cache), in chunks
    of a few images (to bound memory). Not differentiable: losses use ``ssim_per_image``.
    """
    _check_batch(img, img2, crop_border)
    img, img2 = _cropped(img, crop_border), _cropped(img2, crop_border)
    _check_ssim_size(img.shape[2], img.shape[3])
    kernel = gaussian_kernel_1d(_WINDOW, 1.5, dtype=torch.float64, device=img.device)
    group = max(1, _GROUP_VALUES // (img.shape[2] * img.shape[3]))  # planes filtered at once

    def ssim(start: int, stop: int, cache: dict) -> Tensor:
        a, b, data_range = _float64_pair(img[start:stop], img2[start:stop], test_y_channel)
        n, c, h, w = a.shape
        a, b = a.reshape(n * c, 1, h, w), b.reshape(n * c, 1, h, w)
        buffers = cache.get("buffers")
        if buffers is None or buffers.shape != tuple(a.shape):
            buffers = cache["buffers"] = SsimBuffers(a.shape, _WINDOW, group, a.dtype, a.device)
        stats = ssim_statistics(a, b, kernel, buffers)
        return ssim_from_statistics_(stats, data_range).view(n, c).mean(dim=1)

    with torch.no_grad():
        return _run_chunks(ssim, img.shape[0], _images_per_chunk(img), img.device)


calculate_psnr_pt.input_kind = "tensor"
calculate_ssim_pt.input_kind = "tensor"
