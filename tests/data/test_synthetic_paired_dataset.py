"""SyntheticPairedDataset and the bundled photos: crops, on-the-fly noise, determinism, errors."""
import random

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from conftest import dihedral
from llcv.data.builtin_images import BUILTIN_IMAGE_NAMES, load_builtin_image
from llcv.data.sampler import SampleKey
from llcv.data.synthetic_paired_dataset import SyntheticPairedDataset
from llcv.errors import OptionError
from llcv.registry import DATASETS, build

NOISE = {"type": "PoissonGaussianNoise"}
TINY_NOISE = {"type": "PoissonGaussianNoise", "shot_range": 1e-9, "read_range": 1e-10}


def hwc(t):
    return t.numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("name", BUILTIN_IMAGE_NAMES)
def test_builtin_images_load_as_rgb_float(name):
    img = load_builtin_image(name)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.float32
    assert min(img.shape[:2]) >= 128 and 0.0 <= img.min() and img.max() <= 1.0


def test_builtin_images_match_skimage():
    np.testing.assert_array_equal(load_builtin_image("astronaut") * 255, skimage.data.astronaut())
    camera = load_builtin_image("camera")
    np.testing.assert_array_equal(camera[:, :, 1] * 255, skimage.data.camera())
    assert np.array_equal(camera[:, :, 0], camera[:, :, 2])  # gray -> 3 equal channels
    left = skimage.data.stereo_motorcycle()[0]
    np.testing.assert_array_equal(load_builtin_image("stereo_motorcycle") * 255, left)


def test_unknown_builtin_image_lists_choices():
    with pytest.raises(OptionError, match="unknown built-in image 'lena'.*astronaut.*coffee"):
        load_builtin_image("lena")
    with pytest.raises(OptionError, match=r"^builtin_images\[1\]: unknown built-in image"):
        SyntheticPairedDataset("val", NOISE, builtin_images=["camera", "lena"])


def test_train_crop_is_a_flipped_window_and_lq_follows_gt(tmp_path):
    coords = np.zeros((40, 48, 3), np.uint16)  # R = row, G = column (cv2 writes BGR)
    coords[:, :, 2], coords[:, :, 1] = np.arange(40)[:, None], np.arange(48)[None, :]
    assert cv2.imwrite(str(tmp_path / "c.png"), coords)
    ds = SyntheticPairedDataset("train", TINY_NOISE, dataroot_gt=str(tmp_path), gt_size=16,
                                use_hflip=True, use_rot=True)
    source = coords[:, :, ::-1].astype(np.int64)
    seen = set()
    for seed in range(64):
        s = ds[SampleKey(0, seed)]
        assert s["gt_path"] == s["lq_path"] == str(tmp_path / "c.png")
        got = np.rint(hwc(s["gt"]) * 65535).astype(np.int64)
        top, left = got[:, :, 0].min(), got[:, :, 1].min()
        window = source[top:top + 16, left:left + 16]
        matches = [i for i, v in enumerate(dihedral(window)) if np.array_equal(v, got)]
        assert len(matches) == 1
        seen.add(matches[0])
        assert (s["lq"] - s["gt"]).abs().max() < 1e-3  # LQ degraded from this very crop
    assert seen == set(range(8))


def test_train_samples_are_noisy_and_depend_only_on_the_key():
    cfg = {"type": "SyntheticPairedDataset", "builtin_images": ["astronaut", "coffee"],
           "gt_size": 32, "use_hflip": True, "use_rot": True, "degradation": NOISE}
    ds = build(DATASETS, cfg, "datasets.train", phase="train")
    assert cfg["degradation"] == NOISE and len(ds) == 2  # options untouched
    np.random.seed(0), random.seed(0), torch.manual_seed(0)
    first = ds[SampleKey(1, 42)]
    np.random.seed(1), random.seed(1), torch.manual_seed(1)
    again = ds[SampleKey(1, 42)]
    assert first["gt_path"] == "skimage:coffee"
    for key in ("gt", "lq"):
        assert first[key].shape == (3, 32, 32) and first[key].dtype == torch.float32
        assert torch.equal(first[key], again[key])
        assert 0.0 <= first[key].min() and first[key].max() <= 1.0
    assert (first["lq"] - first["gt"]).abs().mean() > 1e-3
    crops = {ds[SampleKey(1, seed)]["gt"].numpy().tobytes() for seed in range(10)}
    assert len(crops) >= 9


def val_set(seed):
    return SyntheticPairedDataset("val", NOISE, builtin_images=["page", "astronaut"],
                                  crop_val=128, seed=seed)


def test_val_is_deterministic_and_centre_cropped():
    ds = val_set(0)
    page = ds[0]
    assert page["gt"].shape == (3, 128, 128)
    full = load_builtin_image("page")  # 191x384: centre window starts at (31, 128)
    np.testing.assert_array_equal(hwc(page["gt"]), full[31:159, 128:256])
    assert torch.equal(val_set(0)[0]["lq"], page["lq"])
    assert not torch.equal(val_set(1)[0]["lq"], page["lq"])
    assert not torch.equal(ds[1]["lq"], ds[1]["gt"])
    uncropped = SyntheticPairedDataset("val", NOISE, builtin_images=["page"])
    assert uncropped[0]["lq"].shape == (3, 191, 384)


@pytest.mark.parametrize("kwargs,start", [
    ({}, "dataroot_gt"),
    ({"dataroot_gt": "x", "builtin_images": ["camera"]}, "dataroot_gt"),
    ({"builtin_images": "camera"}, "builtin_images"),
    ({"builtin_images": ["camera"], "degradation": {"type": "PoissonNoize"}}, "degradation.type"),
    ({"builtin_images": ["page"], "gt_size": 256}, "gt_size"),
    ({"builtin_images": ["page"], "crop_val": 0}, "crop_val"),
])
def test_bad_options_name_the_option(kwargs, start):
    with pytest.raises(OptionError, match=f"^{start}"):
        SyntheticPairedDataset(**{"phase": "train", "degradation": NOISE, **kwargs})


def test_gt_size_error_names_the_image():
    with pytest.raises(OptionError, match=r"gt_size: 256 is larger than image 'skimage:page' "
                                          r"\(191x384\)"):
        SyntheticPairedDataset("train", NOISE, builtin_images=["page"], gt_size=256)


def test_labels_say_which_degradation_was_applied():
    import json

    from torch.utils.data import default_collate

    from llcv.data.sampler import SampleKey
    from llcv.data.synthetic_paired_dataset import SyntheticPairedDataset

    choice = {"type": "RandomChoice", "degradations": [
        {"type": "GaussianNoise", "sigma": 50}, {"type": "JPEGCompression", "quality": 10}]}
    data = SyntheticPairedDataset("train", choice, builtin_images=["astronaut"], gt_size=32,
                                  return_label=True)
    samples = [data[SampleKey(0, seed)] for seed in range(12)]
    assert {s["label"] for s in samples} == {0, 1}
    for s in samples:
        params = json.loads(s["degradation"])
        assert params["choice"] == s["label"]
        assert params["type"] == ("GaussianNoise", "JPEGCompression")[s["label"]]
    batch = default_collate(samples[:4])
    assert batch["label"].shape == (4,) and len(batch["degradation"]) == 4
    plain = SyntheticPairedDataset("train", choice, builtin_images=["astronaut"], gt_size=32)
    assert "label" not in plain[SampleKey(0, 0)]
    assert plain[SampleKey(0, 3)]["lq"].equal(samples[3]["lq"])
