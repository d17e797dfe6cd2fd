"""PairedImageDataset: pairing by name, decoding, matched crops/flips, determinism, clear errors."""
import random

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import dihedral
from llcv.data.image_io import decode_image, to_float
from llcv.data.paired_image_dataset import PairedImageDataset
from llcv.data.sampler import InfiniteSeededSampler, SampleKey
from llcv.errors import DataError, OptionError
from llcv.registry import DATASETS, build


def write(path, img):
    assert cv2.imwrite(str(path), img), path
    return str(path)


def rand_u8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def folders(tmp_path):
    gt, lq = tmp_path / "gt", tmp_path / "lq"
    gt.mkdir()
    lq.mkdir()
    return gt, lq


def coord_image(h, w):
    """16-bit BGR image whose R holds the row and G the column of each pixel (unique pixels)."""
    img = np.zeros((h, w, 3), np.uint16)
    img[:, :, 2] = np.arange(h)[:, None]  # R (cv2 writes BGR)
    img[:, :, 1] = np.arange(w)[None, :]  # G
    return img


def hwc(t):
    return t.numpy().transpose(1, 2, 0)


def test_val_reads_full_rgb_images_in_name_order(tmp_path):
    gt, lq = folders(tmp_path)
    imgs = {name: rand_u8((12, 10, 3), seed=i) for i, name in enumerate(["b", "a", "c"])}
    for name, img in imgs.items():
        write(gt / f"{name}.png", img)
        write(lq / f"{name}.png", 255 - img)
    (lq / "notes.txt").write_text("ignored")
    ds = PairedImageDataset(str(gt), str(lq), phase="val", gt_size=4, use_hflip=True, use_rot=True)
    assert len(ds) == 3
    sample = ds[0]
    assert sample["gt_path"] == str(gt / "a.png") and sample["lq_path"] == str(lq / "a.png")
    for key in ("gt", "lq"):
        assert sample[key].dtype == torch.float32 and sample[key].shape == (3, 12, 10)
    expected = imgs["a"][:, :, ::-1].astype(np.float32) / 255  # BGR on disk -> RGB
    np.testing.assert_array_equal(hwc(sample["gt"]), expected)
    np.testing.assert_allclose(hwc(sample["lq"]), 1 - expected, atol=1e-6)
    assert torch.equal(ds[0]["gt"], sample["gt"])  # validation is deterministic


def test_template_and_differing_extensions(tmp_path):
    gt, lq = folders(tmp_path)
    img = rand_u8((8, 8, 3))
    write(gt / "0001.png", img)
    write(lq / "0001_noisy.bmp", img)
    write(lq / "0002_noisy.bmp", img)  # an LQ without GT is ignored
    ds = PairedImageDataset(str(gt), str(lq), phase="test", filename_tmpl="{}_noisy")
    assert len(ds) == 1 and ds[0]["lq_path"] == str(lq / "0001_noisy.bmp")
    assert torch.equal(ds[0]["lq"], ds[0]["gt"])


def test_decodes_gray_16bit_and_alpha(tmp_path):
    gray = rand_u8((6, 7))
    deep = np.random.default_rng(1).integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    bgra = rand_u8((6, 7, 4), seed=2)
    for name, img in {"gray": gray, "deep": deep, "bgra": bgra}.items():
        write(tmp_path / f"{name}.png", img)
    read = {n: to_float(decode_image((tmp_path / f"{n}.png").read_bytes(), n))
            for n in ("gray", "deep", "bgra")}
    np.testing.assert_array_equal(read["gray"], np.repeat(gray[:, :, None], 3, 2) / np.float32(255))
    np.testing.assert_allclose(read["deep"], deep[:, :, ::-1] / 65535.0, rtol=1e-6)
    np.testing.assert_array_equal(read["bgra"], bgra[:, :, 2::-1] / np.float32(255))
    assert all(r.dtype == np.float32 and r.shape == (6, 7, 3) for r in read.values())


