"""Plug-ins named by the option file: custom hooks (state in checkpoints under a stable name)
and a training step chosen by ``model_type`` (its own state in checkpoints too)."""
import os

import pytest
import torch

from conftest import tiny_options
from llcv.engine.hooks import Hook
from llcv.engine.runner import Runner
from llcv.errors import OptionError
from llcv.models.restoration_model import ImageRestorationModel
from llcv.options import validate_options
from llcv.registry import HOOKS, MODELS


@HOOKS.register_module(force=True)
class CountingHook(Hook):
    """Counts iterations; keeps the count across a resume and adds it to checkpoints."""

    def __init__(self, start: int = 0) -> None:
        self.count = start

    def after_train_iter(self, runner, it, batch, record):
        self.count += 1

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint["counted"] = self.count

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state.get("count", self.count)


@MODELS.register_module(force=True)
class HalfStepModel(ImageRestorationModel):
    """The restoration step that also counts its calls in its own state."""

    def __init__(self, opt, device):
        super().__init__(opt, device)
        self.calls = 0

    def __call__(self, state, batch, it):
        self.calls += 1
        return super().__call__(state, batch, it)

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def options(tmp_path, **extra):
    opt = tiny_options(tmp_path, total_iter=4)
    opt["logger"]["save_checkpoint_freq"] = 2
    opt.update(extra)
    return validate_options(opt)


def test_custom_hooks_are_built_named_and_resumed(tmp_path):
    hooks = [{"type": "CountingHook", "name": "first", "priority": 5},
             {"type": "CountingHook", "name": "second", "start": 100}]
    runner = Runner(options(tmp_path, custom_hooks=hooks))
    assert runner.hooks[0].name == "first" and runner.hook("second").count == 100
    runner.train()
    state = torch.load(os.path.join(runner.exp_dir, "training_states", "4.state"),
                       weights_only=True)
    assert state["hooks"]["first"] == {"count": 4} and state["hooks"]["second"] == {"count": 104}
    assert state["counted"] == 104  # the last hook to add it wins; it is in the state file

    opt = options(tmp_path, custom_hooks=hooks, path={
        "experiments_root": str(tmp_path / "experiments"),
        "resume_state": os.path.join(runner.exp_dir, "training_states", "2.state")})
    resumed = Runner(opt)
    assert resumed.hook("first").count == 2 and resumed.hook("second").count == 102


def test_custom_hook_errors_name_the_entry(tmp_path):
    same = [{"type": "CountingHook"}, {"type": "CountingHook"}]
    with pytest.raises(OptionError, match=r"custom_hooks.1.name: a second hook named"):
        Runner(options(tmp_path, custom_hooks=same))
    with pytest.raises(OptionError, match=r"custom_hooks.0.strat: unknown option"):
        options(tmp_path, custom_hooks=[{"type": "CountingHook", "strat": 1}])
    with pytest.raises(OptionError, match=r"custom_hooks.0.type: unknown hook type"):
        options(tmp_path, custom_hooks=[{"type": "CountingHok"}])


def test_model_type_chooses_the_training_step(tmp_path):
    runner = Runner(options(tmp_path, model_type="HalfStepModel"))
    runner.train()
    assert runner.state.step.calls == 4
    state = torch.load(os.path.join(runner.exp_dir, "training_states", "2.state"),
                       weights_only=True)
    assert state["step"] == {"calls": 2}
    with pytest.raises(OptionError, match=r"model_type: unknown model type 'SRModell'.*SRModel"):
        options(tmp_path, model_type="SRModell")
