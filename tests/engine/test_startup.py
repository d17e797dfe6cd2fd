"""Start-up: every check before the run folder is touched, one run per folder, resume semantics.

Each bad input gets one line, exit 2, no traceback, and leaves an earlier finished run byte for
byte as it was (no archive, no new file).
"""
import fcntl
import json
import os
import subprocess
import sys

import cv2
import pytest
import torch

from cli_runs import (assert_one_line, copy_run, log_text, options_file, small_options,
                      snapshot, train_cli)
from llcv.engine.hooks import Hook
from llcv.engine.lock import LOCK_NAME, RunLock, RunLockedError
from llcv.engine.runner import Runner
from llcv.errors import DataError, OptionError
from llcv.optim.schedulers import LRSchedule
from llcv.options import validate_options
from llcv.registry import HOOKS


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-iteration run, its option file, and the bytes of its experiments root."""
    root = tmp_path_factory.mktemp("finished")
    opt = small_options(root)
    runner = Runner(validate_options(opt))
    runner.train()
    return {"root": root, "exp": runner.exp_dir, "opt": opt, "file": options_file(root, opt),
            "bytes": snapshot(root / "experiments")}


def latest(finished) -> str:
    return os.path.join(finished["exp"], "models", "net_g_latest.pth")


@pytest.mark.parametrize("overrides, fragment", [
    (["train.optim_g.lr=abc"], "train.optim_g.lr: expected a number, got str 'abc'"),
    (["train.optim_g.betas=0.9"], "train.optim_g.betas: expected a list [a number, a number]"),
    (["train.optim_g.lr=-1"], "train.optim_g: Invalid learning rate: -1"),
    (["train.scheduler.T_max=abc"], "train.scheduler.T_max: expected an integer or null"),
    (["train.scheduler.T_max=4", "train.scheduler.eta_min=-1"],
     "train.scheduler.eta_min: expected a number >= 0.0, got -1"),
    (["train.scheduler={{type: MultiStepLR, milestones: [2], gamma: -1}}"],
     "train.scheduler: gives -"),
    (["datasets.train.batch_size_per_gpu=0"], "datasets.train.batch_size_per_gpu: must be >= 1"),
    (["network_g.in_ch=1"], "network_g: cannot take a datasets.train batch (lq 1x3x32x32)"),
    (["train.total_iter=-5"], "train.total_iter: must be >= 1, got -5"),
    (["datasets.train.builtin_images=null", "datasets.train.dataroot_gt=typo"],
     "datasets.train.dataroot_gt: folder 'typo' does not exist"),
    (["path.pretrain_network_g={latest}", "network_g.widths=[8,8]"],
     "path.pretrain_network_g: '{latest}' does not fit network_g (size mismatch"),
    (["path.resume_state={file}"], "is not a PyTorch checkpoint"),
])
def test_a_bad_input_fails_in_one_line_and_changes_nothing(finished, monkeypatch, capsys,
                                                           overrides, fragment):
    names = {"latest": latest(finished), "file": finished["file"]}
    overrides = [o.format(**names) for o in overrides]
    code, err = train_cli(monkeypatch, capsys, "-opt", finished["file"], "--set", *overrides)
    assert_one_line(code, err, fragment.format(**names))
    assert snapshot(finished["root"] / "experiments") == finished["bytes"]


def resumed(finished, tmp_path, **changes) -> Runner:
    """A Runner continuing a copy of the finished run, with ``train`` options changed."""
    copy_run(finished["exp"], tmp_path)
    opt = small_options(tmp_path)
    opt["train"].update(changes)
    return Runner(validate_options(opt), auto_resume=True)


def test_resume_takes_hyperparameters_from_the_option_file(finished, tmp_path):
    scheduler = {"type": "CosineAnnealingLR", "T_max": 6, "eta_min": 1e-7}
    runner = resumed(finished, tmp_path, total_iter=6, scheduler=scheduler,
                     optim_g={"type": "Adam", "lr": 1e-5, "betas": [0.8, 0.99]})
    log = log_text(runner.exp_dir)
    for change in ("train.optim_g.lr: 0.001 -> 1e-05", "train.optim_g.betas: [0.9, 0.999] -> "
                   "[0.8, 0.99]", "train.total_iter: 4 -> 6", "'eta_min': 1e-07"):
        assert change in log, log
    runner.train()
    group = runner.state.optimizer.param_groups[0]
    assert group["initial_lr"] == 1e-5 and group["betas"] == (0.8, 0.99)
    assert group["lr"] == LRSchedule(scheduler, 6).lr_at(1e-5, 6)


def test_resume_refuses_another_optimizer_type(finished, tmp_path):
    with pytest.raises(OptionError, match=r"train.optim_g.type: the resumed state was trained "
                                          r"with Adam"):
        resumed(finished, tmp_path, total_iter=6, optim_g={"type": "SGD", "lr": 0.1})


def test_resume_past_the_end_is_refused(finished, tmp_path):
    with pytest.raises(OptionError, match=r"train.total_iter: .* at iter 4, and train.total_iter "
                                          r"is 4: nothing is left to train"):
        resumed(finished, tmp_path)


def test_a_network_written_with_its_defaults_resumes(finished, tmp_path):
    copy_run(finished["exp"], tmp_path)
    opt = small_options(tmp_path, total_iter=6)
    opt["network_g"].update(act="relu", padding_mode="replicate")
    assert Runner(validate_options(opt), auto_resume=True).start_iter == 4


def test_non_strict_pretraining_skips_mismatched_tensors_without_a_strict_hint(finished,
                                                                               tmp_path):
    opt = small_options(tmp_path)
    opt["network_g"]["widths"] = [8, 8]
    opt["path"].update(pretrain_network_g=latest(finished), strict_load_g=False)
    log = log_text(Runner(validate_options(opt)).exp_dir)
    assert "skipped (size mismatch)" in log and "strict_load_g" not in log


def test_auto_resume_with_nothing_to_resume_says_so(tmp_path):
    runner = Runner(validate_options(small_options(tmp_path, "new")), auto_resume=True)
    assert runner.start_iter == 0
    assert "--auto_resume: no training state in" in log_text(runner.exp_dir)


def test_the_log_file_is_named_after_the_run(finished):
    logs = [n for n in os.listdir(finished["exp"]) if n.endswith(".log")]
    assert len(logs) == 1 and logs[0].startswith("tiny_2") and "train_" not in logs[0]


# ---------------------------------------------------------------------- one run per folder
def test_a_held_folder_is_refused_naming_its_owner(finished, tmp_path, monkeypatch, capsys):
    exp = copy_run(finished["exp"], tmp_path)
    opt = small_options(tmp_path, total_iter=6)
    before = snapshot(tmp_path / "experiments")
    lock = RunLock(exp)
    try:
        code, err = train_cli(monkeypatch, capsys, "-opt", options_file(tmp_path, opt),
                              "--auto_resume")
    finally:
        lock.release()
    assert_one_line(code, err, f"is in use by pid {os.getpid()} on host", "--auto_resume",
                    "--set name=")
    assert snapshot(tmp_path / "experiments") == before


def test_a_stale_lock_is_taken_over_and_removed_at_the_end(finished, tmp_path):
    exp = copy_run(finished["exp"], tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    with open(os.path.join(exp, LOCK_NAME), "w") as f:
        json.dump({"pid": int(dead), "host": os.uname().nodename, "started": "then"}, f)
    runner = Runner(validate_options(small_options(tmp_path, total_iter=6)), auto_resume=True)
    runner.train()
    assert f"Took over the lock of {exp} from pid {dead}" in log_text(exp)
    assert not os.path.exists(os.path.join(exp, LOCK_NAME))


def test_a_lock_kept_by_a_dead_owners_children_is_waited_for(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 1, "host": os.uname().nodename}))
    holder = subprocess.Popen(  # like a data-loader worker that outlives its killed parent
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR);"
         " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(1)",
         str(tmp_path / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    lock = RunLock(str(tmp_path))
    assert holder.poll() is not None and lock.stale.startswith(f"pid {2**22 + 1}")
    lock.release()


@pytest.mark.parametrize("alive", [True, False])
def test_without_flock_the_pid_decides(tmp_path, monkeypatch, alive):
    def no_flock(fd, op):
        raise OSError(38, "Function not implemented")

    folder = tmp_path / "run"
    folder.mkdir()
    pid = os.getpid() if alive else 2**22 + 1  # above the kernel's default pid_max
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": os.uname().nodename}))
    monkeypatch.setattr(fcntl, "flock", no_flock)
    if alive:
        with pytest.raises(RunLockedError, match=f"in use by pid {pid}"):
            RunLock(str(folder))
    else:
        lock = RunLock(str(folder))
        assert lock.stale.startswith(f"pid {pid}")
        lock.release()


# ---------------------------------------------------------------------- data checked up front
def paired_val(opt, gt_dir, lq_dir):
    opt["datasets"]["val"] = {"type": "PairedImageDataset", "dataroot_gt": str(gt_dir),
                              "dataroot_lq": str(lq_dir)}
    return opt


@pytest.mark.parametrize("damage, fragment", [
    ("truncate", "rocket.png': it is truncated or corrupt"),
    ("resize", "LQ '{lq}/rocket.png' is 20x48"),
])
def test_a_bad_validation_pair_fails_before_iteration_1(tmp_path, photo_pairs, monkeypatch,
                                                        capsys, damage, fragment):
    gt_dir, lq_dir = photo_pairs
    target = lq_dir / "rocket.png"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:200])
    else:
        cv2.imwrite(str(target), cv2.imread(str(target))[:20])
    opt = paired_val(small_options(tmp_path), gt_dir, lq_dir)
    code, err = train_cli(monkeypatch, capsys, "-opt", options_file(tmp_path, opt))
    assert_one_line(code, err, "datasets.val: ", fragment.format(lq=lq_dir))
    assert not (tmp_path / "experiments").exists()


@HOOKS.register_module(force=True)
class BreakFileAt(Hook):
    """Truncates ``path`` at iteration ``at``, as a disk or a colleague might."""

    def __init__(self, path: str, at: int) -> None:
        self.path, self.at = path, at

    def after_train_iter(self, runner, it, batch, record):
        if it == self.at:
            with open(self.path, "r+b") as f:
                f.truncate(100)


def test_a_validation_failing_mid_run_saves_its_iteration_first(tmp_path, photo_pairs):
    gt_dir, lq_dir = photo_pairs
    opt = paired_val(small_options(tmp_path, total_iter=6), gt_dir, lq_dir)
    opt["logger"]["save_checkpoint_freq"] = 100
    opt["val"]["val_freq"] = 3
    opt["custom_hooks"] = [{"type": "BreakFileAt", "path": str(lq_dir / "coffee.png"), "at": 4}]
    runner = Runner(validate_options(opt))
    with pytest.raises(DataError, match=r"coffee.png"):
        runner.train()
    states = os.listdir(os.path.join(runner.exp_dir, "training_states"))
    assert states == ["6.state"]
    saved = torch.load(os.path.join(runner.exp_dir, "training_states", "6.state"),
                       weights_only=True)
    assert saved["iter"] == 6 and "Validation at iter 6 failed" in log_text(runner.exp_dir)
