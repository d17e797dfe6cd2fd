"""Tools that loop over files go on past a bad one and name every failure at the end, with a
non-zero exit (tools/infer.py on a folder, tools/make_lr.py)."""
import os

import cv2
import numpy as np
import pytest

from conftest import load_tool
from llcv.cli import run_cli
from llcv.errors import DataError
from llcv.network import build_network, network_spec
from llcv.serialization import atomic_save

NET = {"type": "UNet", "in_ch": 3, "widths": [4, 8], "blocks": [1, 1]}


@pytest.fixture
def folder(tmp_path):
    """Four small RGB images, two of them broken (a truncated PNG, a text file)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        cv2.imwrite(str(inputs / f"{name}.png"), rng.integers(0, 256, (24, 28, 3), np.uint8))
    data = (inputs / "b.png").read_bytes()
    (inputs / "b.png").write_bytes(data[: len(data) // 3])
    (inputs / "d.png").write_text("not an image")
    return inputs


def test_infer_restores_the_good_images_and_names_the_bad(folder, tmp_path, monkeypatch, capsys):
    spec = network_spec(NET)
    ckpt = str(tmp_path / "net.pth")
    atomic_save({"params": build_network(spec).state_dict(), "network": spec}, ckpt)
    out = tmp_path / "out"
    argv = ["infer.py", "--checkpoint", ckpt, "--input", str(folder), "--output", str(out),
            "--tile", "16", "--no-progress"]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_:
        run_cli(load_tool("infer").main)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("error: 2 of 4 input image(s) failed (the other 2 were written)")
    assert "b.png" in err[0] and "d.png" in err[0]
    assert sorted(os.listdir(out)) == ["a.png", "c.png"]


def test_make_lr_writes_the_good_images_and_names_the_bad(folder, tmp_path):
    with pytest.raises(DataError, match=r"^2 of 4 image\(s\) failed \(the other 2 were "
                                        r"written\): cannot decode image '.*b.png'.*d.png"):
        load_tool("make_lr").main(["--input", str(folder), "--output", str(tmp_path / "lr"),
                                   "--scale", "2", "--workers", "1"])
    assert sorted(os.listdir(tmp_path / "lr")) == ["a.png", "c.png"]
    assert cv2.imread(str(tmp_path / "lr" / "a.png")).shape == (12, 14, 3)
