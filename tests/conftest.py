"""Shared fixtures: tiny option sets and image folders, so end-to-end tests run in seconds on CPU."""
from __future__ import annotations

import copy
import importlib.util
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml
from skimage import data as skdata

from llcv.engine.hooks import Hook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny tensors gain nothing from a second thread, and on a busy machine a team of threads waiting
# for each other makes steps many times slower; the same holds for the processes tests start.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"


def tiny_options(tmp_path, **train_overrides) -> dict:
    """A complete, small run: bundled photos + camera noise, 3-level UNet of width 4."""
    opt = {
        "name": "tiny",
        "manual_seed": 3,
        "path": {"experiments_root": str(tmp_path / "experiments")},
        "datasets": {
            "train": {"type": "SyntheticPairedDataset", "builtin_images": ["astronaut", "coffee"],
                      "degradation": {"type": "PoissonGaussianNoise"}, "gt_size": 32,
                      "use_hflip": True, "use_rot": True, "batch_size_per_gpu": 2,
                      "num_worker_per_gpu": 0, "dataset_enlarge_ratio": 4},
            "val": {"type": "SyntheticPairedDataset", "builtin_images": ["chelsea", "camera"],
                    "degradation": {"type": "PoissonGaussianNoise"}, "crop_val": 48},
        },
        "network_g": {"type": "UNet", "in_ch": 3, "widths": [4, 8], "blocks": [1, 1]},
        "train": {"total_iter": 6, "optim_g": {"type": "Adam", "lr": 1e-3},
                  "scheduler": {"type": "CosineAnnealingLR", "T_max": 6, "eta_min": 1e-5},
                  "pixel_opt": {"type": "L1Loss"}, **train_overrides},
        "val": {"val_freq": 3, "metrics": {
            "psnr": {"type": "calculate_psnr", "crop_border": 0},
            "ssim": {"type": "calculate_ssim", "crop_border": 0}}},
        "logger": {"print_freq": 2, "save_checkpoint_freq": 3, "use_tb_logger": True},
    }
    return copy.deepcopy(opt)


class StopAt(Hook):
    """Sends this process SIGTERM during iteration ``k``, as a scheduler or the user would
    (after every other hook of that iteration)."""

    priority = 95

    def __init__(self, k):
        self.k = k

    def after_train_iter(self, runner, it, batch, record):
        if it == self.k:
            os.kill(os.getpid(), signal.SIGTERM)


def dihedral(img):
    """The 8 flips/rotations of an HWC array, as produced by hflip, vflip and transpose."""
    out = []
    for h in (False, True):
        for v in (False, True):
            for t in (False, True):
                x = img[:, ::-1] if h else img
                x = x[::-1] if v else x
                out.append(x.transpose(1, 0, 2) if t else x)
    return out


def load_tool(name: str):
    """The script ``tools/<name>.py`` as a module, so tests call its ``main`` in-process."""
    spec = importlib.util.spec_from_file_location(f"{name}_tool", os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_ranks(command: list[str], nproc: int) -> list[subprocess.Popen]:
    """Start ``nproc`` processes of ``command`` with torchrun's environment variables."""
    from llcv.engine.dist import free_port

    port, procs = free_port(), []
    for rank in range(nproc):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def communicate_all(procs, timeout):
    """Outputs of every process; on a hang, kill them all and fail showing what they printed."""
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        outs = [p.communicate() for p in procs]
        pytest.fail(f"ranks still running after {timeout}s: {outs}")


def finish(procs, timeout=180):
    """Outputs of every process, after checking each exited with 0."""
    outs = communicate_all(procs, timeout)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
    return outs


def run_two_ranks(tmp_path, opt: dict, script: str, timeout: int = 180) -> list[str]:
    """Run the Python ``script`` (``sys.argv[1]`` is the option file of ``opt``) as two gloo ranks
    with torchrun's environment; their stdouts, after checking both exited with 0."""
    path = tmp_path / "two_ranks.py"
    path.write_text(f"import sys\nsys.path.insert(0, {ROOT!r})\n{script}")
    options = write_yaml(tmp_path / "two_ranks.yml", opt)
    return [out for out, _ in finish(start_ranks([sys.executable, str(path), options], 2),
                                     timeout)]


def write_yaml(path, opt: dict) -> str:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return str(path)


@pytest.fixture
def photo_pairs(tmp_path):
    """GT/LQ folders of three real-photo crops (LQ = GT + fixed noise), as PNG files."""
    gt_dir, lq_dir = tmp_path / "gt", tmp_path / "lq"
    gt_dir.mkdir()
    lq_dir.mkdir()
    rng = np.random.default_rng(0)
    photos = {"astro": skdata.astronaut(), "coffee": skdata.coffee(), "rocket": skdata.rocket()}
    for name, img in photos.items():
        crop = np.ascontiguousarray(img[:40, :48, ::-1])  # BGR for cv2
        noisy = np.clip(crop + rng.normal(0, 10, crop.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(gt_dir / f"{name}.png"), crop)
        cv2.imwrite(str(lq_dir / f"{name}.png"), noisy)
    return gt_dir, lq_dir
