"""tools/compare_crops.py: the crop where methods differ most, PSNR per crop, exact figure size."""
import cv2
import numpy as np
import pytest
from skimage import data as skdata

from conftest import load_tool
from llcv.analysis.crops import CAPTION, GAP
from llcv.errors import DataError, OptionError

SIZE, ZOOM = 16, 3


@pytest.fixture(scope="module")
def tool():
    return load_tool("compare_crops")


@pytest.fixture
def folders(tmp_path):
    """GT/LQ of two photo crops as tools/test.py --save-lq-gt lays them out, and two methods:
    'blotch' is exact but for a 20x20 wrong square at (y=50, x=60), 'grain' slightly noisy."""
    rng = np.random.default_rng(0)
    blotch, grain = tmp_path / "blotch", tmp_path / "grain"
    for d in (blotch / "gt", blotch / "lq", grain):
        d.mkdir(parents=True)
    images = {}
    for name, photo in (("astro", skdata.astronaut()), ("coffee", skdata.coffee())):
        gt = np.ascontiguousarray(photo[100:180, 100:196])
        noisy = lambda s: np.clip(gt + rng.normal(0, s, gt.shape), 0, 255).astype(np.uint8)
        bad = gt.copy()
        bad[50:70, 60:80] = 255 - bad[50:70, 60:80]
        imgs = {"gt": gt, "lq": noisy(20), "blotch": bad, "grain": noisy(3)}
        for key, folder in (("gt", blotch / "gt"), ("lq", blotch / "lq"), ("blotch", blotch),
                            ("grain", grain)):
            cv2.imwrite(str(folder / f"{name}.png"), imgs[key][:, :, ::-1])
        images[name] = imgs
    return blotch, grain, images


def psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2))


def test_chosen_crop_size_and_content(tool, folders, tmp_path):
    blotch, grain, images = folders
    out = tmp_path / "fig" / "crops.png"
    result = tool.main(["--method", f"blotch={blotch}", "--method", f"grain={grain}",
                        "--size", str(SIZE), "--zoom", str(ZOOM), "--out", str(out)])
    figure = cv2.imread(str(out))[:, :, ::-1]
    panel = SIZE * ZOOM
    assert figure.shape == (2 * (panel + CAPTION) + 3 * GAP, 4 * panel + 5 * GAP, 3)
    for row, name in enumerate(["astro", "coffee"]):
        crop = result["crops"][name]
        assert 50 <= crop["y"] <= 70 - SIZE and 60 <= crop["x"] <= 80 - SIZE  # inside the square
        y, x = crop["y"], crop["x"]
        cut = {k: v[y:y + SIZE, x:x + SIZE] for k, v in images[name].items()}
        assert crop["psnr"]["grain"] == pytest.approx(psnr(cut["grain"], cut["gt"]), abs=1e-9)
        assert crop["psnr"]["LQ"] == pytest.approx(psnr(cut["lq"], cut["gt"]), abs=1e-9)
        top, left = GAP + row * (panel + CAPTION + GAP), GAP + 3 * (panel + GAP)
        gt_panel = figure[top:top + panel, left:left + panel]
        assert np.array_equal(gt_panel, np.kron(cut["gt"], np.ones((ZOOM, ZOOM, 1), np.uint8)))


def test_given_crop_and_errors(tool, folders, tmp_path):
    blotch, grain, _ = folders
    result = tool.main(["--method", f"grain={grain}", "--lq", str(blotch / "lq"), "--gt",
                        str(blotch / "gt"), "--images", "coffee", "--crop", "5", "7",
                        "--size", str(SIZE), "--out", str(tmp_path / "c.png")])
    assert result["crops"]["coffee"]["x"] == 5 and result["crops"]["coffee"]["y"] == 7
    assert result["shape"][0] == SIZE * 3 + CAPTION + 2 * GAP
    with pytest.raises(DataError, match="--images: 'nope' is not in"):
        tool.main(["--method", f"blotch={blotch}", "--images", "nope"])
    with pytest.raises(OptionError, match="--crop: 90,7 with size 16 leaves coffee"):
        tool.main(["--method", f"blotch={blotch}", "--images", "coffee", "--crop", "90", "7",
                   "--size", "16", "--out", str(tmp_path / "d.png")])
    with pytest.raises(OptionError, match="--method: expected NAME=DIR"):
        tool.main(["--method", str(blotch)])