@pytest.mark.parametrize("use_hflip,use_rot", [(True, True), (False, False)])
def test_train_crop_is_a_flipped_window_of_gt(tmp_path, use_hflip, use_rot):
    gt, lq = folders(tmp_path)
    coords = coord_image(40, 48)
    write(gt / "x.png", coords)
    write(lq / "x.png", 65535 - coords)
    ds = PairedImageDataset(str(gt), str(lq), phase="train", gt_size=16, use_hflip=use_hflip,
                            use_rot=use_rot)
    source = coords[:, :, ::-1].astype(np.int64)  # RGB
    seen = set()
    for seed in range(64):
        s = ds[SampleKey(0, seed)]
        got = np.rint(hwc(s["gt"]) * 65535).astype(np.int64)
        np.testing.assert_allclose(hwc(s["lq"]), 1 - hwc(s["gt"]), atol=1e-6)  # same crop/flip
        top, left = got[:, :, 0].min(), got[:, :, 1].min()
        window = source[top:top + 16, left:left + 16]
        matches = [i for i, v in enumerate(dihedral(window)) if np.array_equal(v, got)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == (set(range(8)) if use_hflip else {0})


def test_scaled_pairs_crop_on_the_lq_grid(tmp_path):
    gt, lq = folders(tmp_path)
    small = rand_u8((15, 18, 3), seed=3)
    write(lq / "x.png", small)
    write(gt / "x.png", np.kron(small, np.ones((2, 2, 1), np.uint8)))  # GT = LQ upsampled x2
    ds = PairedImageDataset(str(gt), str(lq), phase="train", gt_size=12, scale=2,
                            use_hflip=True, use_rot=True)
    for seed in range(20):
        s = ds[SampleKey(0, seed)]
        assert s["gt"].shape == (3, 12, 12) and s["lq"].shape == (3, 6, 6)
        pooled = s["gt"].reshape(3, 6, 2, 6, 2).mean(dim=(2, 4))
        torch.testing.assert_close(pooled, s["lq"], atol=1e-6, rtol=0)


def test_samples_depend_only_on_the_key(tmp_path):
    gt, lq = folders(tmp_path)
    write(gt / "x.png", rand_u8((40, 48, 3)))
    write(lq / "x.png", rand_u8((40, 48, 3), seed=1))
    ds = PairedImageDataset(str(gt), str(lq), phase="train", gt_size=16, use_hflip=True,
                            use_rot=True)
    np.random.seed(0), random.seed(0), torch.manual_seed(0)
    first = ds[SampleKey(0, 123)]
    np.random.seed(1), random.seed(1), torch.manual_seed(1)
    again = ds[SampleKey(0, 123)]
    assert torch.equal(first["gt"], again["gt"]) and torch.equal(first["lq"], again["lq"])
    crops = {ds[SampleKey(0, seed)]["gt"].numpy().tobytes() for seed in range(10)}
    assert len(crops) >= 9  # different seeds give different crops


def test_works_with_the_seeded_sampler(tmp_path):
    gt, lq = folders(tmp_path)
    for i in range(3):
        write(gt / f"{i}.png", rand_u8((20, 20, 3), seed=i))
        write(lq / f"{i}.png", rand_u8((20, 20, 3), seed=i + 9))
    cfg = {"type": "PairedImageDataset", "dataroot_gt": str(gt), "dataroot_lq": str(lq),
           "gt_size": 8, "use_hflip": True, "io_backend": {"type": "disk"}}
    ds = build(DATASETS, cfg, "datasets.train", phase="train")
    loader = DataLoader(ds, batch_size=2, sampler=InfiniteSeededSampler(3, 2, seed=5))
    batch = next(iter(loader))
    assert batch["gt"].shape == (2, 3, 8, 8) and len(batch["lq_path"]) == 2
    assert torch.equal(batch["gt"], next(iter(loader))["gt"])


def test_missing_and_empty_folders(tmp_path):
    gt, lq = folders(tmp_path)
    with pytest.raises(OptionError, match=r"^dataroot_gt: folder '.*nope' does not exist"):
        PairedImageDataset(str(tmp_path / "nope"), str(lq), phase="val")
    (gt / "readme.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"^dataroot_gt: folder '.*gt' contains no images"):
        PairedImageDataset(str(gt), str(lq), phase="val")


def test_gt_without_lq_partner_names_both(tmp_path):
    gt, lq = folders(tmp_path)
    write(gt / "a.png", rand_u8((8, 8, 3)))
    write(lq / "a_x2.png", rand_u8((4, 4, 3)))
    with pytest.raises(DataError) as err:
        PairedImageDataset(str(gt), str(lq), phase="val")
    assert str(gt / "a.png") in str(err.value) and "'a.*'" in str(err.value)
    assert str(lq) in str(err.value)


@pytest.mark.parametrize("lq_shape,scale", [((8, 7, 3), 1), ((4, 3, 3), 2)])
def test_size_mismatch_names_both_files_and_sizes(tmp_path, lq_shape, scale):
    gt, lq = folders(tmp_path)
    gt_path = write(gt / "a.png", rand_u8((8, 8, 3)))
    lq_path = write(lq / "a.png", rand_u8(lq_shape))
    ds = PairedImageDataset(str(gt), str(lq), phase="val", scale=scale)
    with pytest.raises(DataError) as err:
        ds[0]
    msg = str(err.value)
    assert gt_path in msg and lq_path in msg and "8x8" in msg
    assert f"{lq_shape[0]}x{lq_shape[1]}" in msg and f"scale {scale}" in msg


def test_truncated_image_names_the_file(tmp_path):
    gt, lq = folders(tmp_path)
    write(gt / "a.png", rand_u8((16, 16, 3)))
    lq_path = write(lq / "a.png", rand_u8((16, 16, 3)))
    data = (lq / "a.png").read_bytes()
    (lq / "a.png").write_bytes(data[: len(data) // 2])
    ds = PairedImageDataset(str(gt), str(lq), phase="val")
    with pytest.raises(DataError, match="corrupt") as err:
        ds[0]
    assert lq_path in str(err.value)


def test_gt_size_larger_than_image(tmp_path):
    gt, lq = folders(tmp_path)
    gt_path = write(gt / "a.png", rand_u8((12, 20, 3)))
    write(lq / "a.png", rand_u8((12, 20, 3)))
    ds = PairedImageDataset(str(gt), str(lq), phase="train", gt_size=16)
    with pytest.raises(OptionError, match=r"^gt_size: 16 is larger") as err:
        ds[SampleKey(0, 1)]
    assert gt_path in str(err.value) and "12x20" in str(err.value)


@pytest.mark.parametrize("kwargs,start", [
    ({"io_backend": {"type": "lmdb"}}, "io_backend"),
    ({"filename_tmpl": "x4"}, "filename_tmpl"),
    ({"gt_size": 15, "scale": 2}, "gt_size"),
    ({"scale": 0}, "scale"),
    ({"phase": "training"}, "phase"),
])
def test_bad_options_name_the_option(tmp_path, kwargs, start):
    gt, lq = folders(tmp_path)
    write(gt / "a.png", rand_u8((8, 8, 3)))
    write(lq / "a.png", rand_u8((8, 8, 3)))
    with pytest.raises(OptionError, match=f"^{start}:"):
        PairedImageDataset(str(gt), str(lq), **{"phase": "train", **kwargs})
