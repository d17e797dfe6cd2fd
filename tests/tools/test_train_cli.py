"""tools/train.py as a user runs it: overrides, bad input as one clear line, SIGKILL + auto-resume."""
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, tiny_options, write_yaml

TRAIN = os.path.join(ROOT, "tools", "train.py")


def train_cmd(opt_path, *extra):
    return [sys.executable, TRAIN, "-opt", str(opt_path), *extra]


def run_train(opt_path, *extra, timeout=120):
    return subprocess.run(train_cmd(opt_path, *extra), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def paired_options(tmp_path, gt_dir, lq_dir):
    opt = tiny_options(tmp_path)
    opt["datasets"]["train"] = {"type": "PairedImageDataset", "dataroot_gt": str(gt_dir),
                                "dataroot_lq": str(lq_dir), "gt_size": 16,
                                "batch_size_per_gpu": 1}
    opt["datasets"]["val"] = {"type": "PairedImageDataset", "dataroot_gt": str(gt_dir),
                              "dataroot_lq": str(lq_dir)}
    return opt


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("override, fragment", [
    ("network_g.type=UNett", "network_g.type: unknown arch type 'UNett'"),
    ("train.pixel_opt.type=L3Loss", "train.pixel_opt.type: unknown loss type 'L3Loss'"),
    ("datasets.train.type=NoSuchDataset", "datasets.train.type: unknown dataset type"),
    ("train.no_such_key=1", "train.no_such_key: unknown option"),
])
def test_unknown_names_and_keys(tmp_path, override, fragment):
    path = write_yaml(tmp_path / "o.yml", tiny_options(tmp_path))
    assert_one_line_error(run_train(path, "--set", override), fragment)


def test_missing_dataroot(tmp_path, photo_pairs):
    gt_dir, _ = photo_pairs
    opt = paired_options(tmp_path, gt_dir, tmp_path / "nowhere")
    path = write_yaml(tmp_path / "o.yml", opt)
    assert_one_line_error(run_train(path), "datasets.train.dataroot_lq", "nowhere")


def test_pair_of_different_sizes(tmp_path, photo_pairs):
    import cv2

    gt_dir, lq_dir = photo_pairs
    cv2.imwrite(str(lq_dir / "coffee.png"), cv2.imread(str(gt_dir / "coffee.png"))[:30])
    path = write_yaml(tmp_path / "o.yml", paired_options(tmp_path, gt_dir, lq_dir))
    assert_one_line_error(run_train(path), "coffee.png")


def test_corrupt_image(tmp_path, photo_pairs):
    gt_dir, lq_dir = photo_pairs
    data = (lq_dir / "rocket.png").read_bytes()
    (lq_dir / "rocket.png").write_bytes(data[: len(data) // 3])
    opt = paired_options(tmp_path, gt_dir, lq_dir)
    opt["datasets"]["train"]["num_worker_per_gpu"] = 1  # the error crosses a worker process
    path = write_yaml(tmp_path / "o.yml", opt)
    assert_one_line_error(run_train(path), "rocket.png")


def test_yaml_syntax_error(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("name: broken\ntrain: {total_iter: 3\n")
    assert_one_line_error(run_train(path), "broken.yml:", "YAML syntax error")


def test_sigkill_after_checkpoint_then_auto_resume(tmp_path):
    opt = tiny_options(tmp_path, total_iter=100)
    opt["logger"].update(save_checkpoint_freq=5, print_freq=5)
    opt["val"]["val_freq"] = 1000
    path = write_yaml(tmp_path / "o.yml", opt)
    states = tmp_path / "experiments" / "tiny" / "training_states"
    proc = subprocess.Popen(train_cmd(path), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    finished = "[0-9]*.state"  # not a temporary file the kill may leave mid-write
    while time.time() < deadline and not (states.exists() and list(states.glob(finished))):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = max(int(p.stem) for p in states.glob(finished))
    assert saved < 100
    result = run_train(path, "--auto_resume", "--set", "train.total_iter=100", "val.val_freq=1000")
    assert result.returncode == 0, result.stderr
    assert f"at iter {saved}" in result.stdout and f"iters {saved + 1}..100" in result.stdout
    options = yaml.safe_load((tmp_path / "experiments" / "tiny" / "options.yml").read_text())
    assert options["val"]["val_freq"] == 1000
