"""Tiled inference of images of any size (100 megapixels and more) under a memory budget.

Geometry, per axis: the image is cut into *cores* of ``tile - 2 * overlap`` pixels; the model runs
on *windows* = a core plus ``overlap`` pixels of context on each side (clipped at the image
border), so a window is at most ``tile`` pixels and adjacent windows share ``2 * overlap``.
Window origins and sizes are multiples of the model's ``size_multiple``, so a downsampling
model sees the same pixel grid as on the whole image. Across each core boundary the two
windows are blended with a linear ramp of half-width ``feather``; the weights of all windows sum
to one at every pixel. With the model's receptive-field radius R known and ``overlap >= R``,
``feather = overlap - R`` uses only outputs with full context, and the result equals untiled
inference up to float rounding; otherwise (``overlap < R`` or a global operator such as
NAFNet's channel attention) the ramp only hides seams.

Memory: only one band of window rows is kept in float32 (about ``tile`` rows by the image
width); finished rows go to the output array (float32, or uint8/uint16 to save host memory).
``choose_tile`` picks the largest tile whose *estimated* peak (``estimate_peak_memory``: weights,
window, activations, kernel buffers) fits a fraction ``safety`` of the budget; the full-size
input and output arrays are host memory on top of the budget. A budget says which figure it
means (``MEMORY_KINDS``): on CUDA ``reserved`` by default — what the caching allocator holds,
checked by replaying the windows' allocations in the order the tiling visits them, as windows
at the image border are smaller — or ``allocated``, ``tensors``, or ``device`` (reserved plus the
calibrated CUDA context); on CPU every kind is the tensors' peak.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn

from llcv.errors import LLCVError
from llcv.memory.alloc_conf import AllocatorConfig
from llcv.memory.calibration import resolve_calibration
from llcv.memory.cuda_estimate import memory_limit, replay_windows
from llcv.memory.estimate import MemoryEstimate, estimate_peak_memory
from llcv.memory.fields import structure_key
from llcv.utils import MB, module_device, module_modes

_ESTIMATES: dict[tuple, MemoryEstimate] = {}  # window estimates, by model structure and shape
_RADII: dict[tuple, Optional[int]] = {}
SAFETY = 0.9  # the estimate is within 1% of the allocator peak in tools/bench_memory.py


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def size_multiple(model: nn.Module) -> int:
    """The model's ``size_multiple`` (1 when it does not say)."""
    return int(getattr(model, "size_multiple", 1) or 1)


def _device(model: nn.Module, device: Any) -> torch.device:
    return module_device(model) if device is None else torch.device(device)


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    with module_modes(model, False), torch.inference_mode():
        yield


# ---------------------------------------------------------------------- receptive field
def receptive_field_radius(model: nn.Module, channels: int = 3, device: Any = None,
                           probe: int = 128) -> Optional[int]:
    """How far (pixels, Chebyshev) an input pixel changes the output, found by perturbing one
    pixel of a random ``probe``-sized image at each phase of the model's pixel grid; None when
    the change reaches the probe's border (a global operator, or a field wider than the probe).
    Cached per model structure."""
    device = _device(model, device)
    key = (structure_key(model), channels, str(device), probe)
    if key not in _RADII:
        _RADII[key] = _probe_radius(model, channels, device, probe)
    return _RADII[key]


