"""Pruning during training: a ``prune:`` section prunes at its schedule points toward its
target (met at the last one), logs every event, survives stop/resume exactly (Taylor sums
included), prunes identically on two ranks, and refuses an unreachable target up front."""
import json
import os

import pytest
import torch

from conftest import StopAt, finish, tiny_options, write_yaml
from llcv.engine.prune_hook import step_target
from llcv.engine.runner import Runner, RunInterrupted
from llcv.errors import LLCVError, OptionError
from llcv.memory import estimate_peak_memory
from llcv.options import validate_options
from test_distributed import launch

SHAPE = [1, 3, 128, 128]  # the dense UNet below: 3.97 MiB estimated; its floor 1.7 MiB
BUDGET = 2.5


def prune_options(tmp_path, name="prune", total_iter=10, **prune):
    opt = tiny_options(tmp_path, total_iter=total_iter, ema_decay=0.9)
    opt["name"] = name
    opt["network_g"] = {"type": "UNet", "widths": [8, 16], "blocks": [1, 1]}
    opt["train"]["scheduler"] = {"type": "CosineAnnealingLR", "T_max": total_iter,
                                 "eta_min": 1e-5}
    opt["logger"].update(print_freq=1, save_checkpoint_freq=100)
    opt["val"]["val_freq"] = 100
    opt["prune"] = {"type": "MemoryAwarePruner", "schedule": [3, 6],
                    "target": {"peak_memory_mb": BUDGET, "input_shape": SHAPE},
                    "importance": {"type": "taylor", "iterations": 2}, "round_to": 2, **prune}
    return validate_options(opt)



def records(runner):
    with open(os.path.join(runner.exp_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_splits_reach_the_target_at_the_last_point():
    ratio = {"channel_ratio": 0.75}
    kept = 1.0
    for step in (1, 2, 3):
        kept *= 1 - step_target(ratio, step, 3, "geometric")["channel_ratio"]
    assert kept == pytest.approx(0.25)
    assert step_target(ratio, 1, 3, "linear")["channel_ratio"] == pytest.approx(0.25)
    assert step_target(ratio, 2, 3, "linear")["channel_ratio"] == pytest.approx(1 - 0.5 / 0.75)
    peak = {"peak_memory_mb": 10.0, "input_shape": SHAPE}
    assert step_target(peak, 1, 2, "geometric", 40.0)["peak_memory_mb"] == pytest.approx(20.0)
    assert step_target(peak, 1, 2, "linear", 40.0)["peak_memory_mb"] == pytest.approx(25.0)
    assert step_target(peak, 2, 2, "linear", 40.0)["peak_memory_mb"] == 10.0


def test_prunes_at_the_schedule_and_meets_the_target(tmp_path):
    runner = Runner(prune_options(tmp_path))
    dense = sum(p.numel() for p in runner.model.parameters())
    runner.train()
    hook = runner.hook("PruneHook")
    assert hook.done == [3, 6]
    model = runner.model
    held = [p for g in runner.state.optimizer.param_groups for p in g["params"]]
    assert [id(p) for p in held] == [id(p) for p in model.parameters()]
    assert sum(p.numel() for p in model.parameters()) < dense
    est = estimate_peak_memory(model, SHAPE, "inference", device="cpu").total / 2 ** 20
    assert est <= BUDGET
    events = [r for r in records(runner) if "prune/event" in r]
    assert [r["iter"] for r in events] == [3, 6]
    assert all(r["prune/est_infer_peak_mb"] > 0 and r["prune/widths"] for r in events)
    assert events[-1]["prune/est_infer_peak_mb"] <= BUDGET
    assert events[-1]["prune/measured_infer_peak_mb"] <= BUDGET  # the allocator agrees
    assert "prune/before_alloc_peak_mb" in events[0]
    after = [r for r in records(runner) if "prune/next_iter_alloc_peak_mb" in r]
    assert [r["iter"] for r in after] == [4, 7]
    losses = [r["train/l_pix"] for r in records(runner) if "train/l_pix" in r]
    assert all(torch.isfinite(torch.tensor(losses)))
    weights = torch.load(os.path.join(runner.exp_dir, "models", "net_g_latest.pth"),
                         weights_only=True)
    assert weights["network"]["plan"] is not None


@pytest.mark.parametrize("stop_at", [5, 6])  # inside the Taylor window of point 6; after it
def test_stop_and_resume_around_a_prune_point_is_bit_identical(tmp_path, stop_at):
    straight = Runner(prune_options(tmp_path, "straight"))
    straight.train()
    stopped = Runner(prune_options(tmp_path, "resumed"))
    stopped.hooks.append(StopAt(stop_at))
    with pytest.raises(RunInterrupted):
        stopped.train()
    resumed = Runner(prune_options(tmp_path, "resumed"), auto_resume=True)
    assert resumed.start_iter == stop_at and resumed.state.spec["plan"] is not None
    resumed.train()
    assert resumed.hook("PruneHook").done == [3, 6]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_unreachable_target_is_refused_before_the_run_folder_is_made(tmp_path):
    opt = prune_options(tmp_path, target={"peak_memory_mb": 0.001, "input_shape": SHAPE})
    with pytest.raises(LLCVError, match=r"target.peak_memory_mb: .* is below the .* MiB this "
                                        r"network reaches"):
        Runner(opt)
    assert not os.path.exists(os.path.join(opt["path"]["experiments_root"], opt["name"]))


def test_bad_prune_sections_name_the_key(tmp_path):
    with pytest.raises(OptionError, match=r"^prune.schedule: iterations must increase"):
        prune_options(tmp_path, schedule=[6, 3])
    with pytest.raises(OptionError, match=r"^prune.schedule: .* train.total_iter = 10"):
        prune_options(tmp_path, schedule=[3, 60])
    with pytest.raises(OptionError, match=r"^prune.split: 'cubic'"):
        prune_options(tmp_path, split="cubic")
    with pytest.raises(OptionError, match=r"^prune.round_too: unknown option"):
        prune_options(tmp_path, round_too=4)
    with pytest.raises(OptionError, match=r"^prune.target"):
        prune_options(tmp_path, target={"peak_memory_mb": 1})


def test_two_ranks_prune_at_the_same_points_identically(tmp_path):
    opt = prune_options(tmp_path, total_iter=6, schedule=[2, 4])
    opt["dist_params"] = {"timeout": 60}
    outs = finish(launch(write_yaml(tmp_path / "o.yml", opt), 2))
    log = outs[0][0]
    assert log.count("weights identical on all 2 ranks after the model was replaced") == 2
    assert "weights identical on all 2 ranks at iter 6" in log
    assert "Prune event 2/2 at iter 4" in log
