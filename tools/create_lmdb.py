"""Pack a folder of images into an LMDB that llcv (and, in png format, BasicSR) reads.

    python tools/create_lmdb.py --input datasets/DIV2K/train_HR_sub --output datasets/DIV2K/train_HR_sub.lmdb
    python tools/create_lmdb.py --input FOLDER --output OUT.lmdb --format png --compress-level 1

Keys are the file names without extension (ASCII, no dots or spaces); meta_info.txt lists them.
--format raw (default) stores uncompressed pixels: larger, but training crops skip decoding.
--format png is BasicSR's layout (PNG values, `name.png (h,w,c) level` meta lines).
An existing output is replaced only with --force.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from llcv.data.lmdb_io import FORMATS
    from llcv.data.parallel import default_workers

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--input", required=True, help="folder of images (not recursive)")
    parser.add_argument("--output", required=True, help="LMDB folder to write, ending in .lmdb")
    parser.add_argument("--format", choices=FORMATS, default="raw",
                        help="value format: raw pixels (fastest to read) or png (BasicSR)")
    parser.add_argument("--compress-level", type=int, default=1,
                        help="PNG compression 0-9 for --format png (default 1, as BasicSR)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="processes decoding/encoding images (default: CPU count, max 8)")
    parser.add_argument("--force", action="store_true", help="replace an existing output LMDB")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from llcv.data.lmdb_io import folder_to_lmdb

    args = parse_args(argv)
    count = folder_to_lmdb(args.input, args.output, args.format, args.compress_level,
                           args.workers, args.force)
    print(f"wrote {count} images to {args.output} ({args.format} values)")
    return count


if __name__ == "__main__":
    run_cli(main)