def _probe_radius(model: nn.Module, channels: int, device: torch.device,
                  probe: int) -> Optional[int]:
    m = size_multiple(model)
    size = _round_up(probe, m)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, channels, size, size, generator=gen).to(device)
    radius = 0
    with _eval(model):
        base = model(x)
        up = base.shape[-1] // size  # output pixels per input pixel (super-resolution)
        if up < 1 or tuple(base.shape[-2:]) != (size * up, size * up):
            return None  # not a per-pixel map of the input (e.g. global pooling)
        scale = float(base.abs().max()) + 1e-12
        for phase in range(min(m, 4)):
            c = size // 2 + phase
            bumped = x.clone()
            bumped[..., c, c] += 1.0
            changed = (model(bumped) - base).abs().amax(dim=(0, 1)) > 1e-6 * scale
            ys, xs = torch.nonzero(changed, as_tuple=True)
            if len(ys) == 0:
                continue
            r = int(max((ys // up - c).abs().max(), (xs // up - c).abs().max()))
            if r >= size // 2 - m:
                return None
            radius = max(radius, r)
    return radius


# ---------------------------------------------------------------------- tile size
def budget_kind(kind: Optional[str], device: torch.device) -> str:
    """The figure a budget means: on CUDA ``kind``, by default ``reserved`` (what the caching
    allocator holds); on CPU always ``tensors`` (the only figure there)."""
    if device.type != "cuda":
        return "tensors"
    return kind or "reserved"


def window_estimate(model: nn.Module, height: int, width: int, channels: int = 3,
                    device: Any = None, dtype: torch.dtype = torch.float32,
                    calibration: Any = None) -> MemoryEstimate:
    """Estimated inference of one ``height`` x ``width`` window (cached; on CUDA with the
    allocation trace to replay)."""
    device = _device(model, device)
    cal = resolve_calibration(calibration) if device.type == "cuda" else None
    key = (structure_key(model), height, width, channels, str(device), dtype,
           AllocatorConfig.from_env(), None if cal is None else cal.source)
    if key not in _ESTIMATES:
        if len(_ESTIMATES) > 256:
            _ESTIMATES.clear()
        _ESTIMATES[key] = estimate_peak_memory(
            model, (1, channels, height, width), "inference", dtype=dtype, device=device,
            calibration=cal if cal is not None else False, keep_trace=device.type == "cuda")
    return _ESTIMATES[key]


def tile_peak_bytes(model: nn.Module, height: int, width: int, channels: int = 3,
                    device: Any = None, dtype: torch.dtype = torch.float32,
                    kind: str = "tensors", calibration: Any = None) -> int:
    """Estimated inference peak (the figure of ``kind``) for one window of ``height`` x
    ``width``."""
    return window_estimate(model, height, width, channels, device, dtype, calibration).peak(kind)


def _visit_sizes(length: int, tile: int, overlap: int) -> list[int]:
    """Window lengths along an axis in visiting order, runs of one size cut to two."""
    sizes: list[int] = []
    for win in axis_windows(length, tile, overlap):
        size = win.stop - win.start
        if sizes[-2:] != [size, size]:
            sizes.append(size)
    return sizes


def tiling_peak_bytes(model: nn.Module, tile: int, overlap: int, image_hw: tuple,
                      channels: int = 3, device: Any = None, kind: Optional[str] = None,
                      calibration: Any = None) -> int:
    """Estimated peak of the whole tiled run: for ``reserved``/``device`` on CUDA the windows
    replayed through the caching-allocator model in visiting order (smaller border windows
    split cached blocks); otherwise the largest window's figure."""
    device = _device(model, device)
    kind = budget_kind(kind, device)
    h, w = image_hw
    largest = window_estimate(model, min(tile, h), min(tile, w), channels, device,
                              calibration=calibration)
    if device.type != "cuda" or kind not in ("reserved", "device"):
        return largest.peak(kind)
    context = largest.peak("device") - largest.reserved if kind == "device" else 0
    traces = [window_estimate(model, wh, ww, channels, device, calibration=calibration).trace
              for wh in _visit_sizes(h, tile, overlap) for ww in _visit_sizes(w, tile, overlap)]
    config = AllocatorConfig.from_env()
    limit = memory_limit(config, resolve_calibration(calibration))
    return replay_windows(traces, config, limit) + context


def choose_tile(model: nn.Module, budget_bytes: int, overlap: int, image_hw: tuple,
                channels: int = 3, device: Any = None, safety: float = SAFETY,
                kind: Optional[str] = None, calibration: Any = None) -> int:
    """The largest tile (multiple of ``size_multiple``, more than ``2 * overlap``) whose
    estimated peak of ``kind`` (see :func:`budget_kind`) is at most ``safety * budget_bytes``:
    a binary search on one full window, then the whole tiling checked (and the tile lowered
    while it does not fit)."""
    device = _device(model, device)
    kind = budget_kind(kind, device)
    m = size_multiple(model)
    overlap = _round_up(overlap, m)
    h, w = image_hw
    limit = safety * budget_bytes

    def need(k: int, whole: bool = False) -> int:
        if whole:
            return tiling_peak_bytes(model, k * m, overlap, image_hw, channels, device, kind,
                                     calibration)
        return tile_peak_bytes(model, min(k * m, h), min(k * m, w), channels, device,
                               kind=kind, calibration=calibration)

    smallest = low = 2 * overlap // m + 1  # the smallest tile with a core of one multiple
    high = max(low, _round_up(max(h, w) + 2 * overlap, m) // m)
    if need(low) > limit:
        _too_small(model, budget_bytes, need(low) / safety, low * m, overlap, kind)
    while low < high:  # invariant: need(low) fits
        mid = (low + high + 1) // 2
        low, high = (mid, high) if need(mid) <= limit else (low, mid - 1)
    while need(low, whole=True) > limit:
        if low == smallest:
            _too_small(model, budget_bytes, need(low, True) / safety, low * m, overlap, kind)
        low -= 1
    return low * m


def _too_small(model: nn.Module, budget: int, need: float, tile: int, overlap: int,
               kind: str) -> None:
    raise LLCVError(
        f"--memory-budget-mb: {budget / MB:.2f} MiB is too small; {type(model).__name__} "
        f"needs at least {need / MB:.2f} MiB ({kind} peak) for its smallest tile ({tile} px "
        f"with overlap {overlap}); raise the budget or lower --overlap")


# ---------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Window:
    """One window along an axis: ``[start, stop)`` is run, ``[core_start, core_stop)`` kept."""

    start: int
    stop: int
    core_start: int
    core_stop: int


def axis_windows(length: int, tile: int, overlap: int) -> list[Window]:
    """Cores of ``tile - 2 * overlap`` pixels with ``overlap`` context, clipped to the axis."""
    core = tile - 2 * overlap
    if core <= 0:
        raise LLCVError(f"--tile: {tile} px (rounded to the model's size multiple) leaves no "
                        f"core inside an overlap of {overlap} px per side; use a larger --tile "
                        f"or a smaller --overlap")
    if length <= tile:
        return [Window(0, length, 0, length)]
    windows = []
    for cs in range(0, length, core):
        ce = min(cs + core, length)
        windows.append(Window(max(cs - overlap, 0), min(ce + overlap, length), cs, ce))
    return windows


def axis_weights(win: Window, length: int, feather: int) -> np.ndarray:
    """Blend weights over ``win``: 1 in its core, linear ramps of half-width ``feather`` across
    inner core boundaries (the neighbour's ramp is the complement), 0 elsewhere."""
    x = np.arange(win.start, win.stop, dtype=np.float64) + 0.5
    weight = np.ones(win.stop - win.start, dtype=np.float64)
    if win.core_start > 0:
        weight *= _ramp(x - (win.core_start - feather), feather)
    if win.core_stop < length:
        weight *= _ramp((win.core_stop + feather) - x, feather)
    return weight.astype(np.float32)


def _ramp(distance: np.ndarray, feather: int) -> np.ndarray:
    if feather == 0:
        return (distance > 0).astype(np.float64)
    return np.clip(distance / (2 * feather), 0.0, 1.0)


def plan_overlap(model: nn.Module, overlap: Optional[int], channels: int,
                 device: Any = None) -> tuple[int, int]:
    """``(overlap, feather)``: the overlap rounded up to ``size_multiple`` (default: the
    receptive-field radius, or 32 for a global model), and the exact-blend feather width."""
    m = size_multiple(model)
    radius = receptive_field_radius(model, channels, device)
    if overlap is None:
        overlap = 32 if radius is None else radius
    overlap = _round_up(max(overlap, 0), m)
    if radius is not None and overlap >= radius:
        return overlap, overlap - radius
    return overlap, overlap // 2


# ---------------------------------------------------------------------- running
def _to_float(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The scale that maps the image's integer range to [0, 1] (1 for floats)."""
    if image.dtype == np.uint8:
        return image, 255.0
    if image.dtype == np.uint16:
        return image, 65535.0
    if np.issubdtype(image.dtype, np.floating):
        return image, 1.0
    raise LLCVError(f"image: unsupported dtype {image.dtype}; use uint8, uint16 or float")


def _from_float(band: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.float32:
        return band
    top = 255.0 if dtype == np.uint8 else 65535.0
    return np.clip(np.rint(band * top), 0, top).astype(dtype)


class _Runner:
    """Runs the model on one window of an HWC image and returns its HWC float32 output."""

    def __init__(self, model: nn.Module, image: np.ndarray, device: torch.device) -> None:
        self.model, self.device = model, device
        self.image, self.scale = _to_float(image)
        self.dtype = next(iter(model.parameters()), torch.empty(0)).dtype

    def __call__(self, wy: Window, wx: Window) -> tuple[np.ndarray, int]:
        """The HWC output of the window and the model's upscaling factor."""
        crop = self.image[wy.start:wy.stop, wx.start:wx.stop]
        chw = np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32)
        if self.scale != 1.0:
            chw /= self.scale
        x = torch.from_numpy(chw)[None].to(self.device, self.dtype)
        y = self.model(x)
        up = y.shape[-1] // x.shape[-1]
        if up < 1 or tuple(y.shape[-2:]) != (x.shape[-2] * up, x.shape[-1] * up):
            raise LLCVError(f"model: tiled inference needs an output of the input's size times "
                            f"an integer scale; {type(self.model).__name__} maps "
                            f"{list(x.shape)} to {list(y.shape)}")
        return y[0].float().permute(1, 2, 0).cpu().numpy(), up


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="tiles", unit="tile", disable=not enabled, leave=False)


def tiled_inference(model: nn.Module, image: np.ndarray, tile: int, overlap: Optional[int] = None,
                    feather: Optional[int] = None, device: Any = None,
                    out_dtype: Any = np.float32, progress: bool = True) -> np.ndarray:
    """Restore an HWC ``image`` (uint8, uint16 or float in [0, 1]) window by window.

    ``tile``: window side, rounded down to ``size_multiple``; ``overlap``: context per side
    (default: the receptive-field radius); ``feather``: blend half-width (default: exact when
    ``overlap`` covers the receptive field). All three are in input pixels; a super-resolution
    model's windows come out ``scale`` times larger and are blended with the same weights,
    repeated. Returns an HWC array of ``out_dtype`` (float32 unclipped, or uint8/uint16 clipped
    and rounded) with the model's output channels and size.
    """
    device = _device(model, device)
    m = size_multiple(model)
    overlap, exact_feather = plan_overlap(model, overlap, image.shape[2], device)
    tile = tile // m * m
    feather = min(exact_feather if feather is None else feather, (tile - 2 * overlap) // 2)
    h, w = image.shape[:2]
    rows, cols = axis_windows(h, tile, overlap), axis_windows(w, tile, overlap)
    col_weights = [axis_weights(wx, w, feather) for wx in cols]
    run = _Runner(model, image, device)
    out: Optional[np.ndarray] = None
    band, band_start = None, 0
    up = 1
    with _eval(model), _progress(len(rows) * len(cols), progress) as bar:
        for i, wy in enumerate(rows):
            row_weight = axis_weights(wy, h, feather)
            for wx, col_weight in zip(cols, col_weights):
                y, up = run(wy, wx)
                if out is None:
                    out = np.empty((h * up, w * up, y.shape[2]), dtype=out_dtype)
                    band = np.zeros((tile * up, w * up, y.shape[2]), dtype=np.float32)
                weight = np.repeat(row_weight, up)[:, None] * np.repeat(col_weight, up)[None, :]
                band[(wy.start - band_start) * up:(wy.stop - band_start) * up,
                     wx.start * up:wx.stop * up] += y * weight[:, :, None]
                del y  # frees the model's output before the next window runs
                bar.update(1)
            done = h if i + 1 == len(rows) else rows[i + 1].start
            out[band_start * up:done * up] = _from_float(band[:(done - band_start) * up],
                                                          out.dtype)
            band = _shift(band, (done - band_start) * up)
            band_start = done
    return out


def _shift(band: np.ndarray, rows: int) -> np.ndarray:
    """Drop the first ``rows`` finished rows of the band; the rest start at row 0."""
    band[:band.shape[0] - rows] = band[rows:].copy()
    band[band.shape[0] - rows:] = 0.0
    return band
