"""tools/prune_model.py: a trained checkpoint pruned offline into a file that describes its
network, which tools/infer.py and tools/profile_model.py load with no option file."""
import json
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import load_tool
from llcv.cli import run_cli
from llcv.errors import LLCVError, OptionError
from llcv.network import apply_plan, load_network, network_spec
from llcv.registry import ARCHS, build
from llcv.serialization import load_checkpoint

NET = {"type": "UNet", "in_ch": 3, "widths": [8, 16], "blocks": [1, 1]}


@pytest.fixture(scope="module")
def tool():
    return load_tool("prune_model")


@pytest.fixture
def ckpt(tmp_path):
    """A checkpoint with params, EMA weights and the network spec."""
    torch.manual_seed(0)
    model, ema = build(ARCHS, NET, "network_g"), build(ARCHS, NET, "network_g")
    path = tmp_path / "net_g_latest.pth"
    torch.save({"params": model.state_dict(), "params_ema": ema.state_dict(),
                "network": network_spec(NET)}, path)
    return {"path": str(path), "model": model.eval(), "ema": ema.eval(), "dir": tmp_path}


def outputs(model, x):
    with torch.no_grad():
        return model(x)


def test_ratio_prunes_params_and_ema_with_one_plan(tool, ckpt):
    out = str(ckpt["dir"] / "pruned.pth")
    report = tool.main(["--checkpoint", ckpt["path"], "--ratio", "0.5", "--round-to", "2",
                        "--output", out, "--json", str(ckpt["dir"] / "r.json")])
    saved = load_checkpoint(out, "out")
    assert set(saved) == {"params", "params_ema", "network"}
    plan = saved["network"]["plan"]
    assert saved["network"]["network_g"] == NET and plan["keep"]
    ema, spec, _ = load_network(out, param_key="params_ema")
    model, _, _ = load_network(out, param_key="params")
    assert spec == saved["network"]
    x = torch.rand(1, 3, 13, 11)
    for pruned, dense in ((model, ckpt["model"]), (ema, ckpt["ema"])):
        torch.testing.assert_close(outputs(pruned, x),
                                   outputs(apply_plan(dense, plan).eval(), x), rtol=0, atol=0)
    assert report["after"]["params"] == sum(p.numel() for p in model.parameters())
    assert json.load(open(ckpt["dir"] / "r.json"))["output"] == out


def test_memory_budget_with_compactors_then_profile_and_infer_from_the_file(tool, ckpt):
    out = str(ckpt["dir"] / "small.pth")
    report = tool.main(["--checkpoint", ckpt["path"], "--pruner", "MemoryAwarePruner",
                        "--compactors", "--peak-memory-mb", "0.25", "--input-shape", "1", "3",
                        "32", "32", "--output", out])
    assert report["after"]["est_infer_peak_bytes"] <= 0.25 * 2 ** 20
    profile = load_tool("profile_model").main(["--checkpoint", out, "--input-shape", "1", "3",
                                               "32", "32", "--json", str(ckpt["dir"] / "p.json"),
                                               "--no-layers"])
    assert profile["params"] == report["after"]["params"]
    assert profile["est_infer_peak_bytes"] == report["after"]["est_infer_peak_bytes"]
    assert profile["network"]["network_g"]["skip_compactors"] is True
    image = ckpt["dir"] / "in.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (21, 19, 3), np.uint8))
    written = load_tool("infer").main(["--checkpoint", out, "--input", str(image),
                                       "--output", str(ckpt["dir"] / "res"), "--no-progress"])
    assert cv2.imread(written[0]).shape == (21, 19, 3)


def test_bare_state_dict_with_option_file_and_its_prune_section(tool, ckpt):
    bare = ckpt["dir"] / "bare.pth"
    torch.save(ckpt["model"].state_dict(), bare)
    opt = ckpt["dir"] / "opt.yml"
    opt.write_text(yaml.safe_dump({"network_g": NET, "prune": {
        "type": "UniformPruner", "schedule": [10, 20], "target": {"params_ratio": 0.5},
        "round_to": 2}}))
    out = str(ckpt["dir"] / "u.pth")
    report = tool.main(["-opt", str(opt), "--checkpoint", str(bare), "--output", out])
    assert report["pruner"] == "UniformPruner"
    assert report["after"]["params"] <= 0.5 * report["before"]["params"]
    assert set(load_checkpoint(out, "out")) == {"params", "network"}


def test_errors_are_one_line(tool, ckpt, monkeypatch, capsys):
    out = str(ckpt["dir"] / "x.pth")
    with pytest.raises(OptionError, match="--ratio or --peak-memory-mb"):
        tool.main(["--checkpoint", ckpt["path"], "--output", out])
    with pytest.raises(OptionError, match="--input-shape: a --peak-memory-mb budget needs"):
        tool.main(["--checkpoint", ckpt["path"], "--peak-memory-mb", "1", "--output", out])
    monkeypatch.setattr(sys, "argv", ["prune_model.py", "--checkpoint", ckpt["path"],
                                      "--peak-memory-mb", "0.001", "--input-shape", "1", "3",
                                      "64", "64", "--output", out])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tool.main)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and not (ckpt["dir"] / "x.pth").exists()
    assert err.startswith("error: target.peak_memory_mb: peak 0.00 MiB at 1x3x64x64")
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(LLCVError, match="taylor has no gradients"):
        tool.main(["--checkpoint", ckpt["path"], "--ratio", "0.5", "--importance", "taylor",
                   "--output", out])
