"""tools/test.py: the training run's own validation numbers, per-image rows, NAFNet's SIDD test
file, checkpoint-only testing, cost figures and clear errors."""
import csv
import glob
import json
import os

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from conftest import ROOT, load_tool, tiny_options
from llcv.data.lmdb_io import folder_to_lmdb
from llcv.data.loader import build_dataset, build_val_loader
from llcv.engine.dist import DistInfo
from llcv.engine.runner import Runner
from llcv.engine.validation import Validator
from llcv.errors import LLCVError, OptionError
from llcv.metrics import calculate_psnr, calculate_ssim
from llcv.network import load_network
from llcv.options import read_yaml, validate_options, validate_test_options
from llcv.registry import ARCHS, PRUNERS, build

FAST = ["--no-progress", "--runs", "2", "--warmup", "1"]


@pytest.fixture(scope="module")
def tool():
    return load_tool("test")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A finished tiny run with EMA weights (validated and saved as params_ema)."""
    tmp = tmp_path_factory.mktemp("demo")
    runner = Runner(validate_options(tiny_options(tmp, ema_decay=0.9)))
    runner.train()
    with open(os.path.join(runner.exp_dir, "metrics.jsonl")) as f:
        val = {r["iter"]: r for r in map(json.loads, f) if "val/psnr" in r}
    return runner.exp_dir, val, tmp


def test_demo_checkpoint_gives_the_runs_validation_numbers(tool, demo_run, tmp_path):
    exp, val, _ = demo_run
    result = tool.main(["-opt", os.path.join(exp, "options.yml"), "--checkpoint",
                        os.path.join(exp, "models", "net_g_3.pth"), "--results-root",
                        str(tmp_path), "--name", "at3", "--save-img", "--save-lq-gt", *FAST])
    d = result["datasets"]["val"]
    assert d["metrics"]["psnr"] == pytest.approx(val[3]["val/psnr"], abs=1e-6)
    assert d["metrics"]["ssim"] == pytest.approx(val[3]["val/ssim"], abs=1e-6)
    assert d["lq_metrics"]["lq_psnr"] == pytest.approx(val[3]["val/lq_psnr"], abs=1e-6)
    assert d["images"] == 2 and result["protocol"] == "uint8" and not result["pruned"]
    on_disk = json.load(open(tmp_path / "at3" / "metrics.json"))
    assert on_disk["datasets"]["val"]["metrics"] == d["metrics"]
    # per-image rows: independent BasicSR metrics on the saved PNGs, mean = the set's figure
    rows = list(csv.DictReader(open(tmp_path / "at3" / "val.csv")))
    assert [r["image"] for r in rows] == ["skimage_chelsea", "skimage_camera"]
    vis = tmp_path / "at3" / "visualization" / "val"
    for r in rows:
        out = cv2.imread(str(vis / f"{r['image']}.png"))
        gt = cv2.imread(str(vis / "gt" / f"{r['image']}.png"))
        lq = cv2.imread(str(vis / "lq" / f"{r['image']}.png"))
        assert float(r["psnr"]) == pytest.approx(calculate_psnr(out, gt, 0), abs=1e-9)
        assert float(r["ssim"]) == pytest.approx(calculate_ssim(out, gt, 0), abs=1e-9)
        assert float(r["lq_psnr"]) == pytest.approx(calculate_psnr(lq, gt, 0), abs=1e-9)
    assert np.mean([float(r["psnr"]) for r in rows]) == pytest.approx(d["metrics"]["psnr"])


def test_final_checkpoint_and_cost_figures(tool, demo_run, tmp_path):
    exp, val, _ = demo_run
    result = tool.main(["-opt", os.path.join(exp, "options.yml"), "--results-root",  # latest
                        str(tmp_path), "--memory-budget-mb", "4", "--tiled-mp", "0.04", *FAST])
    d = result["datasets"]["val"]
    assert d["metrics"]["psnr"] == pytest.approx(val[6]["val/psnr"], abs=1e-6)
    assert d["metrics"]["ssim"] == pytest.approx(val[6]["val/ssim"], abs=1e-6)
    model = build(ARCHS, tiny_options(tmp_path)["network_g"], "network_g")
    assert d["params"] == sum(p.numel() for p in model.parameters())
    assert d["input_shape"] == [1, 3, 48, 48]
    # MACs: output pixels x weights per output channel (transposed conv: per input pixel)
    counts = []

    def count(m, inputs, out):
        pixels = inputs[0] if isinstance(m, torch.nn.ConvTranspose2d) else out
        counts.append(pixels.numel() * m.weight[0].numel())

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        model(torch.zeros(1, 3, 48, 48))
    for h in hooks:
        h.remove()
    macs = sum(counts)
    assert d["macs"] == macs
    assert d["est_infer_peak_mb"] == pytest.approx(d["measured_peak_mb"], rel=0.1)
    assert d["latency"]["runs"] == 2 and d["latency"]["min_ms"] <= d["latency"]["median_ms"] > 0
    tiled = result["tiled"]
    assert tiled["height"] == tiled["width"] == 200 and tiled["tiles"] >= 1
    assert tiled["est_tile_peak_mb"] <= 0.9 * 4 and tiled["seconds"] > 0
    assert result["method"] == "dense" and result["name"] == "tiny"
    assert result["checkpoint"].endswith(os.path.join("tiny", "models", "net_g_latest.pth"))


NAFNET_SIDD_TEST = """\
# general settings
name: NAFNet-SIDD-width32-test
model_type: ImageRestorationModel
scale: 1
num_gpu: 1 # set num_gpu: 0 for cpu mode
manual_seed: 10

