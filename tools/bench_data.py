"""Benchmark training-sample loading: BasicSR-style LMDB loading vs llcv's raw LMDB path.

Both read the same pairs (default 40 GT/noisy pairs of 512x512, like SIDD's sub-images, made from
photos bundled with scikit-image plus seeded noise), take a 256 crop with random flips and
rotations and return RGB CHW float32 tensors, in one process with one thread (as a DataLoader
worker runs). BasicSR-style, written here after BasicSR 1.4.2's PairedImageDataset: PNG values
from LMDB, decode the whole image, convert it to float, crop, flip with OpenCV, BGR->RGB, tensor.
llcv: PairedImageDataset on raw LMDB values, whose crops read only the pixels kept. The paths
take turns for several rounds and the best round of each counts, so background load hits both.

    python tools/bench_data.py                  # about half a minute
    python tools/bench_data.py --pairs 10 --rounds 1
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from typing import Any, Callable

import cv2
import lmdb
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.data.lmdb_io import folder_to_lmdb  # noqa: E402
from llcv.data.paired_image_dataset import PairedImageDataset  # noqa: E402
from llcv.data.sampler import SampleKey  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def make_pairs(folder: str, count: int, size: int, seed: int) -> tuple[str, str]:
    """``count`` GT/noisy PNG pairs of ``size`` px: photo crops (resized up if needed) + noise."""
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [np.ascontiguousarray(getattr(data, name)()[..., 2::-1]) for name in PHOTOS]  # BGR
    gt_dir, lq_dir = os.path.join(folder, "gt"), os.path.join(folder, "lq")
    os.makedirs(gt_dir)
    os.makedirs(lq_dir)
    for i in range(count):
        photo = photos[i % len(photos)]
        scale = max(size / min(photo.shape[:2]), 1.0) * rng.uniform(1.0, 1.5)
        photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        top = int(rng.integers(photo.shape[0] - size + 1))
        left = int(rng.integers(photo.shape[1] - size + 1))
        gt = photo[top:top + size, left:left + size]
        noise = rng.normal(0.0, rng.uniform(5.0, 30.0), gt.shape)
        cv2.imwrite(os.path.join(gt_dir, f"{i:04d}.png"), gt)
        cv2.imwrite(os.path.join(lq_dir, f"{i:04d}.png"), np.clip(gt + noise, 0, 255).astype(np.uint8))
    return gt_dir, lq_dir


class BasicSRStyleLoader:
    """BasicSR 1.4.2's LMDB training path, re-implemented for the comparison (not its code)."""

    def __init__(self, gt_db: str, lq_db: str, gt_size: int) -> None:
        with open(os.path.join(gt_db, "meta_info.txt")) as f:
            self.keys = sorted(line.split(".")[0] for line in f)
        self.paths, self.envs = (gt_db, lq_db), None
        self.gt_size = gt_size

    def _bytes(self, env: lmdb.Environment, key: str) -> bytes:
        with env.begin(write=False) as txn:
            return txn.get(key.encode("ascii"))

    def _decode_float(self, buf: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR).astype(np.float32) / 255.0

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.envs is None:  # opened lazily, as in each worker
            self.envs = [lmdb.open(p, readonly=True, lock=False, readahead=False, meminit=False)
                         for p in self.paths]
        key = self.keys[index % len(self.keys)]
        gt = self._decode_float(self._bytes(self.envs[0], key))
        lq = self._decode_float(self._bytes(self.envs[1], key))
        size = self.gt_size
        top = random.randint(0, lq.shape[0] - size)
        left = random.randint(0, lq.shape[1] - size)
        gt, lq = gt[top:top + size, left:left + size], lq[top:top + size, left:left + size]
        hflip, rot = random.random() < 0.5, True
        vflip, rot90 = rot and random.random() < 0.5, rot and random.random() < 0.5
        out = []
        for img in (gt, lq):
            if hflip:
                img = cv2.flip(img, 1)
            if vflip:
                img = cv2.flip(img, 0)
            if rot90:
                img = img.transpose(1, 0, 2)
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            out.append(torch.from_numpy(img.transpose(2, 0, 1)).float())
        return {"gt": out[0], "lq": out[1], "gt_path": key, "lq_path": key}


def by_key(dataset: PairedImageDataset, pairs: int) -> Callable[[int], Any]:
    """Sample ``i`` of llcv's training stream: image ``i mod pairs`` with its own seed."""
    return lambda i: dataset[SampleKey(i % pairs, i)]


def build_lmdbs(folder: str, args: argparse.Namespace) -> dict[str, list[str]]:
    """The pairs as PNG folders, then as LMDBs in both value formats: {format: [gt, lq]}."""
    gt_dir, lq_dir = make_pairs(folder, args.pairs, args.size, seed=0)
    dbs = {}
    for fmt in ("png", "raw"):
        dbs[fmt] = [os.path.join(folder, f"{side}_{fmt}.lmdb") for side in ("gt", "lq")]
        for source, db in zip((gt_dir, lq_dir), dbs[fmt]):
            folder_to_lmdb(source, db, fmt, compress_level=1, progress=False)
    # The baseline opens its own environments: py-lmdb allows one per database and process.
    dbs["basicsr"] = [shutil.copytree(db, db.replace("_png.lmdb", "_basicsr.lmdb")) for db in dbs["png"]]
    return dbs


def measure(dbs: dict[str, list[str]], args: argparse.Namespace) -> dict[str, float]:
    """Best samples/s of each path over ``args.rounds`` rounds in which they take turns."""
    crop = {"gt_size": args.gt_size, "use_hflip": True, "use_rot": True}
    lmdb_opt = {"type": "lmdb"}
    png = PairedImageDataset(*dbs["png"], "train", io_backend=lmdb_opt, **crop)
    raw = PairedImageDataset(*dbs["raw"], "train", io_backend=lmdb_opt, **crop)
    runs = {  # name: (sample getter, samples per round)
        "BasicSR-style: PNG values in LMDB, decode whole, float, crop":
            (BasicSRStyleLoader(*dbs["basicsr"], args.gt_size).__getitem__, args.samples),
        "llcv, BasicSR-format LMDB: decode whole, crop, float kept pixels":
            (by_key(png, args.pairs), args.samples),
        "llcv, raw LMDB: crop-aware reads, no decoding": (by_key(raw, args.pairs), 6 * args.samples),
    }
    best = dict.fromkeys(runs, 0.0)
    for _ in range(args.rounds):
        for name, (get, samples) in runs.items():
            start = time.perf_counter()
            for i in range(samples):
                get(i)
            best[name] = max(best[name], samples / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--gt-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=150, help="BasicSR-style samples per round")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    random.seed(0)
    with tempfile.TemporaryDirectory(prefix="llcv_bench_data_") as tmp:
        best = measure(build_lmdbs(tmp, args), args)
    print(f"data loading: {args.pairs} pairs of {args.size}x{args.size}, crop {args.gt_size}, "
          f"flips+rotations, 1 process, 1 thread, best of {args.rounds} rounds")
    for name, value in best.items():
        print(f"  {name:<66s} {value:8.1f} samples/s")
    basicsr, *_, llcv = best.values()
    speedup = llcv / basicsr
    print(f"result: data_speedup = {speedup:.1f} (target >= 5)")
    return speedup


if __name__ == "__main__":
    main()
