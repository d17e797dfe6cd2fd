"""tools/create_lmdb.py and tools/extract_subimages.py: layouts, refusals, key checks, crops."""
import os
import subprocess
import sys

import cv2
import lmdb
import numpy as np
import pytest

from conftest import ROOT, load_tool
from llcv.data.image_io import DiskBackend
from llcv.data.lmdb_backend import LmdbBackend
from llcv.data.lmdb_io import LmdbWriter, encode_value, folder_to_lmdb, validate_key
from llcv.data.subimages import crop_positions
from llcv.errors import DataError, OptionError


def image_folder(path, shapes, seed=0):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for name, shape in shapes.items():
        assert cv2.imwrite(str(path / name), rng.integers(0, 256, shape, dtype=np.uint8))
    return path


def basicsr_style_read(db):
    """Read an LMDB as BasicSR does: keys from meta_info.txt (cut at the first dot), imdecode."""
    with open(os.path.join(db, "meta_info.txt")) as f:
        keys = [line.split(".")[0] for line in f]
    env = lmdb.open(db, readonly=True, lock=False, readahead=False, meminit=False)
    with env.begin() as txn:
        imgs = {k: cv2.imdecode(np.frombuffer(txn.get(k.encode()), np.uint8), cv2.IMREAD_COLOR)
                for k in keys}
    env.close()
    return imgs


@pytest.mark.parametrize("fmt", ["png", "raw"])
def test_create_lmdb_in_both_formats(tmp_path, fmt, capsys):
    src = image_folder(tmp_path / "src", {"b.png": (20, 30, 3), "a.jpg": (12, 14, 3)})
    out = str(tmp_path / f"{fmt}.lmdb")
    assert load_tool("create_lmdb").main(["--input", str(src), "--output", out, "--format", fmt,
                                          "--workers", "2"]) == 2
    assert "wrote 2 images" in capsys.readouterr().out
    meta = open(os.path.join(out, "meta_info.txt")).read().splitlines()
    assert meta == (["a.png (12,14,3) 1", "b.png (20,30,3) 1"] if fmt == "png"
                    else ["a.raw (12,14,3) uint8", "b.raw (20,30,3) uint8"])
    assert sorted(os.listdir(out)) == ["data.mdb", "lock.mdb", "meta_info.txt"]
    disk = DiskBackend(str(src), "x")
    if fmt == "png":  # BasicSR reads what llcv writes
        for key, img in basicsr_style_read(out).items():
            assert np.array_equal(img[:, :, ::-1], disk.read(key))
    db = LmdbBackend(out, "x")
    for key in ("a", "b"):
        assert np.array_equal(np.asarray(db.read(key)), disk.read(key))


def test_refuses_to_overwrite_without_force(tmp_path):
    src = image_folder(tmp_path / "src", {"a.png": (8, 8, 3)})
    out = str(tmp_path / "o.lmdb")
    folder_to_lmdb(str(src), out, progress=False)
    image_folder(tmp_path / "src2", {"a.png": (9, 9, 3), "b.png": (9, 9, 3)}, seed=1)
    with pytest.raises(OptionError, match=r"^output: .*o.lmdb' already exists; pass --force"):
        folder_to_lmdb(str(tmp_path / "src2"), out, progress=False)
    assert LmdbBackend(out, "x").keys() == ["a"]  # untouched
    folder_to_lmdb(str(tmp_path / "src2"), out, force=True, progress=False)
    assert LmdbBackend(out, "x").keys() == ["a", "b"]
    with pytest.raises(OptionError, match=r"must end with \.lmdb"):
        folder_to_lmdb(str(src), str(tmp_path / "plain"), progress=False)
    (tmp_path / "notes.lmdb").mkdir()
    (tmp_path / "notes.lmdb" / "mine.txt").write_text("keep me")
    with pytest.raises(OptionError, match=r"is not an LMDB folder \(it holds 'mine.txt'\)"):
        folder_to_lmdb(str(src), str(tmp_path / "notes.lmdb"), force=True, progress=False)


