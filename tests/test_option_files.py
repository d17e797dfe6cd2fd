"""The shipped option files: each validates and builds its network; each demo trains on CPU."""
import glob
import json
import math
import os

import pytest
import torch

from conftest import ROOT
from llcv.engine.runner import Runner
from llcv.network import load_network
from llcv.options import load_options, read_yaml
from llcv.registry import ARCHS, MODELS, build

# test_*.yml are test option files (no train section): tests/tools/test_test_tool.py checks them
OPTION_FILES = sorted(p for p in glob.glob(os.path.join(ROOT, "options", "*.yml"))
                      if not os.path.basename(p).startswith("test_"))
DEMO_FILES = [p for p in OPTION_FILES if p.endswith("_demo.yml")]


def file_id(path: str) -> str:
    return os.path.basename(path)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_option_folder_has_recipes_and_demos():
    names = {file_id(p) for p in OPTION_FILES}
    assert {"train_nafnet_sidd.yml", "train_restormer_sidd.yml",
            "train_dncnn_gray_sigma25.yml"} <= names
    assert {"train_unet_demo.yml", "train_nafnet_demo.yml", "train_restormer_demo.yml",
            "train_dncnn_demo.yml", "train_rep_demo.yml"} <= {file_id(p) for p in DEMO_FILES}


@pytest.mark.parametrize("path", OPTION_FILES, ids=file_id)
def test_option_file_validates_and_builds(path):
    """Checked as ``tools/train.py`` checks it; the network (on meta device) and the training
    step with its losses build."""
    opt = load_options(path)
    model = build(ARCHS, opt["network_g"], "network_g", device="meta")
    assert count_params(model) > 0
    step = build(MODELS, {"type": opt["model_type"]}, "model_type", opt=opt,
                 device=torch.device("cpu"))
    assert step.losses


# Published sizes: NAFNet-SIDD-width32 29,159,715 (NAFNet paper/code). Restormer's default is
# 26,126,644; its denoising models use the bias-free LayerNorm, which drops 2 LayerNorms x their
# channels per transformer block: 2 x (4*48 + 6*96 + 6*192 + 8*384 + 6*192 + 6*96 + 4*96 + 4*96).
@pytest.mark.parametrize("name, expected", [
    ("train_nafnet_sidd.yml", 29_159_715),
    ("train_restormer_sidd.yml", 26_126_644 - 2 * (4 * 48 + 6 * 96 + 6 * 192 + 8 * 384
                                                    + 6 * 192 + 6 * 96 + 4 * 96 + 4 * 96)),
])
def test_sidd_recipes_build_the_published_models(name, expected):
    opt = load_options(os.path.join(ROOT, "options", name))
    assert count_params(build(ARCHS, opt["network_g"], "network_g", device="meta")) == expected


def test_nafnet_sidd_recipe_keeps_global_batch_32_on_8_gpus():
    opt = load_options(os.path.join(ROOT, "options", "train_nafnet_sidd.yml"))
    train = opt["train"]
    assert opt["datasets"]["train"]["batch_size_per_gpu"] * 8 == 32
    assert opt["datasets"]["train"]["gt_size"] == 256 and opt["val"]["protocol"] == "float"
    assert train["optim_g"] == {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.0,
                                "betas": [0.9, 0.9]}
    assert train["scheduler"] == {"type": "CosineAnnealingLR", "T_max": 200000, "eta_min": 1e-7}
    assert train["total_iter"] == 200000 and train["pixel_opt"]["type"] == "PSNRLoss"


@pytest.mark.parametrize("path", DEMO_FILES, ids=file_id)
def test_demo_needs_no_download_and_stays_small(path):
    """A demo runs anywhere: bundled photos only, small crops, a few thousand iterations at most
    (the pruning demo's whole story, train -> prune -> fine-tune, about 10 minutes)."""
    opt = load_options(path)
    assert all("builtin_images" in section for section in opt["datasets"].values())
    most = 8000 if "prune" in opt else 5000
    assert opt["datasets"]["train"]["gt_size"] <= 64 and opt["train"]["total_iter"] <= most


def demo_overrides(tmp_path, path) -> list[str]:
    """Shrink a demo to three iterations on tiny crops, validated and saved at the end (a
    pruning demo prunes at its first two; a DCPT demo pre-trains at them)."""
    overrides = ["train.total_iter=3", "val.val_freq=3", "logger.print_freq=1",
                 "logger.save_checkpoint_freq=3", "logger.use_tb_logger=false",
                 "datasets.train.gt_size=32", "datasets.train.batch_size_per_gpu=2",
                 "datasets.val.crop_val=32", f"path.experiments_root={tmp_path}"]
    raw = read_yaml(path)
    if "dcpt" in raw["train"]:  # DCPT pre-trains at the first two iterations, fine-tunes at the last
        overrides += ["train.dcpt.iters=2", "train.scheduler.periods=[2, 1]"]
    prune = raw.get("prune")
    if prune:
        overrides.append("prune.schedule=[1, 2]")
    if prune and isinstance(prune.get("importance"), dict):  # a Taylor window of one step
        overrides.append("prune.importance.iterations=1")
    return overrides


@pytest.mark.parametrize("path", DEMO_FILES, ids=file_id)
def test_demo_trains_on_cpu(tmp_path, path):
    opt = load_options(path, demo_overrides(tmp_path, path) + ["device=cpu"])
    runner = Runner(opt)
    runner.train()
    rebuilt, spec, _ = load_network(os.path.join(runner.exp_dir, "models", "net_g_3.pth"))
    if "prune" in opt:  # pruned at the first two iterations: the spec carries the plan
        assert spec["plan"] is not None and spec["network_g"]["type"] == opt["network_g"]["type"]
    else:
        assert spec == {"network_g": opt["network_g"], "plan": None}
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(),
                                                 runner.model.state_dict().values()))
    with open(os.path.join(runner.exp_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    losses = [v for r in records for k, v in r.items() if k.startswith("train/l_")]
    assert len(losses) >= 3 and all(math.isfinite(v) for v in losses)
    psnr = [r["val/psnr"] for r in records if "val/psnr" in r]
    assert len(psnr) == 1 and math.isfinite(psnr[0])
