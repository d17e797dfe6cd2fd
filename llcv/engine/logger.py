"""Where figures go: a text log, ``metrics.jsonl`` and TensorBoard, under the same field names."""
from __future__ import annotations

import json
import logging
import math
import os
import sys
from typing import Any, Mapping, Sequence

import numpy as np

LOGGER_NAME = "llcv"
# TensorBoard "Custom Scalars": measured and estimated memory of a training step on one chart
# (the measured figures each device has: CUDA's allocator peaks, or CPU's tensor peak and RSS).
MEASURED = {"cuda": ["mem/alloc_peak_mb", "mem/reserved_peak_mb"],
            "cpu": ["mem/alloc_peak_mb", "mem/rss_peak_mb"]}


def memory_charts(device_type: str) -> dict:
    """The custom-scalar layout for a run on ``device_type``."""
    measured = MEASURED.get(device_type, MEASURED["cpu"])
    return {"memory": {
        "training step peak (MiB): measured vs estimated": [
            "Multiline", [*measured, "mem/est_train_peak_mb"]],
        "inference peak (MiB): estimated": ["Multiline", ["mem/est_infer_peak_mb"]],
    }}


class RecordBuffer(logging.Handler):
    """Keeps what is logged before the run's log file exists, to write it there first."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def get_logger(log_file: str | None = None, enabled: bool = True,
               replay: Sequence[logging.LogRecord] = ()) -> logging.Logger:
    """The ``llcv`` logger, printing to the console and, on the main process, to ``log_file``
    (which starts with the ``replay`` records, logged before it existed)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO if enabled else logging.ERROR)
    logger.propagate = False
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file and enabled:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(fmt)
        for record in replay:
            file_handler.handle(record)
        logger.addHandler(file_handler)
    return logger


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan
    return value


class MetricWriter:
    """Writes records of scalars to JSONL and TensorBoard (main process only)."""

    def __init__(self, exp_dir: str, use_tb: bool, enabled: bool = True,
                 device_type: str = "cpu") -> None:
        self.enabled = enabled
        self.jsonl_path = os.path.join(exp_dir, "metrics.jsonl")
        self.tb = None
        if enabled and use_tb:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=os.path.join(exp_dir, "tb"))
            self.tb.add_custom_scalars(memory_charts(device_type))

    def write_jsonl(self, step: int, record: Mapping[str, Any]) -> None:
        """Append one JSON object (``iter`` plus the record) to ``metrics.jsonl``."""
        if not self.enabled:
            return
        line = json.dumps({"iter": step, **{k: _plain(v) for k, v in record.items()}})
        with open(self.jsonl_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def write_tb(self, step: int, record: Mapping[str, float]) -> None:
        """One TensorBoard scalar per numeric field (tags are the field names)."""
        if self.tb is None:
            return
        for tag, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb.add_scalar(tag, value, step)

    def write_text(self, tag: str, text: str, step: int) -> None:
        """A Markdown text to TensorBoard's Text tab (e.g. a prune event's per-layer table)."""
        if self.tb is not None:
            self.tb.add_text(tag, text, step)

    def write_image(self, tag: str, image_hwc: np.ndarray, step: int) -> None:
        """An RGB uint8 image to TensorBoard."""
        if self.tb is not None:
            self.tb.add_image(tag, image_hwc, step, dataformats="HWC")

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def format_train_line(name: str, epoch: int, it: int, total: int, record: Mapping[str, Any],
                      eta_s: float) -> str:
    """BasicSR-like line: epoch, iter, lr, ETA, time (data), losses, memory."""
    eta = f"{int(eta_s // 3600)}:{int(eta_s % 3600 // 60):02d}:{int(eta_s % 60):02d}"
    head = (f"[{name}][epoch:{epoch:3d}, iter:{it:8,d}/{total:,d}, lr:({record['train/lr']:.3e},)] "
            f"[eta: {eta}, time (data): {record['time/iter_s']:.3f} ({record['time/data_s']:.3f})]")
    skip = {"train/lr", "time/iter_s", "time/data_s"}
    fields = " ".join(f"{k}: {_fmt(v)}" for k, v in record.items() if k not in skip)
    return f"{head} {fields}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4e}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:.4f}"
    return str(value)
