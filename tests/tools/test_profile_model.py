"""tools/profile_model.py: option file in, figures (and JSON) out; checkpoints; clear errors."""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import ROOT, load_tool
from llcv.errors import LLCVError, OptionError
from llcv.registry import ARCHS, build

TOOL = os.path.join(ROOT, "tools", "profile_model.py")
NET = {"type": "NAFNet", "width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1,
       "dec_blk_nums": [1, 1]}


@pytest.fixture(scope="module")
def tool():
    return load_tool("profile_model")


def write_options(path, network_g):
    path.write_text(yaml.safe_dump({"name": "profile_test", "network_g": network_g}))
    return str(path)


def test_figures_and_json(tool, tmp_path, capsys):
    opt = write_options(tmp_path / "opt.yml", NET)
    out = tmp_path / "profile.json"
    figures = tool.main(["-opt", opt, "--input-shape", "1", "3", "20", "18", "--json", str(out)])
    model = build(ARCHS, NET, "network_g")
    assert figures["params"] == sum(p.numel() for p in model.parameters())
    assert figures["flops"] == 2 * figures["macs"] > 0
    assert figures["macs"] == sum(layer["macs"] for layer in figures["layers"])
    intro = next(layer for layer in figures["layers"] if layer["name"] == "intro")
    assert intro["output_shape"] == [1, 8, 20, 20]  # padded to the multiple of 4
    assert intro["macs"] == 8 * 20 * 20 * 3 * 9
    assert json.loads(out.read_text()) == figures
    printed = capsys.readouterr().out
    assert "intro" in printed and f"params: {figures['params']:,}" in printed


def test_set_override_and_meta_device(tool, tmp_path):
    opt = write_options(tmp_path / "opt.yml", NET)
    figures = tool.main(["-opt", opt, "--set", "network_g.width=16", "--device", "meta",
                         "--no-layers", "--input-shape", "1", "3", "64", "64"])
    assert figures["network_g"]["width"] == 16
    assert figures["params"] == sum(
        p.numel() for p in build(ARCHS, {**NET, "width": 16}, "network_g").parameters())


def test_checkpoint_is_loaded_and_its_network_g_wins(tool, tmp_path, capsys):
    stored = {**NET, "width": 4}
    model = build(ARCHS, stored, "network_g")
    ckpt = tmp_path / "net_g_latest.pth"
    torch.save({"params": model.state_dict(), "network_g": stored}, ckpt)
    opt = write_options(tmp_path / "opt.yml", NET)
    figures = tool.main(["-opt", opt, "--checkpoint", str(ckpt), "--no-layers",
                         "--input-shape", "1", "3", "8", "8"])
    assert figures["network_g"] == stored
    assert figures["params"] == sum(p.numel() for p in model.parameters())
    assert "network_g stored in" in capsys.readouterr().out


def test_plain_state_dict_that_does_not_fit_is_refused(tool, tmp_path):
    ckpt = tmp_path / "plain.pth"
    torch.save(build(ARCHS, {**NET, "width": 4}, "network_g").state_dict(), ckpt)
    opt = write_options(tmp_path / "opt.yml", NET)
    with pytest.raises(LLCVError, match=r"--checkpoint: .* does not fit network_g"):
        tool.main(["-opt", opt, "--checkpoint", str(ckpt), "--input-shape", "1", "3", "8", "8"])


def test_bad_network_option_is_named(tool, tmp_path):
    opt = write_options(tmp_path / "opt.yml", {**NET, "widht": 3})
    with pytest.raises(OptionError, match=r"network_g\.widht"):
        tool.main(["-opt", opt])


def test_cli_error_is_one_line_and_exit_code_2(tmp_path):
    opt = tmp_path / "opt.yml"
    opt.write_text("name: nothing\n")
    proc = subprocess.run([sys.executable, TOOL, "-opt", str(opt)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: network_g: missing")
    assert "Traceback" not in proc.stderr
