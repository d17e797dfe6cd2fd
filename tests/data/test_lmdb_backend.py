"""LMDB backend: BasicSR's LMDBs load unchanged, raw LMDBs equal disk, damage is named precisely."""
import os
import pickle

import cv2
import lmdb
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import llcv.data.lmdb_backend as lmdb_backend
from llcv.data.image_io import DiskBackend
from llcv.data.lmdb_backend import LmdbBackend
from llcv.data.lmdb_io import folder_to_lmdb
from llcv.data.paired_image_dataset import PairedImageDataset
from llcv.data.sampler import InfiniteSeededSampler, SampleKey
from llcv.data.synthetic_paired_dataset import SyntheticPairedDataset
from llcv.errors import DataError, OptionError
from llcv.registry import DATASETS, build

LMDB = {"type": "lmdb"}


def basicsr_lmdb(folder, out):
    """An LMDB written the way BasicSR documents it: PNG values, key = stem, meta_info.txt."""
    names = sorted(os.listdir(folder))
    env = lmdb.open(str(out), map_size=1 << 26)
    lines = []
    with env.begin(write=True) as txn:
        for name in names:
            img = cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED)
            ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            key = name.split(".")[0]
            txn.put(key.encode("ascii"), buf.tobytes())
            h, w = img.shape[:2]
            lines.append(f"{key}.png ({h},{w},{1 if img.ndim == 2 else img.shape[2]}) 1\n")
    env.close()
    (out / "meta_info.txt").write_text("".join(lines))
    return str(out)


def to_lmdbs(photo_pairs, tmp_path, fmt):
    gt, lq = photo_pairs
    if fmt == "basicsr":
        return basicsr_lmdb(gt, tmp_path / "gt.lmdb"), basicsr_lmdb(lq, tmp_path / "lq.lmdb")
    out = []
    for folder in (gt, lq):
        out.append(str(tmp_path / f"{folder.name}_{fmt}.lmdb"))
        folder_to_lmdb(str(folder), out[-1], fmt, progress=False)
    return tuple(out)


def assert_same_sample(a, b):
    assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"])
    assert os.path.basename(a["gt_path"]).split(".")[0] == os.path.basename(b["gt_path"])


@pytest.mark.parametrize("fmt", ["basicsr", "raw", "png"])
def test_lmdb_samples_equal_disk_samples(photo_pairs, tmp_path, fmt):
    gt_db, lq_db = to_lmdbs(photo_pairs, tmp_path, fmt)
    crop = {"gt_size": 24, "use_hflip": True, "use_rot": True}
    disk = PairedImageDataset(str(photo_pairs[0]), str(photo_pairs[1]), "train", **crop)
    cfg = {"type": "PairedImageDataset", "dataroot_gt": gt_db, "dataroot_lq": lq_db,
           "io_backend": LMDB, **crop}
    db = build(DATASETS, cfg, "datasets.train", phase="train")
    assert len(db) == len(disk) == 3
    for seed in range(12):
        assert_same_sample(disk[SampleKey(seed % 3, seed)], db[SampleKey(seed % 3, seed)])
    disk_val = PairedImageDataset(str(photo_pairs[0]), str(photo_pairs[1]), "val")
    db_val = PairedImageDataset(gt_db, lq_db, "val", io_backend=LMDB)
    for i in range(3):
        assert_same_sample(disk_val[i], db_val[i])
    assert db_val[0]["gt_path"] == os.path.join(gt_db, "astro")


