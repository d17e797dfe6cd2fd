"""Cut the images of a folder into overlapping sub-images (PNG), e.g. before create_lmdb.py.

    python tools/extract_subimages.py --input datasets/DIV2K/train_HR --output datasets/DIV2K/train_HR_sub \\
        --crop-size 480 --step 240 --thresh-size 0
    SIDD (done for you by tools/prepare_sidd.py): --crop-size 512 --step 384

Sub-images are named <name>_s<NNN>.png, row by row. Along each side a window starts every
--step pixels; when more than --thresh-size pixels would stay uncovered at the end, one more
window is placed flush with the end. Images smaller than --crop-size are skipped (and listed).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from llcv.data.parallel import default_workers

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--input", required=True, help="folder of images (not recursive)")
    parser.add_argument("--output", required=True, help="folder for the sub-images")
    parser.add_argument("--crop-size", type=int, default=512, help="sub-image side (default 512)")
    parser.add_argument("--step", type=int, default=384, help="window stride (default 384)")
    parser.add_argument("--thresh-size", type=int, default=0,
                        help="uncovered border tolerated before adding a window flush with the "
                             "end (default 0)")
    parser.add_argument("--compress-level", type=int, default=3, help="PNG compression 0-9")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="processes (default: CPU count, max 8)")
    parser.add_argument("--force", action="store_true",
                        help="replace the PNGs of an existing output folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from llcv.data.subimages import extract_subimages

    args = parse_args(argv)
    result = extract_subimages(args.input, args.output, args.crop_size, args.step,
                               args.thresh_size, args.compress_level, args.workers, args.force)
    print(f"wrote {result['crops']} sub-images of {result['images']} images to {args.output}")
    if result["skipped"]:
        print(f"skipped {len(result['skipped'])} images smaller than {args.crop_size}: "
              f"{', '.join(result['skipped'][:10])}{' ...' if len(result['skipped']) > 10 else ''}")
    return result


if __name__ == "__main__":
    run_cli(main)
