"""SIDD (Smartphone Image Denoising Dataset) sRGB: training crops and the validation blocks.

Training: SIDD-Medium sRGB, ``Data/<scene>/[<n>_]NOISY_SRGB_010.PNG`` with ``GT_SRGB_010.PNG``
(and ``_011``), 320 pairs, cut into 512 px sub-images every 384 px and stored as two LMDBs with
the same keys (``<scene>_<010|011>_s<NNN>``).
Validation: ``ValidationNoisyBlocksSrgb.mat`` / ``ValidationGtBlocksSrgb.mat``, uint8 arrays of
40 images x 32 blocks x 256 x 256 x 3 under those names: 1280 pairs, the protocol of the
published SIDD tables, written as ``<image>_<block>`` PNG folders (or LMDBs).
"""
from __future__ import annotations

import os
import re
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from llcv.data.image_io import decode_image
from llcv.data.lmdb_io import (LmdbWriter, check_format, check_output, encode_value,
                               estimate_map_size, png_header, validate_key)
from llcv.data.parallel import imap_progress
from llcv.data.subimages import (check_crop_args, check_output_folder, crop_boxes, iter_crops,
                                 prepare_output_folder)
from llcv.errors import DataError, OptionError

NOISY_FILE = re.compile(r"^(?P<prefix>(?:\d+_)?)NOISY_SRGB_(?P<shot>\d+)\.png$", re.IGNORECASE)
VAL_KEYS = {"noisy": "ValidationNoisyBlocksSrgb", "gt": "ValidationGtBlocksSrgb"}
TRAIN_LMDBS = {"gt": "train/gt_crops.lmdb", "input": "train/input_crops.lmdb"}
VAL_FOLDERS = {"gt": "val/gt_blocks", "input": "val/input_blocks"}


class SiddPair(NamedTuple):
    """One noisy/ground-truth photo of SIDD-Medium and the key stem of its crops."""

    name: str
    gt: str
    noisy: str


def find_sidd_pairs(medium_dir: str) -> list[SiddPair]:
    """Every NOISY/GT pair under ``<medium_dir>/Data/<scene>/`` (or ``<medium_dir>/<scene>/``)."""
    data = os.path.join(medium_dir, "Data")
    data = data if os.path.isdir(data) else medium_dir
    if not os.path.isdir(data):
        raise OptionError(f"medium: '{medium_dir}' does not exist; point --medium at the unpacked "
                          f"SIDD_Medium_Srgb folder (it holds Data/<scene>/..._NOISY_SRGB_010.PNG)")
    pairs = []
    for scene in sorted(os.listdir(data)):
        scene_dir = os.path.join(data, scene)
        if os.path.isdir(scene_dir):
            pairs += _scene_pairs(scene, scene_dir)
    if not pairs:
        raise DataError(f"medium: no <scene>/..._NOISY_SRGB_<NNN>.PNG files under '{data}'; "
                        f"point --medium at the unpacked SIDD_Medium_Srgb folder")
    return pairs


def _scene_pairs(scene: str, scene_dir: str) -> list[SiddPair]:
    files = {name.lower(): name for name in os.listdir(scene_dir)}
    pairs = []
    for name in sorted(files.values()):
        match = NOISY_FILE.match(name)
        if not match:
            continue
        gt_name = f"{match['prefix']}gt_srgb_{match['shot']}.png"
        if gt_name not in files:
            raise DataError(f"medium: '{os.path.join(scene_dir, name)}' has no ground truth "
                            f"'{gt_name.upper()}' beside it; restore the file from the archive")
        key = f"{scene}_{match['shot']}"
        validate_key(key, scene_dir)
        pairs.append(SiddPair(key, os.path.join(scene_dir, files[gt_name]),
                              os.path.join(scene_dir, name)))
    return pairs


