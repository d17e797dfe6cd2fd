"""Option values checked before anything runs: optimizer and scheduler arguments by their
annotations and by building them; error lists name only what a user can set."""
import pytest

from conftest import tiny_options
from llcv.errors import OptionError
from llcv.options import validate_options
from llcv.registry import DATASETS, build


def with_train(tmp_path, **train) -> dict:
    opt = tiny_options(tmp_path)
    opt["train"].update(train)
    return opt


@pytest.mark.parametrize("optim_g, message", [
    ({"type": "Adam", "lr": "abc"}, "train.optim_g.lr: expected a number, got str 'abc'"),
    ({"type": "Adam", "lr": 1e-3, "betas": 0.9},
     "train.optim_g.betas: expected a list [a number, a number], got float 0.9"),
    ({"type": "Adam", "lr": 1e-3, "betas": [0.9, 1.5]},
     "train.optim_g: Invalid beta parameter at index 1: 1.5"),
    ({"type": "SGD", "lr": 0.1, "nesterov": "yes"},
     "train.optim_g.nesterov: expected true/false, got str 'yes'"),
    ({"type": "AdamW", "lr": 1e-3, "weight_decay": -1}, "train.optim_g: Invalid weight_decay"),
])
def test_optimizer_arguments_are_checked(tmp_path, optim_g, message):
    with pytest.raises(OptionError) as caught:
        validate_options(with_train(tmp_path, optim_g=optim_g))
    assert str(caught.value).startswith(message), caught.value


@pytest.mark.parametrize("scheduler, message", [
    ({"type": "CosineAnnealingLR", "T_max": "abc"},
     "train.scheduler.T_max: expected an integer or null, got str 'abc'"),
    ({"type": "MultiStepLR", "milestones": 5},
     "train.scheduler.milestones: expected a list of integers, got int 5"),
    ({"type": "CosineAnnealingRestartCyclicLR", "periods": [0]},
     "train.scheduler: cannot compute the learning rate at iter 1 (division by zero)"),
    ({"type": "MultiStepLR", "milestones": [2], "gamma": -1.0},
     "train.scheduler: gives -1.0 x the base learning rate at iter 3"),
])
def test_scheduler_arguments_are_checked(tmp_path, scheduler, message):
    with pytest.raises(OptionError) as caught:
        validate_options(with_train(tmp_path, scheduler=scheduler))
    assert str(caught.value).startswith(message), caught.value


def test_integral_floats_and_lists_pass(tmp_path):
    opt = validate_options(with_train(
        tmp_path, optim_g={"type": "AdamW", "lr": 2e-3, "betas": [0.9, 0.99], "weight_decay": 0},
        scheduler={"type": "CosineAnnealingLR", "T_max": 6.0, "eta_min": 1e-6}))
    assert opt["logger"]["keep_checkpoints"] == 0


def test_keep_checkpoints_must_not_be_negative(tmp_path):
    opt = tiny_options(tmp_path)
    opt["logger"]["keep_checkpoints"] = -1
    with pytest.raises(OptionError, match=r"^logger.keep_checkpoints: must be >= 0"):
        validate_options(opt)


def test_accepted_lists_name_only_what_users_set(tmp_path):
    section = {"type": "SyntheticPairedDataset", "builtin_images": ["astronaut"],
               "degradation": {"type": "PoissonGaussianNoise"}, "gt_sizee": 32}
    with pytest.raises(OptionError) as caught:
        build(DATASETS, section, "datasets.train", phase="train")
    assert "accepted: " in str(caught.value) and "phase" not in str(caught.value)
    opt = with_train(tmp_path, optim_g={"type": "Adam", "lr": 1e-3, "moment": 0.9})
    with pytest.raises(OptionError) as caught:
        validate_options(opt)
    assert "accepted: lr, betas" in str(caught.value) and "params" not in str(caught.value)
    with pytest.raises(OptionError, match=r"datasets.train.phase: set by llcv itself"):
        section.pop("gt_sizee")
        build(DATASETS, {**section, "phase": "val"}, "datasets.train", phase="train")
