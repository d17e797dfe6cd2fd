"""GPU benchmarks in one short call on a CUDA machine (shared by the memory and speed work).

    python tools/bench_gpu.py                                  # every section
    python tools/bench_gpu.py --sections memory --calibration h200.json --json out.json
    python tools/bench_gpu.py --dry-run [--quick]              # no GPU: the plan and estimates

Each section prints its table and a summary; the last line is ``result: ...`` with every
section's summary. ``--dry-run`` measures nothing (and needs no GPU): it prints what would be
run with the estimates, the part that runs in CI.

Section ``overhead``: tools/bench_overhead.py on the card (bare loop vs ``Runner.train()`` with the
default logging, UNet and NAFNet demos). Section ``throughput``: training images/s of a UNet and a
NAFNet at batch 8 x 256^2 in fp32, bf16 autocast, channels_last and torch.compile.

Section ``memory``: UNet, NAFNet and DnCNN (demo widths) x three input sizes x {inference, a
training step (AdamW, L1)}: the estimate (``estimate_peak_memory`` for the CUDA target with the
device's calibration) against the measurement of a fresh cell (caches emptied, model built on
the card, warm-up steps, then one step): ``allocated`` = ``max_memory_allocated`` of that step,
``reserved`` = ``max_memory_reserved`` of the cell, ``device`` = ``total - free`` of
``torch.cuda.mem_get_info`` at its end (the card must be otherwise idle). Then the worst
|estimate / measured - 1| per column, and a tiled inference under a ``reserved`` budget whose
``max_memory_reserved`` must stay within it. The calibration (CUDA context, workspaces) is
measured first with tools/calibrate_memory.py unless ``--calibration`` gives one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, NamedTuple, Optional

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(TOOLS))
sys.path.insert(0, TOOLS)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from calibrate_memory import REFERENCE_MODELS, calibrate, clean  # noqa: E402
from llcv.memory import estimate_peak_memory, load_calibration  # noqa: E402
from llcv.registry import ARCHS, build  # noqa: E402
from llcv.utils import MB  # noqa: E402

SHAPES = [(1, 3, 256, 256), (8, 3, 256, 256), (2, 3, 1024, 1024)]
QUICK_SHAPES = [(1, 3, 32, 32), (2, 3, 48, 48), (1, 3, 64, 64)]
MODES = ("inference", "train")
COLUMNS = ("allocated", "reserved", "device")
TARGET = 0.10  # worst |estimate / measured - 1| allowed for reserved
TILED_IMAGE = (1536, 2048)  # height, width of the tiled run
TILED_TILE = 512  # the budget is set so that about this tile fits


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: {','.join(SECTIONS)})")
    parser.add_argument("--dry-run", action="store_true",
                        help="measure nothing (no GPU needed): the plan and the estimates")
    parser.add_argument("--quick", action="store_true", help="small inputs (a smoke run)")
    parser.add_argument("--models", default=",".join(REFERENCE_MODELS),
                        help=f"memory: models to run (default {','.join(REFERENCE_MODELS)})")
    parser.add_argument("--device", default="cuda", help="the CUDA device (default cuda)")
    parser.add_argument("--calibration", default=None,
                        help="memory calibration file (default: measure one now)")
    parser.add_argument("--out-dir", default=os.environ.get("OUT", "results/bench_gpu"),
                        help="where a measured calibration is written (default $OUT or "
                             "results/bench_gpu)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures")
    args = parser.parse_args(argv)
    for option, known in (("sections", SECTIONS), ("models", REFERENCE_MODELS)):
        unknown = [s for s in getattr(args, option).split(",") if s not in known]
        if unknown:
            parser.error(f"--{option}: unknown {', '.join(unknown)}; use {', '.join(known)}")
    return args


# ---------------------------------------------------------------------- memory: the table
class Row(NamedTuple):
    """One cell: estimated and (unless a dry run: empty) measured bytes per column."""

    model: str
    shape: tuple
    mode: str
    estimated: dict
    measured: dict

    def error(self, column: str) -> Optional[float]:
        """estimate / measured - 1 (None when either is missing)."""
        est, got = self.estimated.get(column), self.measured.get(column)
        return None if est is None or not got else est / got - 1


def worst_errors(rows: list[Row]) -> dict[str, Optional[float]]:
    """The largest |error| of each column over the rows that have one."""
    worst: dict[str, Optional[float]] = {}
    for column in COLUMNS:
        errors = [abs(e) for e in (row.error(column) for row in rows) if e is not None]
        worst[column] = max(errors) if errors else None
    return worst


def _mib(value: Optional[int]) -> str:
    return "-" if value is None else f"{value / MB:.1f}"


def format_table(rows: list[Row]) -> list[str]:
    """Estimated vs measured MiB and the error of each column, one line per cell."""
    head = f"{'model':<7} {'input':<13} {'mode':<9}" + "".join(
        f" {c + ' est':>13} {'meas':>9} {'err':>7}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = ""
        for column in COLUMNS:
            error = row.error(column)
            cells += (f" {_mib(row.estimated.get(column)):>13} {_mib(row.measured.get(column)):>9}"
                      f" {'-' if error is None else f'{error:+.1%}':>7}")
        lines.append(f"{row.model:<7} {'x'.join(map(str, row.shape)):<13} {row.mode:<9}{cells}")
    worst = worst_errors(rows)
    lines.append("worst |error|: " + ", ".join(
        f"{c} {'-' if worst[c] is None else f'{worst[c]:.1%}'}" for c in COLUMNS))
    return lines


# ---------------------------------------------------------------------- memory: measuring
def train_step(model: Any, optimizer: Any, lq: Any, gt: Any) -> None:
    """The runner's step: output and loss stay referenced until the step returns."""
    optimizer.zero_grad(set_to_none=True)
    output = model(lq)
    loss = F.l1_loss(output, gt)
    loss.backward()
    optimizer.step()


