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
