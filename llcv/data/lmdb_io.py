"""Writing LMDBs that :class:`~llcv.data.lmdb_backend.LmdbBackend` reads, in either value format.

``png``: BasicSR's layout (PNG values, ``key.png (h,w,c) level`` meta lines), readable by BasicSR.
``raw``: uncompressed pixels after a small header; larger on disk, but crops skip decoding.

A build goes to ``<output>.partial`` and is renamed when complete, so a crash never leaves a
half-written LMDB under the final name; the map grows when full.
"""
from __future__ import annotations

import math
import os
import shutil
import struct
from typing import Any, Optional

import cv2
import lmdb
import numpy as np

from llcv.data.image_io import PNG_SIGNATURE, DiskBackend, decode_image
from llcv.data.lmdb_backend import META_FILE, RAW_DTYPES, meta_line, raw_value
from llcv.data.parallel import imap_progress
from llcv.errors import DataError, OptionError

FORMATS = ("raw", "png")
LMDB_FILES = ("data.mdb", "lock.mdb", META_FILE)
MAX_KEY_BYTES = 511  # LMDB's default key size limit
PAGE_BYTES = 4096
COMMIT_BYTES = 256 << 20  # write transactions of about this size


def validate_key(key: str, source: str) -> None:
    """Fail naming ``source`` unless ``key`` is a valid key: ASCII, no dots, spaces or slashes."""
    problem = None
    if not key:
        problem = "it is empty"
    elif not key.isascii():
        problem = "it is not ASCII"
    elif "." in key:
        problem = "it holds a dot (BasicSR cuts keys at the first dot)"
    elif any(c.isspace() or c in "/\\" for c in key):
        problem = "it holds a space or a slash"
    elif len(key.encode()) > MAX_KEY_BYTES:
        problem = f"it is longer than {MAX_KEY_BYTES} bytes"
    if problem:
        raise DataError(f"'{source}': name '{key}' cannot be an LMDB key because {problem}; rename "
                        f"it (keys are file names without extension)")


def check_format(fmt: str, option: str = "format") -> None:
    """Fail naming ``option`` unless ``fmt`` is a known value format."""
    if fmt not in FORMATS:
        raise OptionError(f"{option}: '{fmt}' is not one of {', '.join(FORMATS)}")