# dataset and data loader settings
datasets:

  val:
    name: SIDD_val
    type: PairedImageDataset

    dataroot_gt: {gt}
    dataroot_lq: {lq}

    io_backend:
      type: lmdb

# network structures
network_g:
  type: NAFNet
  width: 32
  enc_blk_nums: [2, 2, 4, 8]
  middle_blk_num: 12
  dec_blk_nums: [2, 2, 2, 2]

# path
path:
  pretrain_network_g: {weights}
  strict_load_g: true
  resume_state: ~

# validation settings
val:
  save_img: false
  grids: false
  use_image: false

  metrics:
    psnr: # metric name, can be arbitrary
      type: calculate_psnr
      crop_border: 0
      test_y_channel: false
    ssim:
      type: calculate_ssim
      crop_border: 0
      test_y_channel: false

# dist training settings
dist_params:
  backend: nccl
  port: 29500
"""
NAFNET32 = {"type": "NAFNet", "width": 32, "enc_blk_nums": [2, 2, 4, 8], "middle_blk_num": 12,
            "dec_blk_nums": [2, 2, 2, 2]}


def sidd_like_lmdbs(tmp_path):
    """Two 32x32 noisy/clean pairs of real photo crops, in BasicSR's PNG LMDB layout."""
    rng = np.random.default_rng(1)
    gt_dir, lq_dir = tmp_path / "gt", tmp_path / "lq"
    gt_dir.mkdir()
    lq_dir.mkdir()
    images = {}
    for i, photo in enumerate((skdata.astronaut(), skdata.coffee())):
        gt = np.ascontiguousarray(photo[100:132, 100:132])
        lq = np.clip(gt + rng.normal(0, 12, gt.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(gt_dir / f"{i}-{i}.png"), gt[:, :, ::-1])
        cv2.imwrite(str(lq_dir / f"{i}-{i}.png"), lq[:, :, ::-1])
        images[f"{i}-{i}"] = (lq, gt)
    for src, dst in ((gt_dir, "gt_crops.lmdb"), (lq_dir, "input_crops.lmdb")):
        folder_to_lmdb(str(src), str(tmp_path / dst), "png", workers=1, progress=False)
    return str(tmp_path / "gt_crops.lmdb"), str(tmp_path / "input_crops.lmdb"), images


def test_nafnet_sidd_test_file_runs_with_only_paths_changed(tool, tmp_path):
    gt, lq, images = sidd_like_lmdbs(tmp_path)
    torch.manual_seed(0)
    model = build(ARCHS, NAFNET32, "network_g")
    with torch.no_grad():  # published weights: zero-initialised block scales are trained
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.uniform_(-0.5, 0.5)
    weights = tmp_path / "NAFNet-SIDD-width32.pth"
    torch.save({"params": model.state_dict()}, weights)  # as published: no network spec
    opt = tmp_path / "NAFNet-width32.yml"
    opt.write_text(NAFNET_SIDD_TEST.format(gt=gt, lq=lq, weights=weights))
    result = tool.main(["-opt", str(opt), "--results-root", str(tmp_path / "results"),
                        "--device", "cpu", "--runs", "1", "--warmup", "0", "--no-progress"])
    d = result["datasets"]["SIDD_val"]
    assert result["protocol"] == "float" and d["images"] == 2
    assert d["params"] == 29_159_715 and d["input_shape"] == [1, 3, 32, 32]
    # reference: the SIDD tables' protocol by hand — clamp, float metrics, no quantisation
    psnrs = []
    model.eval()
    for lq_img, gt_img in images.values():
        x = torch.from_numpy(lq_img.transpose(2, 0, 1).astype(np.float32) / 255)[None]
        with torch.no_grad():
            out = model(x).clamp(0, 1)[0].double().numpy().transpose(1, 2, 0)
        mse = np.mean((out - gt_img.astype(np.float64) / 255) ** 2)
        psnrs.append(10 * np.log10(1.0 / mse))
    assert d["metrics"]["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-6)
    assert os.path.isfile(tmp_path / "results" / "NAFNet-SIDD-width32-test" / "SIDD_val.csv")


def test_checkpoint_alone_with_folder_dataset(tool, demo_run, photo_pairs, tmp_path):
    exp, _, tmp = demo_run
    gt_dir, lq_dir = photo_pairs
    ckpt = os.path.join(exp, "models", "net_g_latest.pth")
    result = tool.main(["--checkpoint", ckpt, "--dataset", str(gt_dir), str(lq_dir), "photos",
                        "--metrics", "psnr", "--test-y-channel", "--crop-border", "2",
                        "--results-root", str(tmp_path), *FAST])
    assert result["name"] == "tiny_net_g_latest"
    model = build(ARCHS, tiny_options(tmp)["network_g"], "network_g")
    model.load_state_dict(torch.load(ckpt, weights_only=True)["params_ema"])
    model.eval()
    psnrs = []
    for name in ("astro", "coffee", "rocket"):
        lq = cv2.imread(str(lq_dir / f"{name}.png"))[:, :, ::-1]
        gt = cv2.imread(str(gt_dir / f"{name}.png"))
        x = torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1)) / 255.0).float()[None]
        with torch.no_grad():
            out = model(x)[0].clamp(0, 1).numpy().transpose(1, 2, 0)[:, :, ::-1]
        out = np.round(out * 255.0).astype(np.uint8)
        psnrs.append(calculate_psnr(out, gt, 2, test_y_channel=True))
    d = result["datasets"]["photos"]
    assert list(d["metrics"]) == ["psnr"]
    assert d["metrics"]["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-6)


def test_errors_name_the_key_or_argument(tool, demo_run, tmp_path):
    exp, _, _ = demo_run
    with pytest.raises(OptionError, match="-opt: give a test option file, or --checkpoint"):
        tool.main(["--checkpoint", "x.pth"])
    test_file = tmp_path / "t.yml"
    test_file.write_text("name: t\nnetwork_g: {type: UNet}\ndatasets:\n  train: {type: X}\n")
    with pytest.raises(OptionError, match="datasets.train: a test file's dataset phases"):
        tool.main(["-opt", str(test_file)])
    test_file.write_text("name: t\nnetwork_g: {type: UNet}\ndatasets:\n  test_1:\n"
                         "    type: PairedImageDataset\n    dataroot_gt: a\n    dataroot_lq: b\n")
    with pytest.raises(OptionError, match="val.metrics: missing"):
        tool.main(["-opt", str(test_file)])
    test_file.write_text(test_file.read_text() + "val:\n  metrics:\n"
                         "    psnr: {type: calculate_psnr, crop_border: 0}\n")
    with pytest.raises(OptionError, match="path.pretrain_network_g: .* names no weights"):
        tool.main(["-opt", str(test_file)])
    with pytest.raises(OptionError, match="--metrics: 'lpips' is not one of psnr, ssim"):
        tool.main(["--checkpoint", os.path.join(exp, "models", "net_g_latest.pth"),
                   "--dataset", "a", "b", "--metrics", "lpips"])
    with pytest.raises(LLCVError, match="dataroot_gt: folder 'a' does not exist"):
        tool.main(["-opt", str(test_file), "--checkpoint",
                   os.path.join(exp, "models", "net_g_latest.pth"), "--no-progress",
                   "--results-root", str(tmp_path / "results")])
    assert not os.path.exists(tmp_path / "results")  # nothing written before the data check


TEST_FILES = sorted(glob.glob(os.path.join(ROOT, "options", "test_*.yml")))


@pytest.mark.parametrize("path", TEST_FILES, ids=os.path.basename)
def test_shipped_test_files_validate_and_build(path):
    opt = validate_test_options(read_yaml(path))
    assert opt["val"]["metrics"] and any(p.startswith(("test", "val")) for p in opt["datasets"])
    assert sum(p.numel() for p in build(ARCHS, opt["network_g"], "network_g",
                                        device="meta").parameters()) > 0


def test_demo_test_file_runs_on_a_demo_checkpoint(tool, demo_run, tmp_path):
    exp, _, _ = demo_run
    result = tool.main(["-opt", os.path.join(ROOT, "options", "test_unet_demo.yml"),
                        "--checkpoint", os.path.join(exp, "models", "net_g_latest.pth"),
                        "--set", "datasets.test_1.crop_val=32", "datasets.test_2.crop_val=32",
                        "--results-root", str(tmp_path), *FAST])
    assert list(result["datasets"]) == ["demo_val", "demo_heldout"]
    assert all(d["images"] == 4 and d["input_shape"] == [1, 3, 32, 32]
               for d in result["datasets"].values())
    assert result["network"]["network_g"]["widths"] == [4, 8]  # the checkpoint's own spec


def test_pruned_checkpoint_rebuilds_and_matches_the_validator(tool, demo_run, tmp_path):
    """A pruned checkpoint (weights + spec with a plan) is tested on its pruned network, with
    the numbers the training loop's Validator gives that network."""
    exp, _, _ = demo_run
    model, spec, _ = load_network(os.path.join(exp, "models", "net_g_latest.pth"))
    result = build(PRUNERS, {"type": "UniformPruner", "target": {"channel_ratio": 0.5}},
                   "prune").prune(model, spec)
    pruned = result.apply(model).eval()
    ckpt = tmp_path / "pruned.pth"
    torch.save({"params": pruned.state_dict(), "network": result.spec}, ckpt)
    out = tool.main(["-opt", os.path.join(exp, "options.yml"), "--checkpoint", str(ckpt),
                     "--results-root", str(tmp_path), *FAST])
    assert out["pruned"] and out["method"] == "pruned" and out["network"] == result.spec
    assert out["params"] == sum(p.numel() for p in pruned.parameters()) < \
        sum(p.numel() for p in model.parameters())
    opt = validate_options(read_yaml(os.path.join(exp, "options.yml")))
    section = opt["datasets"]["val"]
    loader = build_val_loader(build_dataset(section, "val"), section, torch.device("cpu"))
    reference = Validator("val", loader, opt["val"]["metrics"], "uint8", DistInfo(),
                          torch.device("cpu")).run(pruned, show_progress=False)
    for name in ("psnr", "ssim"):
        assert out["datasets"]["val"]["metrics"][name] == pytest.approx(reference[f"val/{name}"],
                                                                        abs=1e-6)
