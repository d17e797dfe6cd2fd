"""A device's memory calibration: what the CUDA context and library workspaces take on one card.

``tools/calibrate_memory.py`` measures it once on a CUDA machine and writes a small JSON file; the
estimator reads it from an argument or from ``LLCV_MEMORY_CALIBRATION`` (a path). Fields:

- ``device``: ``name`` (``torch.cuda.get_device_name``), ``capability`` ``[major, minor]`` and
  ``total_bytes`` (``mem_get_info``'s total) of the card it was measured on.
- ``context_bytes``: device memory in use outside PyTorch's caching allocator once CUDA, cuDNN
  and cuBLAS are initialised and the reference models' kernels are loaded
  (``total - free - memory_reserved``): the CUDA context, kernel images, library handles.
- ``cublas_workspace_bytes``: the workspace PyTorch allocates (through the caching allocator,
  kept per stream) at the first matmul.
- ``workspace``: per op family (``conv_forward``, ``conv_backward``) a transient workspace of
  ``const + ratio x`` the bytes of the op's tensors, an envelope of the measured ones.
- ``torch``, ``cuda``, ``cudnn``, ``cudnn_benchmark``, ``alloc_conf``: the software and
  settings it holds for.

Without a calibration: no context figure (the ``device`` total is unknown), cuDNN workspaces of
0 (algorithms without workspace), and PyTorch's documented cuBLAS workspace for the card.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Union

from llcv.errors import OptionError

FORMAT = "llcv-memory-calibration"
VERSION = 1
ENV_VAR = "LLCV_MEMORY_CALIBRATION"
FAMILIES = ("conv_forward", "conv_backward")
SOFTWARE_KEYS = ("torch", "cuda", "cudnn", "cudnn_benchmark", "alloc_conf")


@dataclass(frozen=True)
class WorkspaceRule:
    """Transient workspace of an op family: ``const + ratio * (bytes of the op's tensors)``."""

    const: int = 0
    ratio: float = 0.0

    def bytes(self, tensor_bytes: int) -> int:
        return int(self.const + self.ratio * tensor_bytes)


@dataclass(frozen=True)
class Calibration:
    """Measured figures of one CUDA device (see the module docstring)."""

    device_name: str
    capability: tuple
    total_bytes: int
    context_bytes: int
    cublas_workspace_bytes: int
    workspace: dict = field(default_factory=dict)  # family -> WorkspaceRule
    software: dict = field(default_factory=dict)  # torch, cuda, cudnn, cudnn_benchmark
    source: str = ""  # the file it was read from

    def rule(self, family: str) -> WorkspaceRule:
        return self.workspace.get(family, WorkspaceRule())

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``source`` left out)."""
        return {"format": FORMAT, "version": VERSION,
                "device": {"name": self.device_name, "capability": list(self.capability),
                           "total_bytes": self.total_bytes},
                "context_bytes": self.context_bytes,
                "cublas_workspace_bytes": self.cublas_workspace_bytes,
                "workspace": {k: asdict(v) for k, v in self.workspace.items()},
                **self.software}

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")


def _need(doc: Mapping[str, Any], key: str, kind: Any, where: str) -> Any:
    """``doc[key]``, checked to be of ``kind`` (and >= 0 for numbers)."""
    if key not in doc:
        raise OptionError(f"{where}: missing '{key}'")
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, kind) or \
            (isinstance(value, (int, float)) and value < 0):
        what = getattr(kind, "__name__", "number")
        raise OptionError(f"{where}.{key}: expected a non-negative {what}, got {value!r}")
    return value


def _rules(doc: Any, where: str) -> dict[str, WorkspaceRule]:
    if not isinstance(doc, Mapping):
        raise OptionError(f"{where}.workspace: expected a mapping of op family to rule")
    rules = {}
    for family, rule in doc.items():
        if family not in FAMILIES:
            raise OptionError(f"{where}.workspace: unknown op family {family!r}; "
                              f"use {', '.join(FAMILIES)}")
        at = f"{where}.workspace.{family}"
        if not isinstance(rule, Mapping):
            raise OptionError(f"{at}: expected {{const, ratio}}")
        rules[family] = WorkspaceRule(_need(rule, "const", int, at),
                                      float(_need(rule, "ratio", (int, float), at)))
    return rules


def calibration_from_dict(doc: Any, source: str = "calibration") -> Calibration:
    """Validate a calibration document; errors name the file and the key."""
    if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
        raise OptionError(f"{source}: not an llcv memory calibration (format must be '{FORMAT}';"
                          f" write one with tools/calibrate_memory.py)")
    if doc.get("version") != VERSION:
        raise OptionError(f"{source}: calibration version {doc.get('version')!r} is not "
                          f"supported (expected {VERSION}); calibrate again")
    device = doc.get("device")
    if not isinstance(device, Mapping):
        raise OptionError(f"{source}: missing 'device'")
    capability = _need(device, "capability", list, f"{source}.device")
    if len(capability) != 2 or not all(isinstance(c, int) for c in capability):
        raise OptionError(f"{source}.device.capability: expected [major, minor]")
    software = {k: doc[k] for k in SOFTWARE_KEYS if k in doc}
    return Calibration(_need(device, "name", str, f"{source}.device"), tuple(capability),
                       _need(device, "total_bytes", int, f"{source}.device"),
                       _need(doc, "context_bytes", int, source),
                       _need(doc, "cublas_workspace_bytes", int, source),
                       _rules(doc.get("workspace", {}), source), software, source)


def load_calibration(path: str) -> Calibration:
    """Read and validate a calibration JSON file."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as err:
        raise OptionError(f"calibration: cannot read '{path}' ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise OptionError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    return calibration_from_dict(doc, path)


def resolve_calibration(calibration: Union[Calibration, str, None, bool],
                        environ: Optional[Mapping[str, str]] = None) -> Optional[Calibration]:
    """The calibration to use: an object, a path, ``None`` (``LLCV_MEMORY_CALIBRATION`` if
    set) or ``False`` (none)."""
    if calibration is False:
        return None
    if isinstance(calibration, Calibration):
        return calibration
    if calibration is None:
        calibration = (os.environ if environ is None else environ).get(ENV_VAR) or None
    return None if calibration is None else load_calibration(str(calibration))


def cublas_workspace_bytes(capability: Optional[tuple],
                           environ: Optional[Mapping[str, str]] = None) -> int:
    """PyTorch's cuBLAS workspace (``parseChosenWorkspaceSize`` in
    aten/src/ATen/cuda/CublasHandlePool.cpp): ``CUBLAS_WORKSPACE_CONFIG`` ``:SIZE_KIB:COUNT``
    pairs summed, else 32 MiB for compute capability 9.x, 10.x, 12.x and ``:4096:2:16:8``
    (8 MiB + 128 KiB) for others (and when the card is not known)."""
    config = (os.environ if environ is None else environ).get("CUBLAS_WORKSPACE_CONFIG")
    pairs = re.findall(r":([0-9]+):([0-9]+)", config or "")
    if pairs:
        return sum(int(size) * 1024 * int(count) for size, count in pairs)
    if capability is not None and capability[0] in (9, 10, 12):
        return 4096 * 8 * 1024
    return 4096 * 1024 * 2 + 16 * 1024 * 8
