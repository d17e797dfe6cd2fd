"""Read-only LMDB image storage in two value formats behind one backend.

Layout (BasicSR's, so existing LMDBs load unchanged): a ``<name>.lmdb`` folder with ``data.mdb``
and ``meta_info.txt``, one line per image ``<key>.<ext> (h,w,c) <tail>``, key = file name without
extension. ``ext`` picks the value format per key:

- anything but ``raw``: encoded image bytes (BasicSR: ``png`` with the compression level as tail);
  decoded whole, as a file would be.
- ``raw``: a 20-byte header (``LRW2``, h, w, c, bytes per sample, CRC-32 of the pixel bytes)
  then the HWC RGB pixels, uncompressed; the tail is the dtype (``uint8``/``uint16``). Crops copy
  only the bytes they keep from the memory map; every read verifies the checksum (zlib's crc32
  runs at GB/s), so a value altered on disk is named instead of trained on. Values written
  before checksums (16-byte ``LRAW`` header) are still read, unverified.

The environment is opened lazily, once per process and database (``lock=False,
readahead=False, meminit=False``), and never pickled: spawned DataLoader workers open their own,
forked ones reuse a read-only mapping their parent opened (py-lmdb refuses to open the same files
twice in one process; with no locks and no transaction kept open, sharing the mapping is safe).
"""
from __future__ import annotations

import os
import re
import struct
import threading
import zlib
from typing import Any, NamedTuple, Optional, Union

import lmdb
import numpy as np

from llcv.data.image_io import (DEMO_HINT, bytes_size, imdecode_unchanged, opencv_to_rgb,
                                prepare_command, prepare_hint)
from llcv.errors import DataError, OptionError

META_FILE = "meta_info.txt"
RAW_EXT = "raw"
RAW_DTYPES = ("uint8", "uint16")
RAW_HEADER = struct.Struct("<4sIIHHI")  # magic, h, w, c, bytes per sample, crc32: 20 bytes
RAW_MAGIC = b"LRW2"
LEGACY_HEADER = struct.Struct("<4sIIHH")  # llcv's first raw values: no checksum
LEGACY_MAGIC = b"LRAW"
_META_LINE = re.compile(r"^(?P<name>\S+)\s+\((?P<shape>\s*\d+\s*(?:,\s*\d+\s*)*)\)\s*(?P<tail>\S*)\s*$")
_OPEN_ENVS: dict[str, tuple[int, lmdb.Environment]] = {}  # real path -> (data.mdb inode, env)
_OPEN_LOCK = threading.Lock()


def _new_lock_after_fork() -> None:
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()  # a lock held by another thread at fork would never be released


os.register_at_fork(after_in_child=_new_lock_after_fork)


class MetaEntry(NamedTuple):
    """What ``meta_info.txt`` says about one key: its shape and, for raw values, the dtype."""

    shape: Optional[tuple[int, ...]]
    dtype: Optional[str]  # None: an encoded image (PNG, ...)


def raw_value(img: np.ndarray) -> bytes:
    """The raw value of an HWC array: the header (with the pixels' CRC-32), then the pixels."""
    pixels = np.ascontiguousarray(img).tobytes()
    return RAW_HEADER.pack(RAW_MAGIC, *img.shape, img.dtype.itemsize, zlib.crc32(pixels)) + pixels


def meta_line(key: str, shape: tuple[int, ...], raw_dtype: Optional[str] = None,
              compress_level: int = 1) -> str:
    """One ``meta_info.txt`` line: BasicSR's ``key.png (h,w,c) level`` or ``key.raw (h,w,c) dtype``."""
    dims = ",".join(str(d) for d in shape)
    if raw_dtype is None:
        return f"{key}.png ({dims}) {compress_level}"
    return f"{key}.{RAW_EXT} ({dims}) {raw_dtype}"


def parse_meta(path: str) -> dict[str, MetaEntry]:
    """Keys of an LMDB from its ``meta_info.txt``; a malformed line is named with its number."""
    entries: dict[str, MetaEntry] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            name = line.split()[0]
            entry = _parse_meta_line(line.strip(), f"{path}:{number}")
            entries[name.split(".", 1)[0]] = entry  # key = name up to its first dot (BasicSR)
    if not entries:
        raise DataError(f"'{path}' lists no images; {rebuild_hint(os.path.dirname(path))}")
    return entries