@pytest.mark.parametrize("name, problem", [("a.b.png", "dot"), ("caf\u00e9.png", "not ASCII"),
                                           ("two words.png", "space")])
def test_bad_keys_are_refused_before_writing(tmp_path, name, problem):
    src = image_folder(tmp_path / "src", {"ok.png": (8, 8, 3), name: (8, 8, 3)})
    out = tmp_path / "o.lmdb"
    with pytest.raises(DataError, match=problem) as err:
        folder_to_lmdb(str(src), str(out), progress=False)
    assert name in str(err.value)
    assert not out.exists() and not (tmp_path / "o.lmdb.partial").exists()
    validate_key("0001_s001", "x")  # BasicSR's sub-image names pass


def test_map_grows_when_full_and_failed_builds_leave_nothing(tmp_path):
    src = image_folder(tmp_path / "src", {f"{i}.png": (96, 96, 3) for i in range(6)})
    out = str(tmp_path / "o.lmdb")
    with LmdbWriter(out, map_size=1 << 16) as writer:  # 6 x 27 KiB values > 64 KiB
        for key in DiskBackend(str(src), "x").keys():
            writer.put(key, *encode_value(key, cv2.imread(str(src / f"{key}.png")), "raw"))
    assert writer.map_size > 6 * 96 * 96 * 3
    db = LmdbBackend(out, "x")
    assert len(db.keys()) == 6 and np.asarray(db.read("5")).shape == (96, 96, 3)
    (src / "9.png").write_bytes((src / "0.png").read_bytes()[:300])  # truncated file
    with pytest.raises(DataError, match=r"9.png.*corrupt"):
        folder_to_lmdb(str(src), str(tmp_path / "p.lmdb"), progress=False)
    assert not os.path.exists(tmp_path / "p.lmdb") and not os.path.exists(tmp_path / "p.lmdb.partial")


def test_crop_positions_cover_the_image():
    assert crop_positions(1000, 512, 384) == [0, 384, 488]  # last window flush with the end
    assert crop_positions(900, 512, 384, thresh_size=4) == [0, 384]  # 4 px left: tolerated
    assert crop_positions(900, 512, 384, thresh_size=3) == [0, 384, 388]
    assert crop_positions(512, 512, 384) == [0] and crop_positions(500, 512, 384) == []


def test_extract_subimages_writes_exact_windows(tmp_path, capsys):
    src = image_folder(tmp_path / "src", {"big.png": (70, 90, 3), "tiny.png": (20, 20, 3)})
    out = tmp_path / "out"
    tool = load_tool("extract_subimages")
    argv = ["--input", str(src), "--output", str(out), "--crop-size", "32", "--step", "24",
            "--workers", "2"]
    result = tool.main(argv)
    assert result == {"images": 2, "crops": 12, "skipped": ["tiny"]}  # rows 0,24,38 x cols 0,24,48,58
    assert "skipped 1 images smaller than 32: tiny" in capsys.readouterr().out
    big = cv2.imread(str(src / "big.png"))
    tops, lefts = crop_positions(70, 32, 24), crop_positions(90, 32, 24)
    assert (tops, lefts) == ([0, 24, 38], [0, 24, 48, 58])
    for number, (top, left) in enumerate([(t, l) for t in tops for l in lefts], 1):
        crop = cv2.imread(str(out / f"big_s{number:03d}.png"))
        assert np.array_equal(crop, big[top:top + 32, left:left + 32])
    with pytest.raises(OptionError, match=r"^output: folder .* is not empty; pass --force"):
        tool.main(argv)
    assert tool.main(argv + ["--force"])["crops"] == 12


def test_tool_errors_are_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "create_lmdb.py"), "--input",
         str(tmp_path / "nowhere"), "--output", str(tmp_path / "o.lmdb")],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: input: folder") and "nowhere" in lines[0]
