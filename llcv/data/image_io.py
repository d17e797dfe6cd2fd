"""Reading images: storage backends give images by name, as arrays or lazily cropped views.

Every backend has ``root``, ``keys()``, ``describe(name)``, ``size(name)`` and ``read(name)``;
``read`` returns an HWC RGB array, or for raw LMDB values a view with ``shape`` whose slices read
only the pixels kept. Datasets crop first and call ``np.asarray`` after, so they never know which
backend it was. ``size`` reads only a header (and checks that the file is whole), so a run can
check a whole validation set before it starts.
"""
from __future__ import annotations

import io
import os
import struct
from typing import Any, Mapping, Optional, Protocol

import cv2
import numpy as np
import torch

from llcv.errors import DataError, OptionError

# A broken file is reported once, as a DataError naming it; OpenCV's own warning would only repeat it.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC: the last 8 bytes of a whole PNG
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
HEAD_BYTES, TAIL_BYTES = 32, 64  # what a header check reads from each end of a file
DEMO_HINT = "options/train_unet_demo.yml trains without any data"
# Data sets with a preparation tool: a path containing the fragment is made by the command.
PREPARE_COMMANDS = {
    "sidd": "python tools/prepare_sidd.py --medium <SIDD_Medium_Srgb> --val-noisy "
            "<ValidationNoisyBlocksSrgb.mat> --val-gt <ValidationGtBlocksSrgb.mat> --out datasets/SIDD",
}


class ImageBackend(Protocol):
    """What datasets need from a storage backend."""

    root: str

    def keys(self) -> list[str]: ...

    def describe(self, name: str) -> str: ...

    def size(self, name: str) -> tuple[int, int]: ...

    def read(self, name: str) -> Any: ...


def prepare_command(root: str) -> Optional[str]:
    """The command that makes the data at ``root``: its preparation tool, create_lmdb for an LMDB."""
    lowered = str(root).lower()
    for fragment, command in PREPARE_COMMANDS.items():
        if fragment in lowered:
            return command
    if lowered.rstrip("/\\").endswith(".lmdb"):
        return f"python tools/create_lmdb.py --input <folder of images> --output {root}"
    return None


def prepare_hint(root: str) -> str:
    """What to do about missing data at ``root``."""
    command = prepare_command(root)
    if command is None:
        return "check the path (relative paths are taken from the current directory)"
    return f"make it with `{command}`"


class DiskBackend:
    """Image files of one folder (not recursive), keyed by file name without extension."""

    def __init__(self, root: str, option: str) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise OptionError(f"{option}: expected a folder path, got {root!r}")
        if not os.path.isdir(root):
            if os.path.exists(root):
                raise OptionError(f"{option}: '{root}' is a file, not a folder; check the path")
            raise OptionError(f"{option}: folder '{root}' does not exist; {prepare_hint(root)}; "
                              f"{DEMO_HINT}")
        self.root = root
        self.files: dict[str, str] = {}
        for filename in sorted(os.listdir(root)):
            stem, ext = os.path.splitext(filename)
            if ext.lower() not in IMAGE_EXTENSIONS or filename.startswith("."):
                continue
            if stem in self.files:
                raise DataError(f"{option}: folder '{root}' holds both '{self.files[stem]}' and "
                                f"'{filename}'; keep one image per name")
            self.files[stem] = filename
        if not self.files and os.path.isfile(os.path.join(root, "data.mdb")):
            raise OptionError(f"{option}: '{root}' is an LMDB (it holds data.mdb); set "
                              f"io_backend: {{type: lmdb}} to read it")
        if not self.files:
            raise DataError(f"{option}: folder '{root}' contains no images "
                            f"({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}); check the path")

    def keys(self) -> list[str]:
        """Names of the images, sorted (as LMDB keys are, so both backends index alike)."""
        return sorted(self.files)

    def describe(self, name: str) -> str:
        """Where image ``name`` lives, for messages and sample paths."""
        return os.path.join(self.root, self.files[name])

    def size(self, name: str) -> tuple[int, int]:
        """(height, width) of image ``name`` from its header, the file checked to be whole;
        the pixels are not decoded."""
        path = self.describe(name)
        try:
            with open(path, "rb") as f:
                head = f.read(HEAD_BYTES)
                f.seek(max(os.fstat(f.fileno()).st_size - TAIL_BYTES, 0))
                tail = f.read()
                return encoded_size(head, tail, path, f)
        except OSError as err:
            raise DataError(f"cannot read image '{path}': {err.strerror}") from err

    def get(self, name: str) -> bytes:
        """The encoded bytes of image ``name``."""
        path = self.describe(name)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as err:
            raise DataError(f"cannot read image '{path}': {err.strerror}") from err

    def read(self, name: str) -> np.ndarray:
        """Image ``name`` decoded (HWC RGB, stored dtype)."""
        return decode_image(self.get(name), self.describe(name))