def _parse_meta_line(line: str, where: str) -> MetaEntry:
    """One line as ``MetaEntry``; a bare ``name`` (no shape) is an encoded image."""
    match = _META_LINE.match(line)
    name = match["name"] if match else line.split()[0]
    ext = name.split(".", 1)[1].lower() if "." in name else ""
    shape = tuple(int(d) for d in match["shape"].split(",")) if match else None
    if ext != RAW_EXT:
        return MetaEntry(shape, None)
    if not match or len(shape) != 3 or match["tail"] not in RAW_DTYPES:
        raise DataError(f"{where}: raw entry '{line}' must read 'key.raw (h,w,c) uint8|uint16'; "
                        f"rebuild the LMDB with `python tools/create_lmdb.py ... --force`")
    return MetaEntry(shape, match["tail"])


def rebuild_hint(root: str) -> str:
    """How to replace a damaged LMDB at ``root``."""
    command = prepare_command(root) or (f"python tools/create_lmdb.py --input <folder of images> "
                                        f"--output {root}")
    return f"rebuild the LMDB with `{command} --force`"


def open_readonly(root: str) -> lmdb.Environment:
    """This process's read-only environment of LMDB ``root``, opened on first use.

    A database rebuilt at the same path (new data.mdb) gets a fresh environment.
    """
    path = os.path.realpath(root)
    try:
        inode = os.stat(os.path.join(path, "data.mdb")).st_ino
        with _OPEN_LOCK:
            cached = _OPEN_ENVS.get(path)
            if cached is not None and cached[0] == inode:
                return cached[1]
            if cached is not None:
                cached[1].close()
            env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
            _OPEN_ENVS[path] = (inode, env)
            return env
    except (OSError, lmdb.Error) as err:
        if "already open" in str(err):  # py-lmdb: one environment per database and process
            raise DataError(f"LMDB '{root}' is already open in this process outside llcv; "
                            f"close that environment before llcv reads it") from None
        raise DataError(f"cannot open LMDB '{root}' ({err}); {rebuild_hint(root)}") from None


