"""Making bicubic LR sets (x2, x3, x4, ...) from a folder of HR images with MATLAB's imresize.

This is how the LR images of DIV2K, Set5, Set14, B100, Urban100 and Manga109 that SR papers test
on were made: HR cropped to a multiple of the scale (BasicSR's ``mod_crop``, top-left kept),
then ``imresize(hr, 1 / scale, 'bicubic')``, rounded to the HR's bit depth, saved as PNG.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import cv2
import numpy as np

from llcv.data.image_io import DiskBackend
from llcv.data.parallel import imap_progress
from llcv.data.subimages import check_output_folder, prepare_output_folder, read_unchanged
from llcv.degradations.bicubic_degradation import imresize
from llcv.errors import DataError, OptionError
from llcv.utils import check_int


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """``img`` cut at the bottom/right so that both sides divide ``scale``."""
    h, w = img.shape[:2]
    return img[:h - h % scale, :w - w % scale]


def _write_png(path: str, img: np.ndarray, compress_level: int) -> None:
    if not cv2.imwrite(path, np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION,
                                                         compress_level]):
        raise DataError(f"cannot write '{path}'; check the disk space and permissions")


def _check_image(img: np.ndarray, path: str, scale: int) -> None:
    """Fail naming the file unless it is an 8/16-bit image of at least ``scale`` pixels a side."""
    if img.dtype not in (np.uint8, np.uint16):
        raise DataError(f"image '{path}' has {img.dtype} pixels; LR sets are made from 8- or "
                        f"16-bit images (PNG stores nothing else)")
    if min(img.shape[:2]) < scale:
        raise DataError(f"image '{path}' is {img.shape[0]}x{img.shape[1]}, smaller than the "
                        f"scale {scale}; remove it")


def _sides(path: str) -> Optional[tuple[int, int]]:
    """(H, W) of the image at ``path`` from its header (decoding it only if Pillow cannot);
    None for a file that is no image (its own job reports it)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except (OSError, ValueError):
        try:
            return read_unchanged(path).shape[:2]
        except DataError:
            return None


def check_multiples(paths: list[str], scale: int) -> None:
    """Fail before writing anything when an HR side is not a multiple of ``scale``."""
    sides = {path: hw for path in paths if (hw := _sides(path)) is not None}
    bad = [path for path, (h, w) in sides.items() if h % scale or w % scale]
    if bad:
        path, (h, w) = bad[0], sides[bad[0]]
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise DataError(f"image '{path}' ({h}x{w}){more} is not a multiple of {scale}: its LR "
                        f"would not pair with it; pass --hr-output DIR to also write the HR "
                        f"images cropped to a multiple of {scale} (and train on those)")


def _resize_file(job: tuple[str, str, str, Optional[str], int, int]) -> tuple[bool, str]:
    """Make one LR image (and its cropped HR): (whether the HR had to be cropped, ""), or
    (False, what is wrong with it) for a file that cannot be used."""
    path, lr_path, name, hr_dir, scale, compress_level = job
    try:
        img = read_unchanged(path)
        _check_image(img, path, scale)
    except DataError as err:
        return False, str(err)
    hr = mod_crop(img, scale)
    _write_png(lr_path, imresize(hr, 1.0 / scale), compress_level)
    if hr_dir is not None:
        _write_png(os.path.join(hr_dir, f"{name}.png"), hr, compress_level)
    return hr.shape != img.shape, ""


def _check_folders(input_dir: str, output_dir: str, hr_output: Optional[str]) -> None:
    """Output folders must differ from the input and from each other."""
    folders = {"output": output_dir, "hr_output": hr_output}
    for option, folder in folders.items():
        if folder is not None and os.path.realpath(folder) == os.path.realpath(input_dir):
            raise OptionError(f"{option}: '{folder}' is the input folder; pick another folder")
    if hr_output is not None and os.path.realpath(hr_output) == os.path.realpath(output_dir):
        raise OptionError(f"hr_output: '{hr_output}' is also the LR output folder; pick another")


def make_lr(input_dir: str, output_dir: str, scale: int, hr_output: Optional[str] = None,
            suffix: str = "", compress_level: int = 3, workers: int = 1, force: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Write ``<name><suffix>.png`` = bicubic x1/``scale`` of every image in ``input_dir``.

    ``hr_output`` also receives every HR image cropped to a multiple of ``scale`` (as PNG); it is
    required when some HR side is not such a multiple. Returns ``{"images": n, "cropped": [...]}``.
    A file that cannot be used does not stop the others: each one is named at the end, in one
    error.
    """
    check_int("scale", scale, 2)
    if not 0 <= compress_level <= 9:
        raise OptionError(f"compress_level: {compress_level} is not in 0..9")
    source = DiskBackend(input_dir, "input")
    _check_folders(input_dir, output_dir, hr_output)
    folders = [f for f in (output_dir, hr_output) if f is not None]
    for folder in folders:
        check_output_folder(folder, force)
    names = source.keys()
    if hr_output is None:
        check_multiples([source.describe(n) for n in names], scale)
    for folder in folders:
        prepare_output_folder(folder, force)
    jobs = [(source.describe(n), os.path.join(output_dir, f"{n}{suffix}.png"), n, hr_output,
             scale, compress_level) for n in names]
    outcomes = list(imap_progress(_resize_file, jobs, workers, f"LR x{scale}", progress))
    failed = [problem for _, problem in outcomes if problem]
    if failed:
        raise DataError(f"{len(failed)} of {len(names)} image(s) failed (the other "
                        f"{len(names) - len(failed)} were written): {'; '.join(failed)}")
    return {"images": len(names), "cropped": [n for n, (c, _) in zip(names, outcomes) if c]}