def test_gray_16bit_and_alpha_read_alike_in_every_format(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(4)
    cv2.imwrite(str(folder / "gray.png"), rng.integers(0, 256, (9, 11), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16))
    cv2.imwrite(str(folder / "bgra.png"), rng.integers(0, 256, (9, 11, 4), dtype=np.uint8))
    disk = DiskBackend(str(folder), "dataroot_gt")
    dbs = [basicsr_lmdb(folder, tmp_path / "b.lmdb")]
    for fmt in ("raw", "png"):
        dbs.append(str(tmp_path / f"{fmt}.lmdb"))
        folder_to_lmdb(str(folder), dbs[-1], fmt, progress=False)
    for db in dbs:
        backend = LmdbBackend(db, "dataroot_gt")
        assert backend.keys() == disk.keys() == ["bgra", "deep", "gray"]
        for key in disk.keys():
            got, want = np.asarray(backend.read(key)), disk.read(key)
            assert got.dtype == want.dtype and np.array_equal(got, want), (db, key)


def test_raw_crops_read_only_their_pixels_without_decoding(photo_pairs, tmp_path, monkeypatch):
    gt_db, lq_db = to_lmdbs(photo_pairs, tmp_path, "raw")
    disk = PairedImageDataset(str(photo_pairs[0]), str(photo_pairs[1]), "train", gt_size=16)
    db = PairedImageDataset(gt_db, lq_db, "train", gt_size=16, io_backend=LMDB)

    def no_decoding(*args):
        raise AssertionError("a raw value was decoded")

    monkeypatch.setattr(lmdb_backend, "imdecode_unchanged", no_decoding)
    assert_same_sample(disk[SampleKey(1, 7)], db[SampleKey(1, 7)])
    view = db.gt_backend.read("coffee")
    assert view.shape == (40, 48, 3)
    window = view[5:21, 10:26]
    assert isinstance(window, np.ndarray) and window.nbytes == 16 * 16 * 3
    assert np.array_equal(window, disk.gt_backend.read("coffee")[5:21, 10:26])


def test_synthetic_dataset_reads_gt_from_lmdb(photo_pairs, tmp_path):
    gt_db, _ = to_lmdbs(photo_pairs, tmp_path, "raw")
    kwargs = {"degradation": {"type": "GaussianNoise", "sigma": 0.05}, "gt_size": 16,
              "use_hflip": True}
    disk = SyntheticPairedDataset("train", dataroot_gt=str(photo_pairs[0]), **kwargs)
    db = SyntheticPairedDataset("train", dataroot_gt=gt_db, io_backend=LMDB, **kwargs)
    assert_same_sample(disk[SampleKey(2, 3)], db[SampleKey(2, 3)])
    disk_val = SyntheticPairedDataset("val", dataroot_gt=str(photo_pairs[0]), crop_val=20, **kwargs)
    db_val = SyntheticPairedDataset("val", dataroot_gt=gt_db, io_backend=LMDB, crop_val=20, **kwargs)
    assert_same_sample(disk_val[0], db_val[0])


def test_workers_open_their_own_environment(photo_pairs, tmp_path):
    gt_db, lq_db = to_lmdbs(photo_pairs, tmp_path, "raw")
    ds = PairedImageDataset(gt_db, lq_db, "train", gt_size=16, io_backend=LMDB)
    first = ds[SampleKey(0, 1)]  # opens the environment in this process
    copy = pickle.loads(pickle.dumps(ds))  # what a spawned worker receives
    assert copy.gt_backend._env is None
    assert_same_sample(first, copy[SampleKey(0, 1)])
    loader = DataLoader(ds, batch_size=2, num_workers=2,
                        sampler=InfiniteSeededSampler(3, 2, seed=1))
    in_workers = next(iter(loader))
    in_process = next(iter(DataLoader(ds, batch_size=2, sampler=InfiniteSeededSampler(3, 2, seed=1))))
    assert torch.equal(in_workers["gt"], in_process["gt"])


def damage(db, key, how):
    """Corrupt, truncate or delete the value of ``key`` (before this process opens ``db``)."""
    env = lmdb.open(db, map_size=1 << 26)
    with env.begin(write=True) as txn:
        value = txn.get(key.encode())
        if how == "missing":
            txn.delete(key.encode())
        else:
            txn.put(key.encode(), b"\x00garbage" * 20 if how == "corrupt" else value[: len(value) // 2])
    env.close()


@pytest.mark.parametrize("fmt", ["basicsr", "raw"])
@pytest.mark.parametrize("how", ["corrupt", "truncated", "missing"])
def test_damaged_value_names_key_and_lmdb_and_spares_the_rest(photo_pairs, tmp_path, fmt, how):
    gt_db, lq_db = to_lmdbs(photo_pairs, tmp_path, fmt)
    damage(lq_db, "coffee", how)
    ds = PairedImageDataset(gt_db, lq_db, "train", gt_size=16, io_backend=LMDB)
    with pytest.raises(DataError) as err:
        ds[SampleKey(1, 0)]
    msg = str(err.value)
    assert "'coffee'" in msg and lq_db in msg and "rebuild the LMDB" in msg, msg
    assert {"missing": "missing", "corrupt": "corrupt", "truncated": "truncated"}[how] in msg
    assert_same_sample(ds[SampleKey(0, 0)], ds[SampleKey(0, 0)])  # other keys still load


def test_missing_or_wrong_paths_say_what_to_do(photo_pairs, tmp_path):
    gt, lq = photo_pairs
    with pytest.raises(OptionError) as err:
        PairedImageDataset(str(tmp_path / "none.lmdb"), str(lq), "train", io_backend=LMDB)
    msg = str(err.value)
    assert msg.startswith("dataroot_gt: LMDB") and "tools/create_lmdb.py" in msg
    assert "options/train_unet_demo.yml" in msg
    with pytest.raises(OptionError, match=r"^dataroot_gt: .*tools/prepare_sidd.py"):
        PairedImageDataset(str(tmp_path / "SIDD/train/gt_crops.lmdb"), str(lq), "train",
                           io_backend=LMDB)
    with pytest.raises(OptionError, match=r"^io_backend: type lmdb, but dataroot_gt .* not an LMDB"):
        PairedImageDataset(str(gt), str(lq), "train", io_backend=LMDB)
    gt_db, lq_db = to_lmdbs(photo_pairs, tmp_path, "raw")
    with pytest.raises(OptionError, match=r"^dataroot_gt: .* is an LMDB .*io_backend: \{type: lmdb\}"):
        PairedImageDataset(gt_db, str(lq), "train")
    with pytest.raises(OptionError, match=r"^io_backend.db_paths: unknown option"):
        PairedImageDataset(gt_db, lq_db, "train", io_backend={"type": "lmdb", "db_paths": "x"})


def test_unlisted_pairs_and_unfinished_builds_are_named(photo_pairs, tmp_path):
    gt_db, lq_db = to_lmdbs(photo_pairs, tmp_path, "basicsr")
    meta = os.path.join(lq_db, "meta_info.txt")
    lines = open(meta).read().splitlines()
    with open(meta, "w") as f:
        f.write("\n".join(line for line in lines if not line.startswith("rocket")))
    with pytest.raises(DataError, match=r"rocket.*has no LQ partner 'rocket\.\*'") as err:
        PairedImageDataset(gt_db, lq_db, "val", io_backend=LMDB)
    assert lq_db in str(err.value)
    os.remove(meta)
    with pytest.raises(DataError, match=r"^dataroot_lq: LMDB .* has no meta_info.txt"):
        PairedImageDataset(gt_db, lq_db, "val", io_backend=LMDB)
