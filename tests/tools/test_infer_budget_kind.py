"""tools/infer.py --memory-budget-kind: accepted, reported; on CPU the figure stays the tensors'."""
import os
import re

import cv2
import numpy as np
import pytest
import torch

from conftest import load_tool
from llcv.registry import ARCHS, build

NET = {"type": "UNet", "in_ch": 3, "widths": [4, 8], "blocks": [1, 1]}


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "net.pth"
    torch.save({"params": build(ARCHS, NET, "network_g").state_dict(), "network_g": NET}, path)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (40, 36, 3), np.uint8))
    return str(path), str(image), str(tmp_path / "out")


def test_budget_kind_on_cpu_is_the_tensors_peak(checkpoint, capsys):
    tool = load_tool("infer")
    ckpt, image, out = checkpoint
    args = ["--checkpoint", ckpt, "--input", image, "--output", out, "--memory-budget-mb", "4",
            "--no-progress", "--device", "cpu"]
    tool.main(args + ["--memory-budget-kind", "reserved"])
    reserved = capsys.readouterr().out
    tool.main(args)
    default = capsys.readouterr().out
    figure = r"tile \d+ overlap \d+, estimated peak [0-9.]+ MiB \(tensors\)"
    assert re.findall(figure, reserved) == re.findall(figure, default) != []
    assert os.path.exists(os.path.join(out, "a.png"))
    with pytest.raises(SystemExit):
        tool.parse_args(args + ["--memory-budget-kind", "cached"])
