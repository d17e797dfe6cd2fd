"""The crop figure of restoration papers: the same crop of LQ, each method's output and GT side by
side with PSNR per crop, one row per image, as one PNG.

    python tools/test.py -opt A.yml --save-img --save-lq-gt          # outputs (+ LQ, GT) as PNG
    python tools/compare_crops.py --method dense=results/a/visualization/val \\
        --method pruned=results/b/visualization/val --out crops.png
    python tools/compare_crops.py --lq DIR --gt DIR --method NAME=DIR ... --images 0001 0002 \\
        --size 96 --zoom 3 [--crop X Y]

Images are matched by file name. The crop is ``--crop X Y`` (top-left corner) or, per image,
where the methods' errors differ most (one method: where its error is largest). ``--lq``/``--gt``
default to the ``lq/`` and ``gt/`` folders tools/test.py writes beside the first method's outputs.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import DataError, OptionError  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--method", action="append", default=[], metavar="NAME=DIR",
                        required=True, help="a method's restored images; repeatable, in order")
    parser.add_argument("--lq", default=None, help="LQ folder (default: <first method>/lq)")
    parser.add_argument("--gt", default=None, help="GT folder (default: <first method>/gt)")
    parser.add_argument("--images", nargs="+", default=None,
                        help="image names (default: those all folders share, up to --max-images)")
    parser.add_argument("--max-images", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="crop side in pixels (default 64)")
    parser.add_argument("--zoom", type=int, default=3, help="enlargement (default 3)")
    parser.add_argument("--crop", nargs=2, type=int, default=None, metavar=("X", "Y"),
                        help="top-left corner of the crop (default: where methods differ most)")
    parser.add_argument("--out", default="crops.png", help="PNG to write (default crops.png)")
    return parser.parse_args(argv)


def method_dirs(items: list[str]) -> dict[str, str]:
    """``NAME=DIR`` arguments as an ordered mapping."""
    methods = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise OptionError(f"--method: expected NAME=DIR, got '{item}'")
        methods[name] = folder
    return methods


def main(argv: Optional[list[str]] = None) -> dict:
    """Write the figure; returns its path, shape and the crop and PSNRs of every image."""
    import cv2

    from llcv.analysis.crops import compose, crop_row, read_rgb
    from llcv.data.image_io import DiskBackend

    args = parse_args(argv)
    if args.size < 8 or args.zoom < 1 or args.max_images < 1:
        raise OptionError("--size/--zoom/--max-images: need size >= 8, zoom >= 1, max-images >= 1")
    methods = method_dirs(args.method)
    first = next(iter(methods.values()))
    folders = {"LQ": args.lq or os.path.join(first, "lq"),
               "GT": args.gt or os.path.join(first, "gt"), **methods}
    backends = {label: DiskBackend(path, "--method" if label in methods else f"--{label.lower()}")
                for label, path in folders.items()}
    shared = sorted(set.intersection(*(set(b.keys()) for b in backends.values())))
    names = args.images or shared[:args.max_images]
    missing = [(n, label) for n in names for label, b in backends.items() if n not in b.keys()]
    if not names or missing:
        where = f"'{missing[0][0]}' is not in {folders[missing[0][1]]}" if missing else \
            "the folders share no image name"
        raise DataError(f"--images: {where}; name images present in every folder")
    rows, crops = [], {}
    for name in names:
        img = {label: read_rgb(b.describe(name)) for label, b in backends.items()}
        panels, corner, psnrs = crop_row(
            name, img["LQ"], img["GT"], {m: img[m] for m in methods}, args.size, args.zoom,
            None if args.crop is None else (args.crop[1], args.crop[0]))
        rows.append(panels)
        crops[name] = {"x": corner[1], "y": corner[0], "psnr": psnrs}
        print(f"{name}: crop x={corner[1]} y={corner[0]} " +
              ", ".join(f"{k} {v:.2f} dB" for k, v in psnrs.items()))
    figure = compose(rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, figure[:, :, ::-1])
    print(f"wrote {args.out} ({figure.shape[1]}x{figure.shape[0]})")
    return {"path": args.out, "shape": figure.shape, "crops": crops}


if __name__ == "__main__":
    run_cli(main)