def _read_rgb(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        return decode_image(f.read(), path)


def _crop_pair(job: tuple[SiddPair, int, int, int, str, int]) -> list[tuple[str, tuple, tuple]]:
    """Encoded (key, GT value+line, noisy value+line) of every sub-image of one pair."""
    pair, crop_size, step, thresh_size, fmt, compress_level = job
    gt, noisy = _read_rgb(pair.gt), _read_rgb(pair.noisy)
    if gt.shape != noisy.shape:
        raise DataError(f"'{pair.gt}' is {gt.shape} but '{pair.noisy}' is {noisy.shape}; a SIDD "
                        f"pair must have equal sizes: restore the files from the archive")
    out = []
    for (number, gt_crop), (_, noisy_crop) in zip(iter_crops(gt, crop_size, step, thresh_size),
                                                  iter_crops(noisy, crop_size, step, thresh_size)):
        key = f"{pair.name}_s{number:03d}"
        out.append((key, encode_value(key, gt_crop, fmt, compress_level),
                    encode_value(key, noisy_crop, fmt, compress_level)))
    return out


def _crop_bytes(pairs: list[SiddPair], crop_size: int, step: int, thresh_size: int) -> list[int]:
    """Uncompressed size of every sub-image to come, from the PNG headers."""
    sizes = []
    for pair in pairs:
        header = png_header(pair.gt)
        if header is None:
            raise DataError(f"'{pair.gt}' is not a PNG file; restore it from the SIDD archive")
        height, width, depth = header
        per_crop = crop_size * crop_size * 3 * (2 if depth == 16 else 1)
        sizes += [per_crop] * len(crop_boxes(height, width, crop_size, step, thresh_size))
    return sizes


def prepare_sidd_train(medium_dir: str, out_dir: str, crop_size: int = 512, step: int = 384,
                       thresh_size: int = 0, fmt: str = "raw", compress_level: int = 1,
                       workers: int = 1, force: bool = False, progress: bool = True) -> int:
    """SIDD-Medium -> ``<out_dir>/train/{gt,input}_crops.lmdb``; returns the number of crops."""
    check_crop_args(crop_size, step, thresh_size)
    check_format(fmt)
    pairs = find_sidd_pairs(medium_dir)
    map_size = estimate_map_size(_crop_bytes(pairs, crop_size, step, thresh_size))
    jobs = [(pair, crop_size, step, thresh_size, fmt, compress_level) for pair in pairs]
    count = 0
    with LmdbWriter(os.path.join(out_dir, TRAIN_LMDBS["gt"]), map_size, force) as gt_writer, \
            LmdbWriter(os.path.join(out_dir, TRAIN_LMDBS["input"]), map_size, force) as lq_writer:
        for crops in imap_progress(_crop_pair, jobs, workers, "SIDD pairs", progress):
            for key, gt_value, noisy_value in crops:
                gt_writer.put(key, *gt_value)
                lq_writer.put(key, *noisy_value)
            count += len(crops)
        if count == 0:  # raised inside the writers: nothing is kept
            raise DataError(f"medium: every SIDD image under '{medium_dir}' is smaller than "
                            f"crop_size {crop_size}; lower --crop-size")
    return count


def load_sidd_blocks(path: str, name: str, option: str) -> np.ndarray:
    """The uint8 (images, blocks, h, w, 3) array ``name`` of SIDD validation file ``path``."""
    from scipy.io import loadmat

    if not os.path.isfile(path):
        raise OptionError(f"{option}: '{path}' does not exist; download {name}.mat from the SIDD "
                          f"site (sRGB validation data)")
    try:
        mat = loadmat(path, variable_names=[name])
    except NotImplementedError:
        raise DataError(f"{option}: '{path}' is a MATLAB v7.3 file, which scipy cannot read; "
                        f"use the official {name}.mat (MATLAB v5)") from None
    except (ValueError, TypeError, OSError) as err:
        raise DataError(f"{option}: cannot read '{path}' ({err}); download {name}.mat again") from None
    if name not in mat:
        raise DataError(f"{option}: '{path}' holds no array '{name}'; give the official {name}.mat")
    blocks = mat[name]
    if blocks.ndim != 5 or blocks.shape[-1] != 3 or blocks.dtype != np.uint8:
        raise DataError(f"{option}: '{name}' in '{path}' is a {blocks.dtype} array of shape "
                        f"{blocks.shape}; expected uint8 (images, blocks, height, width, 3)")
    return blocks


def _write_blocks(blocks: np.ndarray, target: str, as_lmdb: bool, fmt: str, force: bool,
                  progress: bool) -> None:
    """Write blocks ``[i, j]`` as ``<i>_<j>`` into a PNG folder or an LMDB."""
    keys = [f"{i:02d}_{j:02d}" for i in range(blocks.shape[0]) for j in range(blocks.shape[1])]
    flat = blocks.reshape(-1, *blocks.shape[2:])
    items = tqdm(zip(keys, flat), total=len(keys), desc=os.path.basename(target), unit="img",
                 disable=not progress, dynamic_ncols=True)
    if as_lmdb:
        with LmdbWriter(target, estimate_map_size([b.nbytes for b in flat]), force) as writer:
            for key, block in items:
                writer.put(key, *encode_value(key, block, fmt))
        return
    prepare_output_folder(target, force)
    for key, block in items:
        path = os.path.join(target, f"{key}.png")
        if not cv2.imwrite(path, np.ascontiguousarray(block[:, :, ::-1]),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise DataError(f"cannot write '{path}'; check the disk space and permissions")


def prepare_sidd_val(noisy_mat: str, gt_mat: str, out_dir: str, as_lmdb: bool = False,
                     fmt: str = "raw", force: bool = False, progress: bool = True) -> int:
    """SIDD validation .mat files -> ``<out_dir>/val/{gt,input}_blocks`` (PNG folders, or
    ``.lmdb`` in ``fmt`` with ``as_lmdb``); returns the number of blocks."""
    check_format(fmt)
    noisy = load_sidd_blocks(noisy_mat, VAL_KEYS["noisy"], "val_noisy")
    gt = load_sidd_blocks(gt_mat, VAL_KEYS["gt"], "val_gt")
    if noisy.shape != gt.shape:
        raise DataError(f"val_noisy: '{noisy_mat}' holds {noisy.shape} blocks but '{gt_mat}' "
                        f"holds {gt.shape}; give the matching pair of SIDD files")
    suffix = ".lmdb" if as_lmdb else ""
    targets = {side: os.path.join(out_dir, folder + suffix) for side, folder in VAL_FOLDERS.items()}
    for target in targets.values():  # both checked before either is written
        (check_output if as_lmdb else check_output_folder)(target, force)
    _write_blocks(gt, targets["gt"], as_lmdb, fmt, force, progress)
    _write_blocks(noisy, targets["input"], as_lmdb, fmt, force, progress)
    return gt.shape[0] * gt.shape[1]
