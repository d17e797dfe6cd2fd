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
