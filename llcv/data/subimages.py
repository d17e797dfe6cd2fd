"""Cutting large images into overlapping sub-images (e.g. SIDD: 512 px every 384 px).

Training then reads small crops instead of decoding a 12-megapixel photo per sample.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import cv2
import numpy as np

from llcv.data.image_io import DiskBackend, imdecode_unchanged
from llcv.data.parallel import imap_progress
from llcv.errors import DataError, OptionError
from llcv.utils import check_int

def check_crop_args(crop_size: int, step: int, thresh_size: int) -> None:
    """Fail naming the argument unless sizes are positive and the threshold is >= 0."""
    for name, value, low in (("crop_size", crop_size, 1), ("step", step, 1),
                             ("thresh_size", thresh_size, 0)):
        check_int(name, value, low, error=OptionError)


def crop_positions(length: int, crop_size: int, step: int, thresh_size: int = 0) -> list[int]:
    """Starts of ``crop_size`` windows every ``step`` pixels along a side of ``length``.

    When more than ``thresh_size`` pixels would be left uncovered at the end, one more window
    is placed flush with the end. A side shorter than ``crop_size`` gets no window.
    """
    if length < crop_size:
        return []
    starts = list(range(0, length - crop_size + 1, step))
    if length - (starts[-1] + crop_size) > thresh_size:
        starts.append(length - crop_size)
    return starts


def crop_boxes(height: int, width: int, crop_size: int, step: int,
               thresh_size: int = 0) -> list[tuple[int, int]]:
    """(top, left) of every sub-image of an image, row by row."""
    tops = crop_positions(height, crop_size, step, thresh_size)
    lefts = crop_positions(width, crop_size, step, thresh_size)
    return [(top, left) for top in tops for left in lefts]


def iter_crops(img: np.ndarray, crop_size: int, step: int,
               thresh_size: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """(number from 1, sub-image view) for every sub-image of an HWC array."""
    boxes = crop_boxes(img.shape[0], img.shape[1], crop_size, step, thresh_size)
    for number, (top, left) in enumerate(boxes, 1):
        yield number, img[top:top + crop_size, left:left + crop_size]


def read_unchanged(path: str) -> np.ndarray:
    """The image at ``path`` as OpenCV stores it (BGR, depth and alpha kept)."""
    img = imdecode_unchanged(np.fromfile(path, np.uint8))
    if img is None:
        raise DataError(f"cannot decode image '{path}': it is corrupt, truncated or not an "
                        f"image; replace or remove it")
    return img


def check_output_folder(folder: str, force: bool) -> None:
    """Refuse a non-empty ``folder`` unless ``force`` is set and it holds only PNG files."""
    if os.path.isfile(folder):
        raise OptionError(f"output: '{folder}' is a file; pick a folder path")
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    if names and not force:
        raise OptionError(f"output: folder '{folder}' is not empty; pass --force to replace "
                          f"its images or pick another folder")
    others = [n for n in names if not n.lower().endswith(".png")]
    if others:
        raise OptionError(f"output: folder '{folder}' holds '{others[0]}', which is not a PNG; "
                          f"--force only replaces PNG folders: remove it yourself")


def prepare_output_folder(folder: str, force: bool) -> None:
    """Create ``folder``, or empty an existing one of its PNGs when ``force`` allows it."""
    check_output_folder(folder, force)
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
    os.makedirs(folder, exist_ok=True)


def _crop_file(job: tuple[str, str, str, int, int, int, int]) -> int:
    path, stem, output_dir, crop_size, step, thresh_size, compress_level = job
    img = read_unchanged(path)
    count = 0
    for count, crop in iter_crops(img, crop_size, step, thresh_size):
        target = os.path.join(output_dir, f"{stem}_s{count:03d}.png")
        if not cv2.imwrite(target, np.ascontiguousarray(crop),
                           [cv2.IMWRITE_PNG_COMPRESSION, compress_level]):
            raise DataError(f"cannot write '{target}'; check the disk space and permissions")
    return count


def extract_subimages(input_dir: str, output_dir: str, crop_size: int = 512, step: int = 384,
                      thresh_size: int = 0, compress_level: int = 3, workers: int = 1,
                      force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Write the sub-images of every image in ``input_dir`` as ``<name>_s<NNN>.png``.

    Returns ``{"images": n, "crops": n, "skipped": [names smaller than crop_size]}``.
    """
    check_crop_args(crop_size, step, thresh_size)
    if not 0 <= compress_level <= 9:
        raise OptionError(f"compress_level: {compress_level} is not in 0..9")
    source = DiskBackend(input_dir, "input")
    if os.path.realpath(input_dir) == os.path.realpath(output_dir):
        raise OptionError(f"output: '{output_dir}' is the input folder; pick another folder")
    prepare_output_folder(output_dir, force)
    names = source.keys()
    jobs = [(source.describe(n), n, output_dir, crop_size, step, thresh_size, compress_level)
            for n in names]
    counts = list(imap_progress(_crop_file, jobs, workers, "sub-images", progress))
    skipped = [name for name, count in zip(names, counts) if count == 0]
    return {"images": len(names), "crops": sum(counts), "skipped": skipped}