def forward(model: Any, lq: Any) -> None:
    with torch.no_grad():
        out = model(lq)
        del out


def measure_cell(cfg: dict, shape: tuple, mode: str, device: Any) -> dict[str, int]:
    """Measured allocated (last step), reserved (the cell) and device total (its end)."""
    clean(device)
    torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    model = build(ARCHS, cfg, "network_g", device=device)
    lq = torch.rand(shape, device=device)
    if mode == "inference":
        model.eval()
        forward(model, lq)  # warm-up
        step = lambda: forward(model, lq)  # noqa: E731
    else:
        gt = torch.rand(shape, device=device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for _ in range(2):
            train_step(model, optimizer, lq, gt)
        optimizer.zero_grad(set_to_none=True)
        step = lambda: train_step(model, optimizer, lq, gt)  # noqa: E731
    torch.cuda.synchronize(device)
    reserved = torch.cuda.max_memory_reserved(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    free, total = torch.cuda.mem_get_info(device)
    return {"allocated": torch.cuda.max_memory_allocated(device),
            "reserved": max(reserved, torch.cuda.max_memory_reserved(device)),
            "device": total - free}


def estimate_cell(cfg: dict, shape: tuple, mode: str, calibration: Any) -> dict[str, Any]:
    """The estimator's figures for the cell on a CUDA target (a meta model: no memory)."""
    model = build(ARCHS, cfg, "network_g", device="meta")
    est = estimate_peak_memory(model, shape, mode, "AdamW", device="cuda",
                               calibration=calibration if calibration is not None else False)
    return {"tensors": est.total, "allocated": est.allocated, "reserved": est.reserved,
            "device": est.device_total}


def tiled_check(device: Any, calibration: Any) -> dict[str, Any]:
    """Tiled UNet inference under a reserved budget: measured max_memory_reserved vs it."""
    import numpy as np

    from llcv.inference import SAFETY, choose_tile, plan_overlap, tile_peak_bytes, \
        tiled_inference

    model = build(ARCHS, REFERENCE_MODELS["UNet"], "network_g", device=device).eval()
    overlap, _ = plan_overlap(model, None, 3, device)
    budget = int(tile_peak_bytes(model, TILED_TILE, TILED_TILE, 3, device, kind="reserved",
                                 calibration=calibration) / SAFETY) + 1
    tile = choose_tile(model, budget, overlap, TILED_IMAGE, 3, device, kind="reserved",
                       calibration=calibration)
    image = np.random.default_rng(0).random((*TILED_IMAGE, 3), dtype=np.float32)
    clean(device)
    torch.cuda.reset_peak_memory_stats(device)
    tiled_inference(model, image, tile, overlap, device=device, progress=False)
    torch.cuda.synchronize(device)
    measured = torch.cuda.max_memory_reserved(device)
    return {"budget": budget, "tile": tile, "overlap": overlap, "measured_reserved": measured,
            "within_budget": measured <= budget}


def section_calibration(args: argparse.Namespace, device: Any) -> Any:
    """The calibration to estimate with: the file given, none (dry run), or measured now."""
    if args.calibration:
        return load_calibration(args.calibration)
    if args.dry_run:
        return None
    path = os.path.join(args.out_dir, "calibration.json")
    os.makedirs(args.out_dir, exist_ok=True)
    calibration = calibrate(device, path)
    calibration.save(path)
    print(f"calibration measured: context {calibration.context_bytes / MB:.1f} MiB, cuBLAS "
          f"workspace {calibration.cublas_workspace_bytes / MB:.2f} MiB -> {path}")
    return calibration


def memory_section(args: argparse.Namespace, device: Any) -> tuple[str, dict]:
    """Estimated vs measured allocated / reserved / device total, then the tiled check."""
    calibration = section_calibration(args, device)
    rows = []
    for name in args.models.split(","):
        cfg = REFERENCE_MODELS[name]
        for shape in QUICK_SHAPES if args.quick else SHAPES:
            for mode in MODES:
                measured = {} if args.dry_run else measure_cell(cfg, shape, mode, device)
                rows.append(Row(name, shape, mode, estimate_cell(cfg, shape, mode, calibration),
                                measured))
    print("\n".join(format_table(rows)))
    figures = {"rows": [r._asdict() for r in rows], "worst": worst_errors(rows),
               "calibration": None if calibration is None else calibration.to_dict()}
    if args.dry_run:
        return f"memory dry run: {len(rows)} cells estimated, nothing measured", figures
    figures["tiled"] = tiled = tiled_check(device, calibration)
    print(f"tiled {TILED_IMAGE[1]}x{TILED_IMAGE[0]} under a reserved budget of "
          f"{tiled['budget'] / MB:.1f} MiB: tile {tiled['tile']}, max_memory_reserved "
          f"{tiled['measured_reserved'] / MB:.1f} MiB")
    worst = figures["worst"]
    summary = (f"memory reserved_worst_error = {worst['reserved']:.4f} (target <= {TARGET}), "
               f"allocated_worst_error = {worst['allocated']:.4f}, device_worst_error = "
               f"{worst['device']:.4f}, tiled_reserved_within_budget = "
               f"{'yes' if tiled['within_budget'] else 'NO'}")
    return summary, figures


# ---------------------------------------------------------------------- speed
SPEED_MODELS = {"UNet": {"type": "UNet", "widths": [32, 64, 128, 256], "blocks": [2, 2, 2, 2]},
                "NAFNet": {"type": "NAFNet", "width": 32, "enc_blk_nums": [1, 1, 1, 28],
                           "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1, 1]}}
SPEED_PATHS = {"fp32": {}, "bf16": {"amp": torch.bfloat16}, "channels_last": {"nhwc": True},
               "compile": {"compile": True}}
SPEED_BATCH, SPEED_SIZE, SPEED_ITERS, SPEED_WARMUP = 8, 256, 30, 10


def throughput(cfg: dict, path: dict, device: Any, batch: int, size: int, iters: int,
               warmup: int) -> float:
    """Training images per second of one network under one speed path (AdamW, L1)."""
    import time

    model = build(ARCHS, cfg, "network_g", device=device)
    fmt = torch.channels_last if path.get("nhwc") else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = torch.compile(model) if path.get("compile") else model
    lq = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    gt = torch.rand_like(lq)
    amp = path.get("amp")
    for i in range(warmup + iters):
        if i == warmup:
            torch.cuda.synchronize(device)
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=amp, enabled=amp is not None):
            loss = F.l1_loss(run(lq).float(), gt)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize(device)
    return iters * batch / (time.perf_counter() - start)


def throughput_section(args: argparse.Namespace, device: Any) -> tuple[str, dict]:
    """Training throughput (images/s) of UNet and NAFNet at 256^2: fp32, bf16, channels_last,
    torch.compile."""
    size, iters = (64, 3) if args.quick else (SPEED_SIZE, SPEED_ITERS)
    lines = [f"| model | {' | '.join(SPEED_PATHS)} |", "|---" * (len(SPEED_PATHS) + 1) + "|"]
    figures: dict[str, dict] = {}
    for name, cfg in SPEED_MODELS.items():
        figures[name] = {} if args.dry_run else {
            p: throughput(cfg, opts, device, SPEED_BATCH, size, iters, SPEED_WARMUP)
            for p, opts in SPEED_PATHS.items()}
        cells = [f"{figures[name][p]:.1f}" if p in figures[name] else "-" for p in SPEED_PATHS]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    print(f"training images/s, batch {SPEED_BATCH} at {size}x{size}:")
    print("\n".join(lines))
    if args.dry_run:
        return "throughput dry run: nothing measured", figures
    best = {n: max(f, key=f.get) for n, f in figures.items()}
    return "throughput fastest = " + ", ".join(f"{n}:{p}" for n, p in best.items()), figures


def overhead_section(args: argparse.Namespace, device: Any) -> tuple[str, dict]:
    """tools/bench_overhead.py on the CUDA device: bare loop vs Runner.train() with defaults."""
    import tempfile

    import bench_overhead

    bench = bench_overhead.parse_args(["--device", "cpu" if args.dry_run else str(device)] +
                                      (["--iters", "5", "--rounds", "1"] if args.quick else []))
    if args.dry_run:
        print(f"would compare on {', '.join(os.path.basename(d) for d in bench.demos)}: "
              f"{bench.rounds} x {bench.iters} iterations each")
        return "overhead dry run: nothing measured", {}
    with tempfile.TemporaryDirectory() as root:
        overheads = {os.path.basename(d): bench_overhead.compare(d, bench, root)
                     for d in bench.demos}
    return f"overhead llcv_overhead = {max(overheads.values()):.3f} (target <= 0.05)", overheads


SECTIONS: dict[str, Callable[[argparse.Namespace, Any], tuple[str, dict]]] = {
    "memory": memory_section,
    "overhead": overhead_section,
    "throughput": throughput_section,
}


def device_line(args: argparse.Namespace) -> tuple[Any, str]:
    """The device to measure on and a line describing it (refusing when there is none)."""
    from llcv.errors import LLCVError

    software = (f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
                f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else '-'}"
                f", PYTORCH_CUDA_ALLOC_CONF={os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '')!r}")
    if args.dry_run:
        return None, f"dry run (no measurement) for a CUDA target; {software}"
    if not torch.cuda.is_available():
        raise LLCVError("bench_gpu: no CUDA device here; use --dry-run to see the plan")
    device = torch.device(args.device)
    props = torch.cuda.get_device_properties(device)
    return device, (f"device {props.name} (capability {props.major}.{props.minor}, "
                    f"{props.total_memory / MB / 1024:.1f} GiB); {software}")


def main(argv: Optional[list[str]] = None) -> dict:
    """Run the chosen sections; returns their figures."""
    args = parse_args(argv)
    device, line = device_line(args)
    print(line)
    summaries, figures = [], {"device": line}
    for name in args.sections.split(","):
        print(f"\n== {name}")
        summary, figures[name] = SECTIONS[name](args, device)
        summaries.append(summary)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2, default=str)
    print(f"result: {'; '.join(summaries)}")
    return figures


if __name__ == "__main__":
    from llcv.cli import run_cli

    run_cli(main)