def encode_value(key: str, img: np.ndarray, fmt: str, compress_level: int = 1) -> tuple[bytes, str]:
    """LMDB value and meta line of an HWC RGB array (as :func:`decode_image` gives) in ``fmt``."""
    img = np.ascontiguousarray(img)
    if fmt == "raw":
        if img.dtype.name not in RAW_DTYPES:
            raise DataError(f"'{key}': raw values hold uint8 or uint16 pixels, not {img.dtype}; "
                            f"use --format png")
        return raw_value(img), meta_line(key, img.shape, img.dtype.name)
    ok, buf = cv2.imencode(".png", img[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
    if not ok:
        raise DataError(f"'{key}': OpenCV cannot encode this {img.dtype} image as PNG")
    return buf.tobytes(), meta_line(key, img.shape, None, compress_level)


def estimate_map_size(value_bytes: list[int]) -> int:
    """An LMDB map size for values of these sizes: whole pages each, plus a quarter and 16 MiB."""
    pages = sum(math.ceil((n + 64) / PAGE_BYTES) for n in value_bytes)
    return int(pages * PAGE_BYTES * 1.25) + (16 << 20)


def png_header(path: str) -> Optional[tuple[int, int, int]]:
    """(height, width, bit depth) of a PNG file from its header; None for other files."""
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width, head[24]


def image_bytes(path: str) -> int:
    """Uncompressed size of image ``path`` as 3-channel pixels, from its header (no decoding)."""
    header = png_header(path)
    if header is not None:
        return header[0] * header[1] * 3 * (2 if header[2] == 16 else 1)
    from PIL import Image  # other formats: Pillow reads the header only

    try:
        with Image.open(path) as im:
            return im.size[0] * im.size[1] * 3 * (2 if "16" in im.mode else 1)
    except (OSError, ValueError):
        return os.path.getsize(path) * 8  # unknown header: a guess, the map grows if short


def check_output(path: str, force: bool) -> None:
    """Refuse to write an LMDB at ``path`` unless it is new, or an LMDB and ``force`` is set."""
    if not str(path).rstrip("/\\").endswith(".lmdb"):
        raise OptionError(f"output: '{path}' must end with .lmdb (BasicSR and llcv recognise LMDB "
                          f"folders by the suffix)")
    if not os.path.exists(path):
        return
    if not force:
        raise OptionError(f"output: '{path}' already exists; pass --force to replace it")
    others = sorted(set(os.listdir(path)) - set(LMDB_FILES)) if os.path.isdir(path) else [path]
    if others:
        raise OptionError(f"output: '{path}' is not an LMDB folder (it holds '{others[0]}'); "
                          f"--force only replaces LMDBs: remove it yourself or pick another path")


class LmdbWriter:
    """Puts ``key -> value`` into a new LMDB at ``path``; use as a context manager.

    Values are committed in batches; a full map is doubled and the batch retried. On success
    the meta file is written (sorted by key) and the build renamed into place; on error the
    partial build is removed and an existing LMDB at ``path`` is left untouched.
    """

    def __init__(self, path: str, map_size: int, force: bool = False) -> None:
        check_output(path, force)
        self.path, self.partial = str(path).rstrip("/\\"), str(path).rstrip("/\\") + ".partial"
        if os.path.exists(self.partial):
            shutil.rmtree(self.partial)  # left by a crashed build of ours
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.map_size = max(int(map_size), 16 * PAGE_BYTES)
        self.env = lmdb.open(self.partial, map_size=self.map_size, meminit=False)
        self.pending: list[tuple[bytes, bytes]] = []
        self.pending_bytes = 0
        self.meta: dict[str, str] = {}

    def put(self, key: str, value: bytes, line: str) -> None:
        """Add ``key`` with ``value`` and its meta line; a repeated key is an error."""
        validate_key(key, self.path)
        if key in self.meta:
            raise DataError(f"'{self.path}': key '{key}' is written twice; image names must be unique")
        self.meta[key] = line
        self.pending.append((key.encode(), value))
        self.pending_bytes += len(value)
        if self.pending_bytes >= COMMIT_BYTES:
            self._commit()

    def _commit(self) -> None:
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self.pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                self.map_size = 2 * self.map_size + 2 * self.pending_bytes
                self.env.set_mapsize(self.map_size)
        self.pending, self.pending_bytes = [], 0

    def close(self) -> None:
        """Commit, write the meta file and move the build to ``path``."""
        self._commit()
        self.env.close()
        with open(os.path.join(self.partial, META_FILE), "w", encoding="ascii") as f:
            f.writelines(f"{self.meta[key]}\n" for key in sorted(self.meta))
        if os.path.exists(self.path):
            shutil.rmtree(self.path)
        os.rename(self.partial, self.path)

    def abort(self) -> None:
        """Drop the partial build."""
        self.env.close()
        shutil.rmtree(self.partial, ignore_errors=True)

    def __enter__(self) -> "LmdbWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _encode_file(job: tuple[str, str, str, int]) -> tuple[str, bytes, str]:
    key, path, fmt, compress_level = job
    with open(path, "rb") as f:
        img = decode_image(f.read(), path)
    return (key, *encode_value(key, img, fmt, compress_level))


def folder_to_lmdb(input_dir: str, output: str, fmt: str = "raw", compress_level: int = 1,
                   workers: int = 1, force: bool = False, progress: bool = True,
                   map_size: Optional[int] = None) -> int:
    """Write every image of ``input_dir`` (key = file name without extension) to LMDB ``output``.

    Returns the number of images. ``map_size`` overrides the size estimated from the headers.
    """
    check_format(fmt)
    if not 0 <= compress_level <= 9:
        raise OptionError(f"compress_level: {compress_level} is not in 0..9")
    check_output(output, force)
    backend = DiskBackend(input_dir, "input")
    keys = backend.keys()
    for key in keys:
        validate_key(key, backend.describe(key))
    paths = [backend.describe(key) for key in keys]
    if map_size is None:
        map_size = estimate_map_size([image_bytes(p) for p in paths])
    jobs = [(key, path, fmt, compress_level) for key, path in zip(keys, paths)]
    with LmdbWriter(output, map_size, force) as writer:
        for key, value, line in imap_progress(_encode_file, jobs, workers, f"lmdb {fmt}", progress):
            writer.put(key, value, line)
    return len(keys)
