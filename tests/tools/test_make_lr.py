"""tools/make_lr.py: LR files equal MATLAB-style imresize of the HR, crops, names, refusals."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, load_tool
from llcv.data.image_io import DiskBackend
from llcv.degradations.bicubic_degradation import imresize
from llcv.errors import DataError, OptionError


def hr_folder(path, shapes, dtype=np.uint8, seed=0):
    path.mkdir()
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    for name, shape in shapes.items():
        assert cv2.imwrite(str(path / name), rng.integers(0, top + 1, shape, dtype=dtype))
    return path


def run(tmp_path, *args):
    return load_tool("make_lr").main(["--input", str(tmp_path / "hr"), "--output",
                                      str(tmp_path / "lr"), "--workers", "1", *args])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lr_images_are_the_bicubic_resize_of_the_hr(tmp_path, scale, capsys):
    hr_folder(tmp_path / "hr", {"a.png": (24, 36, 3), "b.png": (12, 48)})
    result = run(tmp_path, "--scale", str(scale))
    assert result == {"images": 2, "cropped": []}
    assert f"wrote 2 LR x{scale} images" in capsys.readouterr().out
    for name in ("a", "b"):
        hr = cv2.imread(str(tmp_path / "hr" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        lr = cv2.imread(str(tmp_path / "lr" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale) + hr.shape[2:]
        np.testing.assert_array_equal(lr, imresize(hr, 1 / scale))


def test_sixteen_bit_images_stay_sixteen_bit(tmp_path):
    hr_folder(tmp_path / "hr", {"deep.png": (16, 16, 3)}, dtype=np.uint16)
    run(tmp_path, "--scale", "4", "--suffix", "x4")
    lr = cv2.imread(str(tmp_path / "lr" / "deepx4.png"), cv2.IMREAD_UNCHANGED)
    hr = cv2.imread(str(tmp_path / "hr" / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert lr.dtype == np.uint16 and np.array_equal(lr, imresize(hr, 0.25))


def test_sizes_not_a_multiple_need_hr_output_and_are_mod_cropped(tmp_path, capsys):
    hr_folder(tmp_path / "hr", {"odd.png": (26, 35, 3), "even.png": (24, 36, 3)})
    with pytest.raises(DataError, match=r"odd.png' \(26x35\) is not a multiple of 4: .* "
                                        r"pass --hr-output DIR"):
        run(tmp_path, "--scale", "4")
    assert not (tmp_path / "lr").exists()  # refused before writing anything
    result = run(tmp_path, "--scale", "4", "--hr-output", str(tmp_path / "gt"))
    assert result["cropped"] == ["odd"]
    assert "(1 cropped to a multiple of 4)" in capsys.readouterr().out
    hr = cv2.imread(str(tmp_path / "hr" / "odd.png"))
    gt = cv2.imread(str(tmp_path / "gt" / "odd.png"))
    lr = cv2.imread(str(tmp_path / "lr" / "odd.png"))
    np.testing.assert_array_equal(gt, hr[:24, :32])  # bottom/right cut, top-left kept
    np.testing.assert_array_equal(lr, imresize(gt, 0.25))
    # the two folders pair up name by name, GT = LR x 4
    lrs, gts = DiskBackend(str(tmp_path / "lr"), "lq"), DiskBackend(str(tmp_path / "gt"), "gt")
    assert lrs.keys() == gts.keys() == ["even", "odd"]


def test_refusals_name_the_problem(tmp_path):
    hr_folder(tmp_path / "hr", {"a.png": (8, 8, 3)})
    with pytest.raises(OptionError, match=r"^scale: expected an integer >= 2, got 1"):
        run(tmp_path, "--scale", "1")
    with pytest.raises(OptionError, match=r"^output: .* is the input folder"):
        load_tool("make_lr").main(["--input", str(tmp_path / "hr"), "--output",
                                   str(tmp_path / "hr"), "--scale", "2"])
    with pytest.raises(OptionError, match=r"^hr_output: .* is also the LR output folder"):
        run(tmp_path, "--scale", "2", "--hr-output", str(tmp_path / "lr"))
    run(tmp_path, "--scale", "2")
    with pytest.raises(OptionError, match=r"^output: folder .* is not empty; pass --force"):
        run(tmp_path, "--scale", "2")
    assert run(tmp_path, "--scale", "2", "--force")["images"] == 1
    hr_folder(tmp_path / "tiny", {"t.png": (3, 8, 3)})
    with pytest.raises(DataError, match=r"t.png' is 3x8, smaller than the scale 4"):
        load_tool("make_lr").main(["--input", str(tmp_path / "tiny"), "--output",
                                   str(tmp_path / "o"), "--scale", "4", "--hr-output",
                                   str(tmp_path / "g")])
    (tmp_path / "hr" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken.png.*corrupt"):
        run(tmp_path, "--scale", "2", "--force")


def test_command_line_errors_are_one_line_and_progress_shows_an_eta(tmp_path):
    hr_folder(tmp_path / "hr", {f"{i}.png": (8, 8, 3) for i in range(3)})
    tool = os.path.join(ROOT, "tools", "make_lr.py")
    ok = subprocess.run([sys.executable, tool, "--input", str(tmp_path / "hr"), "--output",
                         str(tmp_path / "lr"), "--scale", "2", "--workers", "2"],
                        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "LR x2: 100%" in ok.stderr and "3/3" in ok.stderr and "<00:00" in ok.stderr  # tqdm ETA
    bad = subprocess.run([sys.executable, tool, "--input", str(tmp_path / "nowhere"), "--output",
                          str(tmp_path / "o"), "--scale", "2"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(lines) == 1 and lines[0].startswith("error: input: folder") and "nowhere" in lines[0]