def make_backend(io_backend: Optional[Mapping[str, Any]], root: str, option: str) -> ImageBackend:
    """Storage backend for folder/database ``root`` given by option ``option``."""
    from llcv.data.lmdb_backend import LmdbBackend  # it builds on this module

    backends = {"disk": DiskBackend, "lmdb": LmdbBackend}
    cfg = {"type": "disk"} if io_backend is None else io_backend
    if not isinstance(cfg, Mapping) or cfg.get("type") not in backends:
        raise OptionError(f"io_backend: {io_backend!r} is not supported; use {{type: disk}} "
                          f"(a folder of image files) or {{type: lmdb}} (a .lmdb folder)")
    extra = sorted(set(cfg) - {"type"})
    if extra:
        raise OptionError(f"io_backend.{extra[0]}: unknown option for the {cfg['type']} backend "
                          f"(it takes only 'type')")
    return backends[cfg["type"]](root, option)


def encoded_size(head: bytes, tail: bytes, source: str, stream: Any) -> tuple[int, int]:
    """(height, width) of an encoded image from its first and last bytes: PNG and JPEG files
    must end with their end marker (a truncated file does not); other formats' sizes come from
    Pillow reading ``stream``'s header."""
    problem = None
    if head.startswith(PNG_SIGNATURE):
        if head[12:16] != b"IHDR" or not tail.endswith(PNG_END):
            problem = "it is truncated or corrupt (no PNG end chunk)"
        else:
            width, height = struct.unpack(">II", head[16:24])
            return height, width
    elif head.startswith(JPEG_START) and JPEG_END not in tail:
        problem = "it is truncated or corrupt (no JPEG end marker)"
    if problem is None:
        problem, size = _pillow_size(stream)
        if size is not None:
            return size
    raise DataError(f"cannot decode image '{source}': {problem}; replace or remove it")


def _pillow_size(stream: Any) -> tuple[str, Optional[tuple[int, int]]]:
    """Pillow's (height, width) from the header in ``stream`` (a file or bytes), or why it
    has none."""
    from PIL import Image, UnidentifiedImageError

    stream = stream if hasattr(stream, "read") else io.BytesIO(stream)
    stream.seek(0)
    try:
        with Image.open(stream) as img:
            return "", (img.size[1], img.size[0])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return "it is corrupt or not an image", None


def bytes_size(data: Any, source: str) -> tuple[int, int]:
    """(height, width) of encoded image bytes (an LMDB value), checked as :func:`encoded_size`."""
    data = memoryview(data)
    return encoded_size(bytes(data[:HEAD_BYTES]), bytes(data[-TAIL_BYTES:]), source, data)


def decode_image(data: Any, source: str) -> np.ndarray:
    """Decode image bytes (or a buffer) to an HWC RGB array in its stored dtype.

    Gray images get three channels and alpha is dropped; the result may be a view, so crop it
    before :func:`to_float` to convert only the pixels kept.
    """
    img = imdecode_unchanged(data)
    if img is None:
        raise DataError(f"cannot decode image '{source}': the file is corrupt, truncated or not "
                        f"an image; replace or remove it")
    return opencv_to_rgb(img, source)


def imdecode_unchanged(data: Any) -> Optional[np.ndarray]:
    """OpenCV's decoding of ``data`` (BGR, depth and alpha kept), or None when it fails."""
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None


def opencv_to_rgb(img: np.ndarray, source: str) -> np.ndarray:
    """HWC RGB view of an image as OpenCV decodes it: gray repeated, alpha dropped."""
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if channels in (3, 4):
        return img[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
    raise DataError(f"image '{source}' has {channels} channels; expected gray, RGB or RGBA")


def to_float(img: np.ndarray, source: str = "image") -> np.ndarray:
    """Contiguous float32 copy of ``img`` in [0, 1] (uint8 / 255, uint16 / 65535, float as is)."""
    if img.dtype == np.uint8:
        scale = np.float32(255.0)
    elif img.dtype == np.uint16:
        scale = np.float32(65535.0)
    elif img.dtype.kind == "f":
        scale = np.float32(1.0)
    else:
        raise DataError(f"image '{source}' has unsupported pixel type {img.dtype}; use 8- or "
                        f"16-bit images")
    out = np.empty(img.shape, np.float32)
    np.divide(img, scale, out=out, casting="unsafe")  # division keeps 255/255 exactly 1
    return out


def to_tensor(img: np.ndarray, source: str = "image") -> torch.Tensor:
    """CHW float32 tensor in [0, 1] from an HWC array, converted and transposed in one pass."""
    return torch.from_numpy(to_float(img.transpose(2, 0, 1), source))
