"""Data integrity: raw LMDB values carry a checksum verified on read; a validation set's files
are checked from their headers (whole files, pair sizes) without decoding them."""
import struct

import cv2
import lmdb
import numpy as np
import pytest

from llcv.data.image_io import DiskBackend
from llcv.data.lmdb_backend import LEGACY_HEADER, LEGACY_MAGIC, LmdbBackend
from llcv.data.lmdb_io import folder_to_lmdb
from llcv.data.paired_image_dataset import PairedImageDataset
from llcv.errors import DataError


def raw_lmdb(folder, out) -> str:
    folder_to_lmdb(str(folder), str(out), "raw", progress=False)
    return str(out)


def rewrite(path: str, key: str, change) -> None:
    """Replace LMDB value ``key`` by ``change(old bytes)``."""
    env = lmdb.open(path, map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(key.encode(), change(bytes(txn.get(key.encode()))))
    env.close()


def test_a_raw_value_overwritten_with_same_length_garbage_is_named(photo_pairs, tmp_path):
    path = raw_lmdb(photo_pairs[0], tmp_path / "gt.lmdb")
    rewrite(path, "coffee", lambda v: v[:20] + bytes(255 - b for b in v[20:]))
    backend = LmdbBackend(path, "dataroot_gt")
    assert np.asarray(backend.read("astro")).shape == (40, 48, 3)  # the others still read
    with pytest.raises(DataError, match=r"key 'coffee' of LMDB .* fails its checksum \(CRC-32 "
                                        r"[0-9a-f]{8}, written [0-9a-f]{8}\)"):
        backend.read("coffee")[0:8, 0:8]


def test_raw_values_written_before_checksums_still_read(photo_pairs, tmp_path):
    path = raw_lmdb(photo_pairs[0], tmp_path / "gt.lmdb")
    expected = cv2.imread(str(photo_pairs[0] / "astro.png"))[:, :, ::-1]

    def legacy(value: bytes) -> bytes:
        _, h, w, c, size, _ = struct.unpack_from("<4sIIHHI", value)
        return LEGACY_HEADER.pack(LEGACY_MAGIC, h, w, c, size) + value[20:]

    rewrite(path, "astro", legacy)
    np.testing.assert_array_equal(np.asarray(LmdbBackend(path, "gt").read("astro")), expected)


def paired(gt_root, lq_root, backend=None) -> PairedImageDataset:
    return PairedImageDataset(str(gt_root), str(lq_root), "val", io_backend=backend)


def test_headers_of_whole_files_pass(photo_pairs, tmp_path):
    assert paired(*photo_pairs).check_files() == 3
    gt, lq = (raw_lmdb(f, tmp_path / f"{f.name}.lmdb") for f in photo_pairs)
    assert paired(gt, lq, {"type": "lmdb"}).check_files() == 3


@pytest.mark.parametrize("suffix, fragment", [
    (".png", "it is truncated or corrupt (no PNG end chunk)"),
    (".jpg", "it is truncated or corrupt (no JPEG end marker)"),
    (".bmp", "it is corrupt or not an image"),
])
def test_a_truncated_file_is_named_from_its_header(photo_pairs, suffix, fragment):
    gt, lq = photo_pairs
    for folder in (gt, lq):  # the pair in another format, the LQ cut short
        img = cv2.imread(str(folder / "rocket.png"))
        (folder / "rocket.png").unlink()
        cv2.imwrite(str(folder / f"rocket{suffix}"), img)
    data = (lq / f"rocket{suffix}").read_bytes()
    (lq / f"rocket{suffix}").write_bytes(data[:10] if suffix == ".bmp" else data[: len(data) // 2])
    assert DiskBackend(str(gt), "gt").size("rocket") == (40, 48)
    with pytest.raises(DataError, match=rf"cannot decode image '.*rocket{suffix}': "
                                        rf"{fragment.replace('(', '.').replace(')', '.')}"):
        paired(gt, lq).check_files()


def test_a_mis_sized_pair_is_named_from_the_headers(photo_pairs):
    gt, lq = photo_pairs
    cv2.imwrite(str(lq / "coffee.png"), cv2.imread(str(lq / "coffee.png"))[:30])
    with pytest.raises(DataError, match=r"GT '.*coffee.png' is 40x48 but LQ '.*coffee.png' is "
                                        r"30x48"):
        paired(gt, lq).check_files()


def test_truncated_lmdb_values_are_named_from_their_headers(photo_pairs, tmp_path):
    gt = raw_lmdb(photo_pairs[0], tmp_path / "gt.lmdb")
    lq = raw_lmdb(photo_pairs[1], tmp_path / "lq.lmdb")
    rewrite(lq, "astro", lambda v: v[:-10])
    with pytest.raises(DataError, match=r"key 'astro' of LMDB .* is corrupt or truncated"):
        paired(gt, lq, {"type": "lmdb"}).check_files()
