"""The crop figure of restoration papers: the same crop of LQ, each method's output and GT, side
by side, each captioned with its PSNR against the GT crop; one row per test image.

The crop is given, or chosen where the methods differ most: the window whose per-method mean
squared errors (against GT) spread widest — for a single method, where its error is largest.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import cv2
import numpy as np

from llcv.errors import DataError, OptionError
from llcv.metrics import calculate_psnr

CAPTION = 22  # caption band height in pixels
GAP = 4  # white space around panels


def read_rgb(path: str) -> np.ndarray:
    """An 8-bit image file as an HWC uint8 RGB array (gray repeated)."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read '{path}' as an image")
    return np.ascontiguousarray(img[:, :, ::-1])


def window_mse(img: np.ndarray, gt: np.ndarray, size: int) -> np.ndarray:
    """Mean squared error of every ``size`` x ``size`` window (by its top-left corner)."""
    err = ((img.astype(np.float64) - gt.astype(np.float64)) ** 2).mean(axis=2)
    total = cv2.integral(err)  # (H+1, W+1) cumulative sums
    sums = total[size:, size:] - total[:-size, size:] - total[size:, :-size] + total[:-size, :-size]
    return sums / (size * size)


def choose_crop(outputs: Sequence[np.ndarray], gt: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left ``(y, x)`` of the window where the outputs' errors spread widest (one output:
    where its error is largest)."""
    maps = np.stack([window_mse(o, gt, size) for o in outputs])
    score = maps[0] if len(maps) == 1 else maps.max(axis=0) - maps.min(axis=0)
    y, x = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(y), int(x)


def crop_psnr(crop: np.ndarray, gt_crop: np.ndarray) -> float:
    """BasicSR PSNR of an RGB crop against the GT crop."""
    return calculate_psnr(crop[:, :, ::-1], gt_crop[:, :, ::-1], 0)


def _panel(crop: np.ndarray, caption: str, zoom: int) -> np.ndarray:
    """The crop enlarged ``zoom`` times (nearest neighbour) over a caption band."""
    big = cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    band = np.full((CAPTION, big.shape[1], 3), 255, np.uint8)
    scale = 0.45
    while scale > 0.2 and cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] \
            > big.shape[1] - 4:
        scale -= 0.05
    cv2.putText(band, caption, (2, CAPTION - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([big, band], axis=0)


def compose(rows: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Panels (equal sizes) laid out in rows on white, ``GAP`` pixels apart."""
    ph, pw = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * ph + (len(rows) + 1) * GAP, cols * pw + (cols + 1) * GAP, 3),
                     255, np.uint8)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            y, x = GAP + i * (ph + GAP), GAP + j * (pw + GAP)
            canvas[y:y + ph, x:x + pw] = panel
    return canvas


def crop_row(name: str, lq: np.ndarray, gt: np.ndarray, outputs: Mapping[str, np.ndarray],
             size: int, zoom: int, at: Optional[tuple[int, int]] = None) \
        -> tuple[list[np.ndarray], tuple[int, int], dict[str, float]]:
    """The panels of one image — LQ, each output, GT — the crop's corner and each PSNR."""
    for label, img in {"LQ": lq, **outputs}.items():
        if img.shape != gt.shape:
            raise DataError(f"{name}: {label} is {img.shape[1]}x{img.shape[0]} but GT is "
                            f"{gt.shape[1]}x{gt.shape[0]}; compare outputs of the same test set")
    if min(gt.shape[:2]) < size:
        raise OptionError(f"--size: {size} px is larger than {name} ({gt.shape[1]}x{gt.shape[0]})")
    y, x = at if at is not None else choose_crop(list(outputs.values()), gt, size)
    if not (0 <= y <= gt.shape[0] - size and 0 <= x <= gt.shape[1] - size):
        raise OptionError(f"--crop: {x},{y} with size {size} leaves {name} "
                          f"({gt.shape[1]}x{gt.shape[0]})")
    cut = {label: img[y:y + size, x:x + size] for label, img in {"LQ": lq, **outputs}.items()}
    gt_cut = gt[y:y + size, x:x + size]
    psnrs = {label: crop_psnr(c, gt_cut) for label, c in cut.items()}
    panels = [_panel(c, f"{name} {label} {psnrs[label]:.2f} dB" if label == "LQ"
                     else f"{label} {psnrs[label]:.2f} dB", zoom) for label, c in cut.items()]
    panels.append(_panel(gt_cut, "GT", zoom))
    return panels, (y, x), psnrs
