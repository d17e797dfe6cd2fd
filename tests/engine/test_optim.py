"""Closed-form LR schedules agree with torch's schedulers; warm-up scales linearly."""
import math

import pytest
import torch

from llcv.optim.optimizers import build_optimizer
from llcv.optim.schedulers import LRSchedule
from llcv.errors import OptionError


def _torch_lrs(make_sched, n):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched, lrs = make_sched(opt), []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("cfg, make", [
    ({"type": "CosineAnnealingLR", "T_max": 20, "eta_min": 1e-4},
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=1e-4)),
    ({"type": "MultiStepLR", "milestones": [5, 12], "gamma": 0.5},
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[5, 12], gamma=0.5)),
])
def test_schedules_match_torch(cfg, make):
    schedule = LRSchedule(cfg, total_iter=20)
    ours = [schedule.lr_at(0.1, it) for it in range(1, 21)]
    assert ours == pytest.approx(_torch_lrs(make, 20), rel=1e-9, abs=1e-12)


def test_warmup_scales_main_schedule():
    schedule = LRSchedule({"type": "CosineAnnealingLR", "T_max": 100}, total_iter=100, warmup_iter=10)
    assert schedule.lr_at(1.0, 5) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 4 / 100)))
    assert schedule.lr_at(1.0, 11) == pytest.approx(0.5 * (1 + math.cos(math.pi * 10 / 100)))


def test_apply_sets_group_lr_from_initial_lr():
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))],
                          {"type": "AdamW", "lr": 1e-3, "betas": [0.9, 0.9]})
    assert opt.param_groups[0]["betas"] == (0.9, 0.9)
    schedule = LRSchedule({"type": "MultiStepLR", "milestones": [2]}, total_iter=4)
    assert schedule.apply(opt, 3) == [pytest.approx(5e-4)]
    assert schedule.apply(opt, 1) == [pytest.approx(1e-3)]  # closed form: no drift


def test_unknown_optimizer_named():
    with pytest.raises(OptionError, match=r"train.optim_g.type: unknown optimizer type 'Adamm'.*Adam"):
        build_optimizer([], {"type": "Adamm", "lr": 1})


def test_basicsr_schedulers_against_torch_and_hand_values():
    # one period of CosineAnnealingRestartLR is torch's cosine annealing over that period
    schedule = LRSchedule({"type": "CosineAnnealingRestartLR", "periods": [20],
                           "restart_weights": [1], "eta_min": 1e-4}, total_iter=20)
    ours = [schedule.lr_at(0.1, it) for it in range(1, 21)]
    theirs = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 20, 1e-4), 20)
    assert ours == pytest.approx(theirs, rel=1e-9)
    # restarts: the second period starts again at weight * base (step 10 ends period one)
    restart = LRSchedule({"type": "CosineAnnealingRestartLR", "periods": [10, 10],
                          "restart_weights": [1, 0.5], "eta_min": 0.0}, total_iter=20)
    assert restart.lr_at(1.0, 11) == pytest.approx(0.0)  # step 10: the end of the first cosine
    assert restart.lr_at(1.0, 12) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi / 10)))
    # Restormer's recipe: constant 3e-4 for the first cycle, then cosine down to 1e-6
    cyclic = LRSchedule({"type": "CosineAnnealingRestartCyclicLR", "periods": [92000, 208000],
                         "restart_weights": [1, 1], "eta_mins": [3e-4, 1e-6]}, total_iter=300000)
    assert cyclic.lr_at(3e-4, 1) == cyclic.lr_at(3e-4, 92001) == pytest.approx(3e-4)
    assert cyclic.lr_at(3e-4, 92001 + 104000) == pytest.approx(1e-6 + 0.5 * (3e-4 - 1e-6))
    assert cyclic.lr_at(3e-4, 300001) == pytest.approx(1e-6)
    # MultiStepRestartLR without restarts is torch's MultiStepLR; a restart resets the decay
    steps = LRSchedule({"type": "MultiStepRestartLR", "milestones": [5, 12], "gamma": 0.5},
                       total_iter=20)
    torch_steps = _torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 12], 0.5), 20)
    assert [steps.lr_at(0.1, it) for it in range(1, 21)] == pytest.approx(torch_steps)
    restarted = LRSchedule({"type": "MultiStepRestartLR", "milestones": [4, 8, 12],
                            "gamma": 0.5, "restarts": [0, 10], "restart_weights": [1, 0.8]},
                           total_iter=20)
    expected = {1: 1.0, 5: 0.5, 9: 0.25, 11: 0.8, 13: 0.4}  # iteration -> factor (step = it - 1)
    assert {it: restarted.lr_at(1.0, it) for it in expected} == pytest.approx(expected)
    # NAFNet's name; BasicSR files write iteration lists as !!float
    assert LRSchedule({"type": "TrueCosineAnnealingLR", "T_max": 20, "eta_min": 1e-4},
                      total_iter=20).lr_at(0.1, 5) == pytest.approx(ours[4])
    assert LRSchedule({"type": "MultiStepLR", "milestones": [2e5]}, total_iter=1).schedule \
        .milestones == [200000]
