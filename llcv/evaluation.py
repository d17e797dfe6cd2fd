"""Evaluating a trained network: quality on test sets, and what it costs to run.

:func:`run_test` gives, for every test set of a (BasicSR-style) test option file: the averages of
``val.metrics`` under the run's protocol (``uint8``, BasicSR's, or ``float``, the SIDD tables')
beside the LQ-vs-GT reference, one row per image (a CSV), and at the set's resolution (its
largest image, batch 1) the parameters, MACs, estimated and measured inference peak memory and
the latency (warm-up runs, then the median of timed runs; CUDA synchronised). Optionally a
synthetic image of N megapixels (100 by default) is restored tile by tile under a memory budget:
tile size and count, seconds, and the estimated and measured peak of one full tile.

The numbers are those of the training run's validation: the same ``MetricSpec`` functions on the
same protocol (:mod:`llcv.engine.validation`), averaged in float64.
"""
from __future__ import annotations

import csv
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from llcv.analysis.profile import count_parameters, profile_model, si
from llcv.data.loader import build_dataset, build_val_loader
from llcv.engine.validation import MetricSpec, apply_protocol, save_image_png, upsample_reference
from llcv.errors import LLCVError
from llcv.inference import (axis_windows, choose_tile, plan_overlap, tile_peak_bytes,
                            tiled_inference)
from llcv.memory import estimate_peak_memory, measure_peak, output_shape
from llcv.network import Spec, build_network
from llcv.utils import MB, module_modes


@dataclass
class EvalSet:
    """One test set: its display name, option phase and (ordered, unshuffled) loader."""

    name: str
    phase: str
    loader: DataLoader


@dataclass
class EvalSettings:
    """What a test measures beside the metrics, and where it writes."""

    out_dir: str
    method: str = "dense"  # the series this network belongs to (for pareto.py)
    label: str = ""  # the point's label in plots (default: the run name)
    warmup: int = 3
    runs: int = 10
    save_img: bool = False
    save_lq_gt: bool = False
    memory_budget_mb: Optional[float] = None  # tiled run on a large synthetic image when set
    tiled_megapixels: float = 100.0
    progress: bool = True


