"""Checkpoint files: written once, shareable modes, kept or removed as asked, temporary files
of a killed run cleaned up, storage errors and unloadable files named in one line."""
import errno
import os
import tempfile

import pytest
import torch

from cli_runs import (assert_one_line, copy_run, log_text, options_file, small_options,
                      snapshot, train_cli)
from llcv.engine.checkpoint import remove_old_checkpoints
from llcv.engine.runner import Runner
from llcv.errors import LLCVError, StorageError
from llcv.options import validate_options
from llcv.serialization import atomic_link, atomic_save, load_checkpoint


def run(opt) -> Runner:
    runner = Runner(validate_options(opt))
    runner.train()
    return runner


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return run(small_options(tmp_path_factory.mktemp("ckpt"))).exp_dir


def test_latest_is_the_newest_weights_file_written_once(finished):
    models = os.path.join(finished, "models")
    latest, newest = (os.stat(os.path.join(models, n)) for n in ("net_g_latest.pth",
                                                                 "net_g_4.pth"))
    assert latest.st_ino == newest.st_ino and latest.st_nlink == 2  # a hard link
    assert set(load_checkpoint(os.path.join(models, "net_g_latest.pth"), "x")) == {
        "params", "network"}


def test_latest_is_a_copy_where_links_are_refused(tmp_path, monkeypatch):
    src, dst = str(tmp_path / "net_g_2.pth"), str(tmp_path / "net_g_latest.pth")
    atomic_save({"params": {"w": torch.ones(3)}}, src)

    def no_links(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    atomic_link(src, dst)
    assert open(src, "rb").read() == open(dst, "rb").read()
    assert os.stat(src).st_ino != os.stat(dst).st_ino
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp_")]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_save({"x": torch.zeros(1)}, str(tmp_path / "a.pth"))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.pth").st_mode & 0o777 == mode


def test_checkpoint_files_of_a_run_are_group_readable(finished):
    for sub in ("models", "training_states"):
        for name in os.listdir(os.path.join(finished, sub)):
            assert os.stat(os.path.join(finished, sub, name)).st_mode & 0o044 == 0o044, name


def test_keep_checkpoints_keeps_the_last_n_and_the_best(tmp_path):
    opt = small_options(tmp_path, total_iter=8)
    opt["logger"].update(save_checkpoint_freq=1, keep_checkpoints=2)
    runner = run(opt)
    best = runner.hook("ValidationHook").best["val/psnr"]["iter"]
    kept = sorted({7, 8, best})
    states = sorted(int(n.split(".")[0]) for n in os.listdir(
        os.path.join(runner.exp_dir, "training_states")))
    weights = sorted(n for n in os.listdir(os.path.join(runner.exp_dir, "models")))
    assert states == kept
    assert weights == sorted([f"net_g_{i}.pth" for i in kept] + ["net_g_latest.pth"])
    assert "removed those of iter 1" in log_text(runner.exp_dir)


def test_old_checkpoints_go_newer_orphans_and_the_protected_stay(tmp_path):
    for sub in ("models", "training_states"):
        (tmp_path / sub).mkdir()
    for it in (2, 4, 6, 8):
        (tmp_path / "training_states" / f"{it}.state").write_bytes(b"s")
        (tmp_path / "models" / f"net_g_{it}.pth").write_bytes(b"w")
    (tmp_path / "models" / "net_g_10.pth").write_bytes(b"w")  # its state failed to write
    assert remove_old_checkpoints(str(tmp_path), keep=2, protect=[2]) == [4]
    assert sorted(os.listdir(tmp_path / "training_states")) == ["2.state", "6.state", "8.state"]
    assert sorted(os.listdir(tmp_path / "models")) == [
        "net_g_10.pth", "net_g_2.pth", "net_g_6.pth", "net_g_8.pth"]


def test_temporary_files_of_a_killed_run_are_removed_at_the_next_start(finished, tmp_path):
    exp = copy_run(finished, tmp_path)
    left = [os.path.join(exp, "models", ".tmp_ab12cd34_net_g_6.pth"),
            os.path.join(exp, "training_states", ".tmp_x1y2z3_6.state")]
    for path in left:
        open(path, "wb").close()
    Runner(validate_options(small_options(tmp_path, total_iter=6)), auto_resume=True)
    assert not any(os.path.exists(p) for p in left)
    assert "Removed 2 temporary file(s) a stopped run left" in log_text(exp)


def test_a_read_only_folder_is_one_line_and_the_previous_file_stays(tmp_path, monkeypatch):
    target = str(tmp_path / "net_g_latest.pth")
    atomic_save({"params": {"w": torch.ones(2)}}, target)
    before = open(target, "rb").read()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(StorageError, match=rf"^cannot write '{target}': Read-only file system "
                                           rf"\(EROFS, errno 30\); [\d.]+ \w+ free on its file "
                                           rf"system; .* set path.experiments_root"):
        atomic_save({"params": {"w": torch.zeros(2)}}, target)
    assert open(target, "rb").read() == before


def test_a_run_folder_that_cannot_be_made_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a folder")
    opt = small_options(tmp_path)
    opt["path"]["experiments_root"] = str(tmp_path / "file" / "runs")
    code, err = train_cli(monkeypatch, capsys, "-opt", options_file(tmp_path, opt))
    assert_one_line(code, err, f"cannot write '{tmp_path / 'file' / 'runs'}", "errno 20",
                    "free on its file system")


def test_a_checkpoint_write_failing_mid_run_is_one_line(finished, tmp_path, monkeypatch,
                                                       capsys):
    exp = copy_run(finished, tmp_path)
    opt = small_options(tmp_path, total_iter=6)
    del opt["val"], opt["datasets"]["val"]  # no progress bar on stderr
    path = options_file(tmp_path, opt)
    before = snapshot(os.path.join(exp, "training_states"))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    code, err = train_cli(monkeypatch, capsys, "-opt", path, "--auto_resume")
    assert_one_line(code, err, f"cannot write '{exp}/models/net_g_6.pth': No space left on "
                               f"device (ENOSPC, errno 28)", "logger.keep_checkpoints")
    assert snapshot(os.path.join(exp, "training_states")) == before


@pytest.mark.parametrize("content, fragment", [
    (b"", "the file is empty"),
    (b"name: tiny\n", "it is not a PyTorch checkpoint (it starts with b'name: tiny"),
    ("truncated", "the file is truncated or corrupt (PytorchStreamReader failed"),
    ("module", "holds pickled Python objects (e.g. torch.nn.modules.conv.Conv2d)"),
])
def test_a_file_that_is_no_checkpoint_is_named_without_torch_advice(tmp_path, content,
                                                                    fragment):
    path = str(tmp_path / "x.pth")
    if content == "module":
        torch.save(torch.nn.Conv2d(1, 1, 1), path)
    elif content == "truncated":
        atomic_save({"w": torch.zeros(100)}, path)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    else:
        open(path, "wb").write(content)
    with pytest.raises(LLCVError) as caught:
        load_checkpoint(path, "--checkpoint")
    message = str(caught.value)
    assert message.startswith(f"--checkpoint: cannot load '{path}': ") and fragment in message
    assert "weights_only" not in message and "\n" not in message
