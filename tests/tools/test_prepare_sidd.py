"""tools/prepare_sidd.py end to end on a scaled-down SIDD tree, and the SIDD option files."""
import os

import cv2
import numpy as np
import pytest
import scipy.io
from skimage import data as skdata

from conftest import ROOT, load_tool
from llcv.data.lmdb_backend import LmdbBackend
from llcv.data.loader import build_dataset
from llcv.data.sampler import SampleKey
from llcv.data.subimages import crop_positions
from llcv.errors import DataError, OptionError
from llcv.options import load_options

SCENES = ["0001_001_S6_00100_00060_3200_L", "0002_001_GP_00800_00500_5500_N"]
OPTION_FILES = ["train_unet_sidd.yml", "prune_unet_sidd.yml"]


@pytest.fixture
def fake_sidd(tmp_path):
    """SIDD-Medium's layout with 80x100 photos, and validation .mat files of 2x2x32x32x3 blocks."""
    rng = np.random.default_rng(0)
    photo = skdata.astronaut()
    images = {}
    for i, scene in enumerate(SCENES):
        folder = tmp_path / "SIDD_Medium_Srgb" / "Data" / scene
        folder.mkdir(parents=True)
        for shot in ("010", "011"):
            gt = np.ascontiguousarray(photo[100 * i:100 * i + 80, 50:150])
            noisy = np.clip(gt + rng.normal(0, 12, gt.shape), 0, 255).astype(np.uint8)
            prefix = scene[:4]
            cv2.imwrite(str(folder / f"{prefix}_GT_SRGB_{shot}.PNG"), gt[:, :, ::-1])
            cv2.imwrite(str(folder / f"{prefix}_NOISY_SRGB_{shot}.PNG"), noisy[:, :, ::-1])
            images[f"{scene}_{shot}"] = (gt, noisy)
    blocks = {k: rng.integers(0, 256, (2, 2, 32, 32, 3), dtype=np.uint8)
              for k in ("ValidationGtBlocksSrgb", "ValidationNoisyBlocksSrgb")}
    for key, value in blocks.items():
        scipy.io.savemat(str(tmp_path / f"{key}.mat"), {key: value})
    return tmp_path, images, blocks


def run_tool(root, *extra):
    return load_tool("prepare_sidd").main([
        "--medium", str(root / "SIDD_Medium_Srgb"),
        "--val-noisy", str(root / "ValidationNoisyBlocksSrgb.mat"),
        "--val-gt", str(root / "ValidationGtBlocksSrgb.mat"),
        "--out", str(root / "datasets" / "SIDD"), "--crop-size", "48", "--step", "36", *extra])


def test_prepare_sidd_end_to_end(fake_sidd, monkeypatch):
    root, images, blocks = fake_sidd
    assert run_tool(root, "--workers", "2") == {"train_crops": 24, "val_blocks": 4}
    sidd = root / "datasets" / "SIDD"
    gt_db = LmdbBackend(str(sidd / "train" / "gt_crops.lmdb"), "gt")
    lq_db = LmdbBackend(str(sidd / "train" / "input_crops.lmdb"), "lq")
    tops, lefts = crop_positions(80, 48, 36), crop_positions(100, 48, 36)
    assert (tops, lefts) == ([0, 32], [0, 36, 52])
    assert gt_db.keys() == lq_db.keys() == sorted(
        f"{name}_s{n:03d}" for name in images for n in range(1, 7))
    gt, noisy = images[f"{SCENES[1]}_011"]
    key = f"{SCENES[1]}_011_s005"  # row 1, column 1
    window = (slice(32, 80), slice(36, 84))
    assert np.array_equal(np.asarray(gt_db.read(key)), gt[window])
    assert np.array_equal(np.asarray(lq_db.read(key)), noisy[window])
    for side, name in (("gt_blocks", "ValidationGtBlocksSrgb"),
                       ("input_blocks", "ValidationNoisyBlocksSrgb")):
        assert sorted(os.listdir(sidd / "val" / side)) == [f"{i:02d}_{j:02d}.png"
                                                           for i in range(2) for j in range(2)]
        block = cv2.imread(str(sidd / "val" / side / "01_00.png"))[:, :, ::-1]
        assert np.array_equal(block, blocks[name][1, 0])
    monkeypatch.chdir(root)  # the option files use datasets/SIDD/... relative paths
    opt = load_options(os.path.join(ROOT, "options", "train_unet_sidd.yml"),
                       ["datasets.train.gt_size=32"])
    train = build_dataset(opt["datasets"]["train"], "train")
    sample = train[SampleKey(3, 1)]
    assert len(train) == 24 and sample["gt"].shape == sample["lq"].shape == (3, 32, 32)
    val = build_dataset(opt["datasets"]["val"], "val")
    assert len(val) == 4 and val[2]["lq"].shape == (3, 32, 32)


def test_existing_outputs_need_force_and_bad_inputs_are_named(fake_sidd):
    root, _, _ = fake_sidd
    run_tool(root, "--val-format", "lmdb", "--format", "png")
    assert os.path.isdir(root / "datasets" / "SIDD" / "val" / "gt_blocks.lmdb")
    with pytest.raises(OptionError, match=r"^output: .*gt_crops.lmdb' already exists; pass --force"):
        run_tool(root)
    assert run_tool(root, "--force")["train_crops"] == 24
    scipy.io.savemat(str(root / "ValidationGtBlocksSrgb.mat"), {"wrong": np.zeros((1, 1, 4, 4, 3))})
    with pytest.raises(DataError, match=r"^val_gt: .* holds no array 'ValidationGtBlocksSrgb'"):
        run_tool(root, "--force")
    os.remove(root / "SIDD_Medium_Srgb" / "Data" / SCENES[0] / "0001_GT_SRGB_010.PNG")
    with pytest.raises(DataError, match=r"0001_NOISY_SRGB_010.PNG' has no ground truth"):
        run_tool(root, "--force")


@pytest.mark.parametrize("name", OPTION_FILES)
def test_sidd_option_files_validate(name):
    opt = load_options(os.path.join(ROOT, "options", name))
    train = opt["datasets"]["train"]
    assert train["io_backend"] == {"type": "lmdb"} and train["gt_size"] == 256
    assert train["dataroot_gt"] == "datasets/SIDD/train/gt_crops.lmdb"
    assert opt["network_g"] == {"type": "UNet", "in_ch": 3, "widths": [32, 64, 128, 256],
                                "blocks": [2, 2, 2, 2]}
    assert opt["train"]["optim_g"] == {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.0,
                                       "betas": [0.9, 0.9]}
    assert opt["train"]["pixel_opt"]["type"] == "PSNRLoss" and opt["val"]["protocol"] == "float"
    assert opt["train"]["scheduler"]["T_max"] == opt["train"]["total_iter"] == 200000


@pytest.mark.parametrize("phase", ["train", "val"])
def test_missing_sidd_data_says_which_tool_to_run(tmp_path, monkeypatch, phase):
    monkeypatch.chdir(tmp_path)
    opt = load_options(os.path.join(ROOT, "options", "train_unet_sidd.yml"))
    with pytest.raises(OptionError) as err:
        build_dataset(opt["datasets"][phase], phase)
    msg = str(err.value)
    assert msg.startswith(f"datasets.{phase}.dataroot_gt: ")
    assert "python tools/prepare_sidd.py" in msg and "options/train_unet_demo.yml" in msg
