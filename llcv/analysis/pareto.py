"""Quality-vs-cost plots of tested networks: one series per method, the Pareto front marked.

A *point* is one ``metrics.json`` of ``tools/test.py`` on one of its test sets: a quality metric
(PSNR, SSIM, ...) and its costs — estimated and measured inference peak memory, latency (the
tiled large-image seconds when every point has them, else the median at the test resolution),
MACs and parameters. The front holds the points no other point beats on both axes (lower cost,
higher quality; equal on both counts as not beaten).
"""
from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from llcv.analysis.profile import si
from llcv.errors import DataError, OptionError

COSTS: dict[str, tuple[str, Callable[[Mapping[str, Any]], Optional[float]]]] = {
    "est_peak": ("estimated peak memory (MiB)", lambda d: d.get("est_infer_peak_mb")),
    "measured_peak": ("measured peak memory (MiB)", lambda d: d.get("measured_peak_mb")),
    "latency": ("latency (ms)", lambda d: (d.get("latency") or {}).get("median_ms")),
    "macs": ("MACs (G)", lambda d: None if d.get("macs") is None else d["macs"] / 1e9),
    "params": ("parameters (M)",
               lambda d: None if d.get("params") is None else d["params"] / 1e6),
}


@dataclass
class Point:
    """One tested network on one test set."""

    method: str
    label: str
    source: str
    quality: dict[str, float]
    costs: dict[str, Optional[float]] = field(default_factory=dict)
    tiled_seconds: Optional[float] = None


def result_files(paths: Sequence[str]) -> list[str]:
    """``metrics.json`` files: those given, and those found under given folders (sorted)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, "**", "metrics.json"), recursive=True))
            if not found:
                raise DataError(f"RESULTS: folder '{path}' holds no metrics.json; make them with "
                                f"tools/test.py")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise DataError(f"RESULTS: '{path}' does not exist")
    return files


def load_points(paths: Sequence[str], dataset: Optional[str] = None) -> tuple[list[Point], str]:
    """The points of ``dataset`` (default: the first file's first set) in the result files."""
    points = []
    for path in result_files(paths):
        try:
            with open(path, encoding="utf-8") as f:
                result = json.load(f)
            sets = result["datasets"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"RESULTS: '{path}' is not a metrics.json of tools/test.py "
                            f"({type(err).__name__}: {err})") from None
        dataset = dataset or next(iter(sets), None)
        if dataset not in sets:
            raise OptionError(f"--dataset: '{path}' has no set '{dataset}'; it has "
                              f"{', '.join(sets) or 'none'}")
        d = sets[dataset]
        points.append(Point(result.get("method", "dense"), result.get("label") or result["name"],
                            path, dict(d["metrics"]), {k: get(d) for k, (_, get) in COSTS.items()},
                            (result.get("tiled") or {}).get("seconds")))
    return points, dataset


def cost_axis(points: Sequence[Point], cost: str) -> tuple[str, list[Optional[float]]]:
    """Axis label and x values of ``cost``; latency is the tiled run's when all points have one."""
    if cost == "latency" and points and all(p.tiled_seconds is not None for p in points):
        return "tiled large-image latency (s)", [p.tiled_seconds for p in points]
    return COSTS[cost][0], [p.costs.get(cost) for p in points]


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
    """For each point, whether no other point has lower-or-equal x and higher-or-equal y with
    one of them strictly better."""
    front = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        beaten = any(xo <= x and yo >= y and (xo < x or yo > y)
                     for j, (xo, yo) in enumerate(zip(xs, ys)) if j != i)
        front.append(not beaten)
    return front


def plot_cost(points: Sequence[Point], cost: str, metric: str, path: str,
              title: str = "") -> dict[str, int]:
    """Write the ``metric``-vs-``cost`` PNG (``title``: e.g. the test set); returns the number
    of points drawn per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xlabel, xs = cost_axis(points, cost)
    usable = [(p, x) for p, x in zip(points, xs) if x is not None and metric in p.quality]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    drawn = {}
    for method in dict.fromkeys(p.method for p, _ in usable):
        series = sorted(((x, p.quality[metric], p.label) for p, x in usable if p.method == method))
        art = ax.scatter([s[0] for s in series], [s[1] for s in series], label=method, zorder=3)
        ax.plot([s[0] for s in series], [s[1] for s in series], alpha=0.5,
                color=art.get_facecolor()[0])
        for x, y, label in series:
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        drawn[method] = len(art.get_offsets())
    on_front = pareto_front([x for _, x in usable], [p.quality[metric] for p, _ in usable])
    front = sorted((x, p.quality[metric]) for (p, x), f in zip(usable, on_front) if f)
    if front:
        ax.step([f[0] for f in front], [f[1] for f in front], where="post", color="black",
                linestyle="--", linewidth=1, label="Pareto front", zorder=2)
    xs_used = [x for _, x in usable]
    if xs_used and min(xs_used) > 0 and max(xs_used) / min(xs_used) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(f"{title}: {metric} vs {xlabel}" if title else f"{metric} vs {xlabel}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return drawn


def markdown_table(points: Sequence[Point], metrics: Sequence[str], front_metric: str) -> str:
    """All points, best ``front_metric`` first, with the cost axes each one is on the front of."""
    fronts = {}
    for cost in COSTS:
        _, xs = cost_axis(points, cost)
        idx = [i for i, x in enumerate(xs) if x is not None]
        flags = pareto_front([xs[i] for i in idx], [points[i].quality[front_metric] for i in idx])
        fronts[cost] = {i for i, f in zip(idx, flags) if f}
    header = ["method", "label", *metrics, "params", "MACs", "est. peak MiB", "meas. peak MiB",
              "latency ms", "tiled s", "on front of"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = sorted(range(len(points)), key=lambda i: -points[i].quality[front_metric])
    for i in order:
        p, c = points[i], points[i].costs
        cells = [p.method, p.label, *(_num(p.quality.get(m), 4) for m in metrics),
                 _si(c["params"], 1e6), _si(c["macs"], 1e9), _num(c["est_peak"], 2),
                 _num(c["measured_peak"], 2), _num(c["latency"], 2), _num(p.tiled_seconds, 2),
                 ", ".join(k for k in COSTS if i in fronts[k]) or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(value: Optional[float], digits: int) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _si(value: Optional[float], scale: float) -> str:
    return "-" if value is None else si(value * scale)
