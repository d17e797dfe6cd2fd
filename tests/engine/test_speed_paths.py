"""Speed paths chosen in the option file train on CPU: bf16 autocast (and its memory estimate
against the allocator), fp16 with a gradient scaler that resumes exactly, channels_last, and
torch.compile."""
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_options
from llcv.engine.runner import Runner
from llcv.memory import estimate_peak_memory, measure_peak
from llcv.options import validate_options
from llcv.registry import ARCHS, build


def run(tmp_path, name, **train):
    opt = tiny_options(tmp_path, total_iter=4, **train)
    opt["name"] = name
    opt["logger"]["save_checkpoint_freq"] = 2
    runner = Runner(validate_options(opt))
    runner.train()
    return runner


def finite_losses(runner):
    import json
    with open(os.path.join(runner.exp_dir, "metrics.jsonl")) as f:
        values = [r["train/l_pix"] for r in map(json.loads, f) if "train/l_pix" in r]
    return values and all(torch.isfinite(torch.tensor(values)))


@pytest.mark.parametrize("train", [{"amp": "bf16"}, {"channels_last": True},
                                   {"compile": {"backend": "aot_eager"}}],
                         ids=["bf16", "channels_last", "compile"])
def test_speed_path_trains_the_demo(tmp_path, train):
    from torch._dynamo.utils import counters

    from conftest import ROOT
    from llcv.options import load_options
    from test_option_files import demo_overrides

    demo = os.path.join(ROOT, "options", "train_unet_demo.yml")
    sets = [f"train.{key}={value}" for key, value in train.items()]
    counters.clear()
    runner = Runner(load_options(demo, demo_overrides(tmp_path, demo) + ["device=cpu", *sets]))
    runner.train()
    assert finite_losses(runner)
    first = next(runner.model.parameters())
    if train.get("channels_last"):
        assert runner.model.encoders[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    if "compile" in train:
        assert runner.state.train_model is not runner.model  # the compiled wrapper
        assert counters["frames"]["ok"] > 0  # and the network really was compiled
    assert first.dtype == torch.float32  # master weights stay fp32 under autocast


def test_fp16_scaler_state_resumes(tmp_path):
    straight = run(tmp_path, "fp16", amp="fp16")
    state = torch.load(os.path.join(straight.exp_dir, "training_states", "2.state"),
                       weights_only=True)
    assert "scaler" in state["step"] and state["step"]["scaler"]["scale"] > 0
    opt = tiny_options(tmp_path, total_iter=4, amp="fp16")
    opt["name"] = "fp16"
    opt["logger"]["save_checkpoint_freq"] = 2
    opt["path"]["resume_state"] = os.path.join(straight.exp_dir, "training_states", "2.state")
    resumed = Runner(validate_options(opt))
    resumed.train()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_bf16_training_estimate_is_within_ten_percent_of_the_allocator():
    torch.manual_seed(0)
    model = build(ARCHS, {"type": "UNet", "widths": [16, 32], "blocks": [1, 1]}, "network_g")
    shape = (4, 3, 64, 64)
    estimate = estimate_peak_memory(model, shape, "train", "AdamW", amp="bf16").total
    optimizer = torch.optim.AdamW(model.parameters(), foreach=False)
    x, target = torch.rand(shape), torch.rand(shape)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.l1_loss(model(x), target)
        loss.backward()
        optimizer.step()

    step()  # the optimizer state exists from here on, as in the estimate's steady state
    optimizer.zero_grad(set_to_none=True)
    measured = measure_peak(step, "cpu", resident=[model, optimizer, x, target])
    assert abs(estimate / measured - 1) < 0.10, (estimate, measured)
