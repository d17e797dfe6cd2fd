"""tools/infer.py: checkpoint in, restored PNGs out (8/16 bit, RGB order), budgets, clear errors."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, load_tool
from llcv.errors import DataError, LLCVError
from llcv.registry import ARCHS, build

TOOL = os.path.join(ROOT, "tools", "infer.py")
NET = {"type": "UNet", "in_ch": 3, "widths": [4, 8], "blocks": [1, 1]}


@pytest.fixture(scope="module")
def tool():
    return load_tool("infer")


@pytest.fixture
def setup(tmp_path):
    """Option file, checkpoint (params + EMA weights + network_g), one 8-bit and one 16-bit RGB."""
    torch.manual_seed(0)
    model, ema = build(ARCHS, NET, "network_g"), build(ARCHS, NET, "network_g")
    opt = tmp_path / "opt.yml"
    opt.write_text(yaml.safe_dump({"name": "t", "network_g": {**NET, "widths": [16, 32]}}))
    ckpt = tmp_path / "net_g_latest.pth"
    torch.save({"params": model.state_dict(), "params_ema": ema.state_dict(),
                "network_g": NET}, ckpt)
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (30, 26, 3), dtype=np.uint16)
    cv2.imwrite(str(inputs / "a.png"), rgb8[:, :, ::-1])
    cv2.imwrite(str(inputs / "b.png"), rgb16[:, :, ::-1])
    return {"opt": str(opt), "ckpt": str(ckpt), "in": str(inputs), "out": str(tmp_path / "out"),
            "ema": ema.eval(), "rgb8": rgb8, "rgb16": rgb16}


def reference(model, rgb, top):
    with torch.no_grad():
        x = torch.from_numpy(rgb.astype(np.float32).transpose(2, 0, 1) / top)[None]
        y = model(x)[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(y * top), 0, top)


def test_folder_with_tiles_matches_whole_image_in_rgb_order(tool, setup):
    written = tool.main(["-opt", setup["opt"], "--checkpoint", setup["ckpt"], "--input",
                         setup["in"], "--output", setup["out"], "--tile", "24", "--no-progress"])
    assert [os.path.basename(p) for p in written] == ["a.png", "b.png"]
    out8 = cv2.imread(written[0], cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    out16 = cv2.imread(written[1], cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert out8.dtype == np.uint8 and out16.dtype == np.uint16
    # the stored network_g and the EMA weights are used, the option file's widths ignored
    assert np.abs(out8.astype(float) - reference(setup["ema"], setup["rgb8"], 255)).max() <= 1
    assert np.abs(out16.astype(float) - reference(setup["ema"], setup["rgb16"], 65535)).max() <= 2


def test_memory_budget_and_bit_depth(tool, setup, capsys):
    image = os.path.join(setup["in"], "a.png")
    written = tool.main(["-opt", setup["opt"], "--checkpoint", setup["ckpt"], "--input", image,
                         "--output", setup["out"], "--memory-budget-mb", "4", "--bit-depth",
                         "16", "--param-key", "params", "--no-progress"])
    assert cv2.imread(written[0], cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert "estimated peak" in capsys.readouterr().out
    with pytest.raises(LLCVError, match="--memory-budget-mb: .* needs at least"):
        tool.main(["-opt", setup["opt"], "--checkpoint", setup["ckpt"], "--input", image,
                   "--output", setup["out"], "--memory-budget-mb", "0.01", "--no-progress"])


def test_plain_state_dict_uses_the_option_file(tool, setup, tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save(setup["ema"].state_dict(), plain)
    opt = tmp_path / "small.yml"
    opt.write_text(yaml.safe_dump({"name": "t", "network_g": NET}))
    written = tool.main(["-opt", str(opt), "--checkpoint", str(plain), "--input", setup["in"],
                         "--output", setup["out"], "--tile", "24", "--no-progress"])
    assert len(written) == 2
    with pytest.raises(LLCVError, match="--checkpoint: .* does not fit network_g"):
        tool.main(["-opt", setup["opt"], "--checkpoint", str(plain), "--input", setup["in"],
                   "--output", setup["out"], "--no-progress"])


def test_gray_image_for_a_colour_network_is_refused(tool, setup, tmp_path):
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="1 channel.*takes 3"):
        tool.main(["-opt", setup["opt"], "--checkpoint", setup["ckpt"], "--input", str(gray),
                   "--output", setup["out"], "--no-progress"])


def test_cli_error_is_one_line_and_exit_code_2(setup):
    proc = subprocess.run([sys.executable, TOOL, "-opt", setup["opt"], "--checkpoint",
                           setup["ckpt"], "--input", "/no/such/dir", "--output", setup["out"]],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --input: '/no/such/dir' does not exist; give an "
                                   "image or a folder")
