"""Runs as separate processes: two with one name at once, ``kill -9`` at random moments, a full
disk. One driver process forks every run (tests/engine/process_driver.py), so imports are paid
once."""
import json
import os
import subprocess
import sys

import pytest
import torch

from cli_runs import assert_one_line, options_file, small_options
from conftest import ROOT

DRIVER = os.path.join(ROOT, "tests", "engine", "process_driver.py")
KILLS = 10


def race_options(root) -> dict:
    opt = small_options(root, total_iter=100000)  # the one that trains is stopped by SIGTERM
    opt["logger"].update(use_tb_logger=True, print_freq=1)
    opt["val"]["val_freq"] = 100000
    return opt


def kill_options(root) -> dict:
    opt = small_options(root, "killed", total_iter=60)
    opt["val"]["val_freq"] = 100000
    opt["logger"].update(print_freq=100000)
    return opt


def disk_options(root) -> dict:
    opt = small_options(root, total_iter=6)
    del opt["val"], opt["datasets"]["val"]  # its progress bar would share stderr
    opt["custom_hooks"] = [{"type": "GrowingState", "from_iter": 6, "mb": 2}]
    return opt


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Every scenario of the driver, run once; their outcomes and option files."""
    roots = {name: tmp_path_factory.mktemp(name) for name in ("race", "kills", "disk_full")}
    files = {name: options_file(roots[name], make(roots[name])) for name, make in
             (("race", race_options), ("kills", kill_options), ("disk_full", disk_options))}
    plan = {"race": {"options": files["race"]},
            "kills": {"options": files["kills"], "kills": KILLS, "seed": 0},
            "disk_full": {"options": files["disk_full"], "limit": 1 << 20}}
    plan_path = roots["race"] / "plan.json"
    plan_path.write_text(json.dumps(plan))
    done = subprocess.run([sys.executable, DRIVER, str(plan_path)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: {**out[name], "root": roots[name]} for name in out}


def test_two_runs_with_one_name_at_once_only_one_trains(report):
    race = report["race"]
    refused, trained = race["first_ended"], 1 - race["first_ended"]
    assert race["codes"][trained] == 130, race  # trained until stopped, state saved
    assert_one_line(race["codes"][refused], race["stderr"][refused], "is in use by pid",
                    "on host", "--auto_resume")
    experiments = race["root"] / "experiments"
    assert os.listdir(experiments) == ["tiny"]  # nothing archived
    exp = experiments / "tiny"
    assert len(list(exp.glob("*.log"))) == 1 and len(os.listdir(exp / "tb")) == 1
    iters = [json.loads(line)["iter"] for line in (exp / "metrics.jsonl").read_text().splitlines()]
    assert iters == list(range(1, len(iters) + 1))  # one run's records, each once


def test_kill_9_at_random_moments_then_resume_is_bit_identical(report):
    kills = report["kills"]
    assert kills["kills"] == KILLS and kills["codes"] == [0, 0], kills
    assert kills["left_temp"] >= 1  # some kills came inside a checkpoint write
    weights = [torch.load(os.path.join(kills[run], "models", "net_g_latest.pth"),
                          weights_only=True)["params"] for run in ("straight", "run")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    for sub in ("models", "training_states"):
        assert not [n for n in os.listdir(os.path.join(kills["run"], sub))
                    if n.startswith(".tmp_")], sub


def test_a_full_disk_ends_in_one_line_and_the_last_state_resumes(report):
    full = report["disk_full"]
    state = os.path.join(full["root"], "experiments", "tiny", "training_states", "6.state")
    assert_one_line(full["codes"][0], full["stderr"][0], f"cannot write '{state}'",
                    "File too large (EFBIG, errno 27)", "free on its file system", "ulimit -f")
    assert full["left"]["training_states"] == ["2.state", "4.state"]  # no temporary file
    assert full["latest_is"] == ["net_g_4.pth"]  # the last good checkpoint, untouched
    assert full["codes"][1] == 0, full["stderr"][1]
    log = "".join(p.read_text() for p in (full["root"] / "experiments" / "tiny").glob("*.log"))
    assert "4.state at iter 4" in log
