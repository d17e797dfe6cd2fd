"""Super-resolution end to end: every upscaling arch trains at scale 2 and 4 with validation
(LQ-vs-GT reference on the bicubic-upsampled LQ), memory estimated against the GT-sized target,
and a weights file that tiled inference restores at the right size."""
import json
import os

import numpy as np
import pytest
import torch

from archs.test_all_archs import TINY
from conftest import tiny_options
from llcv.degradations.bicubic_degradation import imresize_pt
from llcv.engine.runner import Runner
from llcv.inference import tiled_inference
from llcv.metrics.psnr_ssim_metric import calculate_psnr_pt
from llcv.network import load_network
from llcv.options import validate_options

UPSCALERS = sorted(name for name, spec in TINY.items() if spec[3] > 1)


def sr_options(tmp_path, name, scale):
    """A 3-iteration RGB SR run of ``name`` at ``scale`` on the bundled photos (LR by bicubic)."""
    network = dict(TINY[name][0])
    network["scale" if "scale" in network else "upscale"] = scale
    network.update({k: 3 for k in ("num_in_ch", "num_out_ch") if k in network})  # RGB photos
    opt = tiny_options(tmp_path, total_iter=3)
    degradation = {"type": "BicubicDownsample", "scale": scale}
    for phase in ("train", "val"):
        opt["datasets"][phase]["degradation"] = degradation
    opt["datasets"]["train"]["gt_size"] = 16
    opt["datasets"]["val"]["crop_val"] = 24
    opt["network_g"] = {"type": name, **network}
    opt["name"] = f"{name}_x{scale}"
    opt["val"]["val_freq"] = 3
    opt["val"]["metrics"] = {"psnr": {"type": "calculate_psnr", "crop_border": scale,
                                      "test_y_channel": True}}
    return validate_options(opt)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("name", UPSCALERS)
def test_upscaler_trains_validates_and_restores(tmp_path, name, scale):
    opt = sr_options(tmp_path, name, scale)
    runner = Runner(opt)
    runner.train()
    records = [json.loads(line) for line in open(os.path.join(runner.exp_dir, "metrics.jsonl"))]
    train = [r for r in records if "train/l_pix" in r]
    assert train and all(np.isfinite(r["train/l_pix"]) for r in train)
    est = runner.hook("MemoryHook").estimates.estimates["train"]  # the loss target is GT-sized
    assert any(t.name == "target" and t.shape == [2, 3, 16, 16] for t in est.live_at_peak)
    val = [r for r in records if "val/psnr" in r][-1]
    assert np.isfinite(val["val/psnr"])

    # the reference is the bicubic-upsampled LQ, as SR papers report it
    expected = []
    for sample in runner.validators[0].loader.dataset:
        lq, gt = sample["lq"][None], sample["gt"][None]
        assert lq.shape[-1] * scale == gt.shape[-1]
        bicubic = imresize_pt(lq.double(), size=gt.shape[-2:]).float().clamp(0, 1)
        expected.append(calculate_psnr_pt(torch.round(bicubic * 255) / 255,
                                          torch.round(gt * 255) / 255, crop_border=scale,
                                          test_y_channel=True).item())
    reference = next(r for r in records if "val/lq_psnr" in r)["val/lq_psnr"]
    assert reference == pytest.approx(float(np.mean(expected)), abs=1e-6)

    model, spec, _ = load_network(os.path.join(runner.exp_dir, "models", "net_g_latest.pth"))
    assert spec["network_g"] == opt["network_g"]
    image = np.random.default_rng(0).random((19, 23, 3)).astype(np.float32)
    out = tiled_inference(model, image, tile=12 * model.size_multiple, overlap=2, progress=False)
    assert out.shape == (19 * scale, 23 * scale, 3)


def test_test_tool_on_an_sr_checkpoint_gives_the_runs_numbers_and_takes_folders(tmp_path):
    """tools/test.py: the run's own validation figures (the bicubic reference included) from its
    option file, and the network's scale found from the checkpoint alone for GT/LQ folders."""
    import cv2

    from conftest import load_tool
    from llcv.engine.validation import tensor_to_uint8_rgb

    runner = Runner(sr_options(tmp_path, "EDSR", 2))
    runner.train()
    val = [json.loads(line) for line in open(os.path.join(runner.exp_dir, "metrics.jsonl"))]
    val = next(r for r in val if "val/lq_psnr" in r)
    tool, fast = load_tool("test"), ["--runs", "1", "--warmup", "0", "--no-progress"]
    result = tool.main(["-opt", os.path.join(runner.exp_dir, "options.yml"), "--results-root",
                        str(tmp_path / "results"), *fast])
    d = result["datasets"]["val"]
    assert d["metrics"]["psnr"] == pytest.approx(val["val/psnr"], abs=1e-6)
    assert d["lq_metrics"]["lq_psnr"] == pytest.approx(val["val/lq_psnr"], abs=1e-6)

    folders = {kind: tmp_path / kind for kind in ("gt", "lq")}
    for i, sample in enumerate(runner.validators[0].loader.dataset):
        for kind, folder in folders.items():
            folder.mkdir(exist_ok=True)
            rgb = tensor_to_uint8_rgb(sample[kind])
            cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    weights = os.path.join(runner.exp_dir, "models", "net_g_latest.pth")
    alone = tool.main(["--checkpoint", weights, "--dataset", str(folders["gt"]),
                       str(folders["lq"]), "pairs", "--metrics", "psnr", "--test-y-channel",
                       "--crop-border", "2", "--results-root", str(tmp_path / "results"), *fast])
    d = alone["datasets"]["pairs"]  # x2 found from the network; the reference on 8-bit files:
    expected = []
    for i in range(2):
        lq, gt = (torch.from_numpy(cv2.imread(str(folders[k] / f"{i}.png"))[:, :, ::-1].copy())
                  .permute(2, 0, 1)[None].double() / 255 for k in ("lq", "gt"))
        bicubic = imresize_pt(lq, size=gt.shape[-2:]).clamp(0, 1)
        expected.append(calculate_psnr_pt(torch.round(bicubic * 255) / 255, gt, crop_border=2,
                                          test_y_channel=True).item())
    assert d["images"] == 2
    assert d["lq_metrics"]["lq_psnr"] == pytest.approx(float(np.mean(expected)), abs=1e-6)
    assert d["metrics"]["psnr"] == pytest.approx(val["val/psnr"], abs=0.01)  # 8-bit LQ


@pytest.mark.parametrize("name", UPSCALERS)
def test_training_estimates_take_the_upscaled_target_by_default(tmp_path, name):
    """profile_model, width multipliers and pruner targets estimate an SR training step
    against a target of the output's size without being told it."""
    from llcv.memory import estimate_peak_memory
    from llcv.pruners.width import largest_multiplier
    from llcv.registry import ARCHS, build

    network_g = sr_options(tmp_path, name, 2)["network_g"]
    model = build(ARCHS, network_g, "network_g")
    est = estimate_peak_memory(model, [1, 3, 16, 16], "train")
    assert any(t.name == "target" and t.shape == [1, 3, 32, 32] for t in est.live_at_peak)
    budget = est.total / 2 ** 20
    choice = largest_multiplier(network_g, budget, [1, 3, 16, 16], "train", round_to=1)
    assert choice.peak_bytes <= est.total