# ---------------------------------------------------------------------- sets
def network_scale(network_g: Mapping[str, Any]) -> int:
    """How many times larger than its input the network's output is (1 for restoration, the
    upscaling factor for super-resolution), from one forward on the meta device."""
    from llcv.models.deep_features import image_channels
    from llcv.network import network_spec

    size = 64
    out = output_shape(build_network(network_spec(network_g), "meta"),
                       [1, image_channels(network_g), size, size])
    return max(out[-1] // size, 1)


def folder_sets(pairs: Sequence[Sequence[str]], first: int = 1, scale: int = 1
                ) -> dict[str, dict]:
    """``datasets.test_<i>`` blocks for ``(GT, LQ[, name])`` folders or ``.lmdb`` pairs (the GT
    ``scale`` times the LQ's size); the name defaults to the GT folder's parent
    (``datasets/Set5/HR`` -> ``Set5``)."""
    sets = {}
    for i, pair in enumerate(pairs, first):
        gt, lq = pair[0], pair[1]
        name = pair[2] if len(pair) > 2 else \
            os.path.basename(os.path.dirname(os.path.abspath(gt.rstrip("/\\"))))
        lmdb = str(gt).rstrip("/\\").endswith(".lmdb")
        sets[f"test_{i}"] = {"name": name, "type": "PairedImageDataset", "dataroot_gt": gt,
                             "dataroot_lq": lq, "io_backend": {"type": "lmdb" if lmdb else "disk"}}
        if scale > 1:
            sets[f"test_{i}"]["scale"] = scale
    return sets


def run_name(checkpoint: str) -> str:
    """A results name for a checkpoint: ``<experiment>_<file stem>`` for ``<experiment>/models/
    <file>``, else the file stem."""
    stem = os.path.splitext(os.path.basename(checkpoint))[0]
    parent = os.path.dirname(os.path.abspath(checkpoint))
    if os.path.basename(parent) == "models":
        return f"{os.path.basename(os.path.dirname(parent))}_{stem}"
    return stem


def build_test_sets(opt: Mapping[str, Any], device: torch.device) -> list[EvalSet]:
    """The ``datasets.test*`` / ``datasets.val*`` sets of validated options (every phase but
    ``train``), with unique names."""
    sets: list[EvalSet] = []
    for phase, section in opt["datasets"].items():
        if phase == "train":
            continue
        loader = build_val_loader(build_dataset(section, phase), section, device)
        name = section.get("name") or phase
        if any(s.name == name for s in sets):
            name = f"{name}_{phase}"
        sets.append(EvalSet(name, phase, loader))
    return sets


def image_name(path: Any) -> str:
    """File-system-safe stem of a sample path (``skimage:chelsea`` -> ``skimage_chelsea``)."""
    return os.path.splitext(os.path.basename(str(path)))[0].replace(":", "_")


# ---------------------------------------------------------------------- quality
def _batch_rows(batch: Mapping[str, Any], values: Mapping[str, torch.Tensor],
                refs: Mapping[str, torch.Tensor]) -> list[dict]:
    """One CSV row per image of a batch: name, size, each metric and its LQ reference."""
    rows = []
    for j, path in enumerate(batch["lq_path"]):
        h, w = batch["gt"].shape[-2:]
        row: dict[str, Any] = {"image": image_name(path), "height": int(h), "width": int(w)}
        row.update({name: v[j].item() for name, v in values.items()})
        row.update({f"lq_{name}": v[j].item() for name, v in refs.items()})
        rows.append(row)
    return rows


@torch.no_grad()
def evaluate_set(model: nn.Module, test_set: EvalSet, metrics: Sequence[MetricSpec],
                 protocol: str, device: torch.device, save_dir: Optional[str] = None,
                 save_lq_gt: bool = False, progress: bool = True) -> tuple[list[dict], list[int]]:
    """Per-image metric rows of ``model`` on ``test_set`` (outputs saved as PNG under
    ``save_dir`` when given) and the LQ shape ``[1, C, H, W]`` of its largest image."""
    rows: list[dict] = []
    largest = [0, 0, 0, 0]
    bar = tqdm(test_set.loader, desc=f"test {test_set.name}", unit="batch", disable=not progress,
               dynamic_ncols=True)
    with module_modes(model, False):
        for batch in bar:
            lq, gt = batch["lq"].to(device), batch["gt"].to(device)
            out = apply_protocol(model(lq), protocol)
            gt_p = apply_protocol(gt, protocol)
            # super-resolution: the reference is the bicubic-upsampled LQ, as in validation
            lq_p = apply_protocol(lq if lq.shape[-2:] == gt.shape[-2:] else
                                  upsample_reference(lq, gt), protocol)
            values = {m.name: m(out, gt_p, protocol) for m in metrics}
            refs = {m.name: m(lq_p, gt_p, protocol) for m in metrics}
            rows += _batch_rows(batch, values, refs)
            if lq.shape[-1] * lq.shape[-2] > largest[2] * largest[3]:
                largest = [1, *lq.shape[1:]]
            if save_dir is not None:
                _save_batch(batch, out, save_dir, save_lq_gt)
    return rows, largest


def _save_batch(batch: Mapping[str, Any], out: torch.Tensor, save_dir: str,
                save_lq_gt: bool) -> None:
    """Outputs as ``<save_dir>/<image>.png``; LQ and GT under ``lq/`` and ``gt/`` if asked."""
    for j, path in enumerate(batch["lq_path"]):
        name = image_name(path)
        save_image_png(out[j], os.path.join(save_dir, f"{name}.png"))
        if save_lq_gt:
            save_image_png(batch["lq"][j], os.path.join(save_dir, "lq", f"{name}.png"))
            save_image_png(batch["gt"][j], os.path.join(save_dir, "gt", f"{name}.png"))


def averages(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, float]:
    """Float64 mean of each named column (as the training validation averages)."""
    return {n: math.fsum(r[n] for r in rows) / max(len(rows), 1) for n in names}


# ---------------------------------------------------------------------- cost
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _probe_input(shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(tuple(shape), generator=gen).to(device, dtype)


def _model_dtype(model: nn.Module) -> torch.dtype:
    return next(iter(model.parameters()), torch.empty(0)).dtype


def measured_inference_peak(model: nn.Module, shape: Sequence[int], device: torch.device) -> int:
    """Allocator peak bytes of one inference at ``shape``: weights, input, activations and (on
    CPU, through the profiler's allocator events) kernels' scratch buffers."""
    x = _probe_input(shape, device, _model_dtype(model))
    with module_modes(model, False), torch.inference_mode():
        return measure_peak(lambda: model(x), device, resident=(model, x))


def latency(model: nn.Module, shape: Sequence[int], device: torch.device, warmup: int = 3,
            runs: int = 10, progress: bool = True) -> dict[str, float]:
    """Seconds of one inference at ``shape``: ``warmup`` untimed runs, then the median (and
    min/max) of ``runs`` timed ones, each ended by a CUDA synchronisation."""
    x = _probe_input(shape, device, _model_dtype(model))
    times = []
    with module_modes(model, False), torch.inference_mode():
        for _ in range(warmup):
            model(x)
        _sync(device)
        for _ in tqdm(range(runs), desc="latency", unit="run", disable=not progress,
                      leave=False, dynamic_ncols=True):
            start = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3,
            "max_ms": max(times) * 1e3, "runs": runs, "warmup": warmup}


def cost_figures(model: nn.Module, spec: Spec, shape: Sequence[int], device: torch.device,
                 settings: EvalSettings) -> dict[str, Any]:
    """Params, MACs (counted on the meta device), estimated and measured inference peak and
    latency of ``model`` at input ``shape``."""
    macs = profile_model(build_network(spec, "meta"), shape).macs
    estimate = estimate_peak_memory(model, shape, "inference", device=device)
    return {"input_shape": list(shape), "params": count_parameters(model), "macs": macs,
            "est_infer_peak_mb": estimate.total / MB,
            "measured_peak_mb": measured_inference_peak(model, shape, device) / MB,
            "latency": latency(model, shape, device, settings.warmup, settings.runs,
                               settings.progress)}


def tiled_figures(model: nn.Module, megapixels: float, budget_mb: float, device: torch.device,
                  channels: int = 3, progress: bool = True) -> dict[str, Any]:
    """Restore a random square uint8 image of ``megapixels`` tile by tile under ``budget_mb``:
    the tile the estimator picks, the tile count, the seconds, the estimated and measured
    peak of one full tile (on the device) and the host memory of image, result and band."""
    side = max(1, round(math.sqrt(megapixels * 1e6)))
    image = np.random.default_rng(0).integers(0, 256, (side, side, channels), dtype=np.uint8)
    overlap, _ = plan_overlap(model, None, channels, device)
    tile = choose_tile(model, int(budget_mb * MB), overlap, (side, side), channels, device)
    tiles = len(axis_windows(side, tile, overlap)) ** 2
    window = [1, channels, min(tile, side), min(tile, side)]
    _sync(device)
    start = time.perf_counter()
    out = tiled_inference(model, image, tile, overlap, device=device, out_dtype=np.uint8,
                          progress=progress)
    _sync(device)
    seconds = time.perf_counter() - start
    band = tile * side * out.shape[2] * 4  # the float32 rows being blended
    return {"megapixels": side * side / 1e6, "height": side, "width": side,
            "memory_budget_mb": budget_mb, "tile": tile, "overlap": overlap, "tiles": tiles,
            "seconds": seconds,
            "est_tile_peak_mb": tile_peak_bytes(model, window[2], window[3], channels,
                                                device) / MB,
            "measured_tile_peak_mb": measured_inference_peak(model, window, device) / MB,
            "host_mb": (image.nbytes + out.nbytes + band) / MB}


# ---------------------------------------------------------------------- one run
def evaluate_network(model: nn.Module, spec: Spec, opt: Mapping[str, Any], device: torch.device,
                 settings: EvalSettings, info: Optional[Mapping[str, Any]] = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Test ``model`` on every test set of ``opt``; write ``metrics.json`` and a CSV per set
    into ``settings.out_dir``; return what ``metrics.json`` holds."""
    metrics = [MetricSpec(name, cfg) for name, cfg in opt["val"]["metrics"].items()]
    protocol = opt["val"]["protocol"]
    test_sets = build_test_sets(opt, device)  # bad data paths fail before anything is written
    os.makedirs(settings.out_dir, exist_ok=True)
    result: dict[str, Any] = {
        "name": opt["name"], "method": settings.method, "label": settings.label or opt["name"],
        **dict(info or {}), "network": spec, "pruned": spec.get("plan") is not None,
        "params": count_parameters(model), "device": str(device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "protocol": protocol, "datasets": {}}
    costs: dict[tuple, dict] = {}
    for test_set in test_sets:
        save_dir = os.path.join(settings.out_dir, "visualization", test_set.name) \
            if settings.save_img else None
        rows, shape = evaluate_set(model, test_set, metrics, protocol, device, save_dir,
                                   settings.save_lq_gt, settings.progress)
        if not rows:
            raise LLCVError(f"datasets.{test_set.phase}: the set holds no images")
        csv_path = os.path.join(settings.out_dir, f"{test_set.name}.csv")
        write_csv(rows, csv_path)
        if tuple(shape) not in costs:
            costs[tuple(shape)] = cost_figures(model, spec, shape, device, settings)
        names = [m.name for m in metrics]
        result["datasets"][test_set.name] = {
            "phase": test_set.phase, "images": len(rows), "metrics": averages(rows, names),
            "lq_metrics": averages(rows, [f"lq_{n}" for n in names if f"lq_{n}" in rows[0]]),
            "csv": os.path.basename(csv_path), **costs[tuple(shape)]}
        log(f"{test_set.name}: " + ", ".join(
            f"{n} {v:.4f}" for n, v in result["datasets"][test_set.name]["metrics"].items()))
    if settings.memory_budget_mb is not None:
        result["tiled"] = tiled_figures(model, settings.tiled_megapixels,
                                        settings.memory_budget_mb, device,
                                        _input_channels(model), settings.progress)
    write_json(result, os.path.join(settings.out_dir, "metrics.json"))
    return result


def _input_channels(model: nn.Module) -> int:
    """Channels of the network's first convolution (3 when it has none)."""
    first = next((p for p in model.parameters() if p.dim() == 4), None)
    return 3 if first is None else first.shape[1]


def write_csv(rows: Sequence[Mapping[str, Any]], path: str) -> None:
    """Rows of one set as CSV (full float precision)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_json(result: Mapping[str, Any], path: str) -> None:
    """``metrics.json``, written to a temporary file and renamed (a sweep trusts its presence)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, path)


# ---------------------------------------------------------------------- summary
def format_summary(result: Mapping[str, Any]) -> str:
    """The one-screen table of a test: a row per set, then the tiled run if any."""
    names = list(next(iter(result["datasets"].values()))["metrics"]) if result["datasets"] else []
    header = ["dataset", "images", *names, *(f"lq {n}" for n in names), "params", "MACs",
              "est. peak MiB", "meas. peak MiB", "latency ms"]
    rows = [header]
    for name, d in result["datasets"].items():
        rows.append([name, str(d["images"]), *(f"{d['metrics'][n]:.4f}" for n in names),
                     *(f"{d['lq_metrics'].get(f'lq_{n}', math.nan):.4f}" for n in names),
                     si(d["params"]),
                     si(d["macs"]), f"{d['est_infer_peak_mb']:.2f}",
                     f"{d['measured_peak_mb']:.2f}", f"{d['latency']['median_ms']:.2f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"{result['name']} ({result['method']}, {result['protocol']} protocol, "
             f"{result['device']})"]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    if "tiled" in result:
        t = result["tiled"]
        lines.append(f"tiled {t['megapixels']:.1f} MP ({t['width']}x{t['height']}) under "
                     f"{t['memory_budget_mb']:g} MiB: tile {t['tile']} overlap {t['overlap']}, "
                     f"{t['tiles']} tiles, {t['seconds']:.2f} s, tile peak est. "
                     f"{t['est_tile_peak_mb']:.2f} / meas. {t['measured_tile_peak_mb']:.2f} MiB, "
                     f"host {t['host_mb']:.0f} MiB")
    return "\n".join(lines)