class LmdbBackend:
    """Images of one LMDB folder, by key; the database is opened on first read in each process."""

    def __init__(self, root: str, option: str) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise OptionError(f"{option}: expected the path of a .lmdb folder, got {root!r}")
        root = os.fspath(root)
        if not os.path.exists(root):
            raise OptionError(f"{option}: LMDB '{root}' does not exist; {prepare_hint(root)}; "
                              f"{DEMO_HINT}")
        if not os.path.isfile(os.path.join(root, "data.mdb")):
            raise OptionError(
                f"io_backend: type lmdb, but {option} '{root}' is not an LMDB folder (no data.mdb); "
                f"set io_backend: {{type: disk}} for a folder of images, or point {option} at a "
                f".lmdb folder made by tools/create_lmdb.py")
        meta = os.path.join(root, META_FILE)
        if not os.path.isfile(meta):
            raise DataError(f"{option}: LMDB '{root}' has no {META_FILE} (it lists the images; "
                            f"a build that did not finish leaves none); {rebuild_hint(root)}")
        self.root, self.option = root, option
        self.entries = parse_meta(meta)
        self._env: Optional[lmdb.Environment] = None
        self._pid: Optional[int] = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_env"], state["_pid"] = None, None  # an open environment must not cross processes
        return state

    def keys(self) -> list[str]:
        """Keys of the images, sorted."""
        return sorted(self.entries)

    def describe(self, name: str) -> str:
        """``<root>/<key>``: names the LMDB and the key in messages and sample paths."""
        return os.path.join(self.root, name)

    def read(self, name: str) -> Union[np.ndarray, "RawImage"]:
        """Image ``name``: decoded (encoded values) or a lazily read view (raw values)."""
        entry = self.entries[name]
        if entry.dtype is not None:
            return RawImage(self, name, entry.shape, np.dtype(entry.dtype))
        with self._env_or_open().begin(buffers=True) as txn:
            # OpenCV decodes into its own array, so the image outlives the transaction's buffer.
            img = imdecode_unchanged(self._value(txn, name))
        if img is None:
            raise DataError(f"key '{name}' of LMDB '{self.root}' cannot be decoded: the value is "
                            f"corrupt, truncated or not an image; {rebuild_hint(self.root)}")
        return opencv_to_rgb(img, self.describe(name))

    def _env_or_open(self) -> lmdb.Environment:
        if self._env is None or self._pid != os.getpid():
            self._env, self._pid = open_readonly(self.root), os.getpid()
        return self._env

    def _value(self, txn: lmdb.Transaction, name: str) -> memoryview:
        value = txn.get(name.encode("utf-8"))
        if value is None:
            raise DataError(f"key '{name}' is missing from LMDB '{self.root}' although "
                            f"{META_FILE} lists it; the LMDB is incomplete: "
                            f"{rebuild_hint(self.root)}")
        return value

    def read_raw(self, name: str, shape: tuple[int, ...], dtype: np.dtype, index: Any) -> np.ndarray:
        """``pixels[index]`` of raw value ``name`` (checksum verified), copying only the bytes
        ``index`` selects."""
        with self._env_or_open().begin(buffers=True) as txn:
            value = self._value(txn, name)
            offset = self._check_raw(value, name, shape, dtype, verify=True)
            pixels = np.frombuffer(value, dtype, offset=offset).reshape(shape)
            return np.array(pixels[index])

    def size(self, name: str) -> tuple[int, int]:
        """(height, width) of image ``name``, its value checked to be whole (a raw value's
        header and length, an encoded one's end marker) without decoding the pixels."""
        entry = self.entries[name]
        with self._env_or_open().begin(buffers=True) as txn:
            value = self._value(txn, name)
            if entry.dtype is None:
                return bytes_size(value, self.describe(name))
            self._check_raw(value, name, entry.shape, np.dtype(entry.dtype), verify=False)
            return entry.shape[0], entry.shape[1]

    def _check_raw(self, value: memoryview, name: str, shape: tuple[int, ...], dtype: np.dtype,
                   verify: bool) -> int:
        """Offset of the pixels of raw value ``name`` after checking its header and length
        against the meta (and, with ``verify``, its checksum); a mismatch names the key."""
        layout, magic = (RAW_HEADER, RAW_MAGIC) if bytes(value[:4]) == RAW_MAGIC else \
            (LEGACY_HEADER, LEGACY_MAGIC)
        expected = layout.size + int(np.prod(shape)) * dtype.itemsize
        fields = layout.unpack_from(value) if len(value) >= layout.size else None
        if fields is None or fields[:5] != (magic, *shape, dtype.itemsize) \
                or len(value) != expected:
            raise DataError(
                f"key '{name}' of LMDB '{self.root}' is corrupt or truncated: {len(value)} "
                f"bytes where a {'x'.join(map(str, shape))} {dtype} raw image takes {expected}; "
                f"{rebuild_hint(self.root)}")
        if verify and layout is RAW_HEADER:
            actual = zlib.crc32(value[layout.size:])
            if actual != fields[5]:
                raise DataError(
                    f"key '{name}' of LMDB '{self.root}' fails its checksum (CRC-32 "
                    f"{actual:08x}, written {fields[5]:08x}): the value changed on disk after "
                    f"the LMDB was made; {rebuild_hint(self.root)}")
        return layout.size


class RawImage:
    """An HWC image in a raw LMDB value: ``shape`` from the meta, pixels read when sliced.

    Slicing (``img[top:bottom, left:right]``) returns an ndarray holding only those pixels;
    ``np.asarray(img)`` reads the whole image.
    """

    def __init__(self, backend: LmdbBackend, name: str, shape: tuple[int, ...], dtype: np.dtype):
        self.backend, self.name, self.shape, self.dtype = backend, name, tuple(shape), dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.backend.read_raw(self.name, self.shape, self.dtype, index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        pixels = self[...]
        return pixels if dtype is None else pixels.astype(dtype, copy=False)
