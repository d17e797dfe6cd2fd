"""Two CPU processes over gloo, started the way torchrun starts them (environment variables)."""
import json
import os
import signal
import sys
import time

import pytest
import torch

from conftest import (ROOT, communicate_all, finish, run_two_ranks, start_ranks, tiny_options,
                      write_yaml)
from test_replace_model import PLAN
from llcv.engine.runner import Runner
from llcv.options import validate_options

TRAIN = os.path.join(ROOT, "tools", "train.py")


def launch(opt_path, nproc, *args):
    """Start ``nproc`` ranks of tools/train.py with torchrun's environment."""
    return start_ranks([sys.executable, TRAIN, "-opt", str(opt_path), "--launcher", "pytorch",
                        *args], nproc)


def test_two_ranks_train_validate_checkpoint_resume(tmp_path):
    opt = tiny_options(tmp_path, total_iter=6)
    opt["dist_params"] = {"timeout": 60}
    path = write_yaml(tmp_path / "o.yml", opt)
    outs = finish(launch(path, 2))
    exp = tmp_path / "experiments" / "tiny"
    assert "weights identical on all 2 ranks at iter 6" in outs[0][0]
    assert outs[1][0].strip() == ""  # rank 1 writes nothing to the console
    assert "(global 4)" in outs[0][0]
    assert len(list(exp.glob("*.log"))) == 1 and len(list((exp / "tb").iterdir())) == 1
    records = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if "train/l_pix" in r] == [2, 4, 6]
    ddp_psnr = [r["val/psnr"] for r in records if "val/psnr" in r][-1]

    outs = finish(launch(path, 2, "--auto_resume", "--set", "train.total_iter=8"))
    assert "at iter 6" in outs[0][0] and "weights identical on all 2 ranks after resume" in outs[0][0]
    assert "weights identical on all 2 ranks at iter 8" in outs[0][0]

    single = dict(tiny_options(tmp_path), name="single")
    single["path"]["pretrain_network_g"] = str(exp / "models" / "net_g_6.pth")
    runner = Runner(validate_options(single))
    psnr = runner.validators[0].run(runner.model)["val/psnr"]
    assert psnr == pytest.approx(ddp_psnr, abs=1e-6)


def launch_long_run(tmp_path, timeout):
    """Two ranks of an endless run, returned once the first iteration is logged."""
    opt = tiny_options(tmp_path, total_iter=100000)
    opt["dist_params"] = {"timeout": timeout}
    opt["logger"].update(print_freq=1, save_checkpoint_freq=100000)
    opt["val"]["val_freq"] = 100000
    procs = launch(write_yaml(tmp_path / "o.yml", opt), 2)
    jsonl = tmp_path / "experiments" / "tiny" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (jsonl.exists() and jsonl.stat().st_size > 0):
        time.sleep(0.1)
    return procs


def test_killed_rank_makes_survivor_fail_within_timeout(tmp_path):
    procs = launch_long_run(tmp_path, timeout=20)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    out, err = procs[0].communicate(timeout=90)
    elapsed = time.time() - killed_at
    procs[1].communicate()
    assert procs[0].returncode != 0 and elapsed < 30, (elapsed, err)
    assert "lost a peer" in err and "Traceback" not in err, err


def test_sigterm_on_one_rank_stops_both_with_state_saved(tmp_path):
    procs = launch_long_run(tmp_path, timeout=60)
    procs[1].send_signal(signal.SIGTERM)
    outs = communicate_all(procs, 120)
    assert [p.returncode for p in procs] == [130, 130], outs
    states = list((tmp_path / "experiments" / "tiny" / "training_states").glob("*.state"))
    assert len(states) == 1
    assert f"stopped at iter {states[0].stem}" in outs[0][1] and "SIGTERM" in outs[0][1]


SWAP_SCRIPT = """
import gc

from llcv.engine.dist import close_dist, param_checksum
from llcv.engine.hooks import Hook
from llcv.engine.runner import Runner
from llcv.options import load_options


class SwapAt(Hook):
    priority = 60

    def after_train_iter(self, runner, it, batch, record):
        if it == {swap_at}:
            runner.replace_model({plan!r})


runner = Runner(load_options(sys.argv[1]), launcher="pytorch")
runner.hooks = sorted(runner.hooks + [SwapAt()], key=lambda h: h.priority)
runner.train()
print("checksum", repr(param_checksum(runner.model)), flush=True)
# release the runner (its DDP wrappers' gloo threads) before the process group
del runner
gc.collect()
close_dist()
"""


def test_swap_under_two_ranks_keeps_them_identical(tmp_path):
    opt = tiny_options(tmp_path, total_iter=6, ema_decay=0.9)
    opt["dist_params"] = {"timeout": 60}
    outs = run_two_ranks(tmp_path, opt, SWAP_SCRIPT.format(swap_at=3, plan=PLAN))
    sums = [line for out in outs for line in out.splitlines() if line.startswith("checksum")]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert "weights identical on all 2 ranks after the model was replaced" in outs[0]
    assert "weights identical on all 2 ranks at iter 6" in outs[0]
    weights = torch.load(tmp_path / "experiments" / "tiny" / "models" / "net_g_6.pth",
                         weights_only=True)
    assert weights["network"]["plan"] == PLAN
    assert weights["params"]["encoders.0.0.weight"].shape[0] == 3
    assert weights["params_ema"]["encoders.0.0.weight"].shape[0] == 3
