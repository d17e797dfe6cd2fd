"""Plot tested networks on quality-vs-cost curves: one series per method, the Pareto front marked.

    python tools/pareto.py results/                       # every metrics.json below results/
    python tools/pareto.py results/a/metrics.json results/b/metrics.json --metric ssim \\
        --dataset SIDD_val --out figures/

Reads the metrics.json files of tools/test.py (a file's ``method`` is its series, ``label`` its
point). Writes ``pareto_<cost>.png`` for each cost — estimated and measured peak memory, latency
(the tiled large-image seconds when every point has them, else the median at the test size), MACs
and parameters — and ``points.md``, a Markdown table of all points (also printed).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import OptionError  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="metrics.json files or folders holding them")
    parser.add_argument("--metric", default="psnr", help="quality axis (default psnr)")
    parser.add_argument("--dataset", default=None, help="test set (default: the first one)")
    parser.add_argument("--out", default=os.path.join("results", "pareto"),
                        help="folder for the PNGs and points.md (default results/pareto)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict:
    """Write the plots and the table; returns ``{cost: {method: points drawn}}`` and the table."""
    from llcv.analysis.pareto import COSTS, load_points, markdown_table, plot_cost

    args = parse_args(argv)
    points, dataset = load_points(args.results, args.dataset)
    for p in points:
        if args.metric not in p.quality:
            raise OptionError(f"--metric: '{p.source}' has no '{args.metric}' for {dataset}; it "
                              f"has {', '.join(p.quality)}")
    os.makedirs(args.out, exist_ok=True)
    drawn = {}
    for cost in COSTS:
        path = os.path.join(args.out, f"pareto_{cost}.png")
        drawn[cost] = plot_cost(points, cost, args.metric, path, dataset)
        print(f"wrote {path}")
    metrics = list(dict.fromkeys(m for p in points for m in p.quality))
    table = markdown_table(points, metrics, args.metric)
    with open(os.path.join(args.out, "points.md"), "w", encoding="utf-8") as f:
        f.write(f"# {dataset}\n\n{table}\n")
    print(table)
    return {"drawn": drawn, "table": table, "dataset": dataset}


if __name__ == "__main__":
    run_cli(main)
