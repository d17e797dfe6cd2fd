"""Runner.replace_model: a mid-run swap to a network with fewer channels is one transaction
(optimizer state carried by name, LR schedule continuing, EMA pruned alike, old objects freed),
survives stop/resume bit-identically, and its weights file describes the smaller network."""
import gc
import os
import weakref

import pytest
import torch

from conftest import StopAt, load_tool, tiny_options
from llcv.engine.hooks import Hook
from llcv.engine.runner import Runner, RunInterrupted
from llcv.memory import resident_bytes
from llcv.network import slice_tensor
from llcv.options import validate_options

ENC, UP, DEC = [0, 2, 3], [1, 3], [0, 1, 3]
# Hand-made plan for UNet(widths=[4, 8], blocks=[1, 1]): prune the first encoder conv (its
# output feeds the down conv and, through the concat skip, channels 4..7 of the first decoder
# conv), the transposed conv (channels 0..3 of that concat) and the first decoder conv (feeding
# the tail).
PLAN = {"keep": {
    "encoders.0.0.weight": {0: ENC}, "encoders.0.0.bias": {0: ENC},
    "downs.0.weight": {1: ENC},
    "ups.0.weight": {1: UP}, "ups.0.bias": {0: UP},
    "decoders.0.0.weight": {0: DEC, 1: UP + [4 + i for i in ENC]},
    "decoders.0.0.bias": {0: DEC},
    "tail.weight": {1: DEC},
}}
SWAP_AT = 4


class SwapAt(Hook):
    """Replaces the network at iteration ``k``; with ``inspect``, snapshots what the test checks
    just before and just after the swap."""

    priority = 60  # after the EMA update, before the checkpoint of the same iteration

    def __init__(self, k, inspect=False):
        self.k, self.inspect, self.seen = k, inspect, {}

    def after_train_iter(self, runner, it, batch, record):
        if it != self.k:
            return
        if not self.inspect:
            runner.replace_model(PLAN)
            return
        state = runner.state
        self.seen["model"] = weakref.ref(state.model)
        self.seen["params"] = [weakref.ref(p) for p in state.model.parameters()]
        self.seen["adam"] = {n: {k: v.clone() for k, v in state.optimizer.state[p].items()}
                             for n, p in state.model.named_parameters()}
        self.seen["ema"] = ema_state(runner)
        self.seen["initial_lr"] = state.optimizer.param_groups[0]["initial_lr"]
        self.seen["ema_bytes"] = runner.hook("MemoryHook").estimates.extra_train_bytes
        runner.replace_model(PLAN)
        self.seen["after"] = snapshot(runner)


def ema_state(runner):
    return {k: v.clone() for k, v in runner.hook("EMAHook").ema.module.state_dict().items()}


def snapshot(runner):
    """What the test checks right after the swap."""
    state, model = runner.state, runner.model
    held = [p for group in state.optimizer.param_groups for p in group["params"]]
    named = dict(model.named_parameters())
    return {"held_is_live": [id(p) for p in held] == [id(p) for p in named.values()],
            "adam": {n: {k: v.clone() for k, v in state.optimizer.state[p].items()}
                     for n, p in named.items()},
            "initial_lr": state.optimizer.param_groups[0]["initial_lr"],
            "ema": ema_state(runner), "shapes": {k: v.shape for k, v in model.state_dict().items()},
            "weights": {n: p.detach().clone() for n, p in named.items()},
            "widths": (model.encoders[0][0].out_channels, model.decoders[0][0].in_channels),
            "loss": fixed_batch_loss(runner)}


class Record(Hook):
    """Keeps the LR, loss and memory estimates of every iteration."""

    priority = 90

    def __init__(self):
        self.lr, self.loss, self.est = {}, {}, {}

    def after_train_iter(self, runner, it, batch, record):
        self.lr[it], self.loss[it] = record["train/lr"], record["train/l_pix"]
        self.est[it] = (record["mem/est_train_peak_mb"], record["mem/est_infer_peak_mb"])



def options(tmp_path, name, total_iter=10):
    opt = tiny_options(tmp_path, total_iter=total_iter, ema_decay=0.9)
    opt["train"]["scheduler"] = {"type": "CosineAnnealingLR", "T_max": total_iter, "eta_min": 1e-5}
    opt["logger"].update(save_checkpoint_freq=100, print_freq=1)
    opt["val"]["val_freq"] = 100
    return validate_options(dict(opt, name=name))


def runner_with(opt, *hooks, **kwargs):
    runner = Runner(opt, **kwargs)
    runner.hooks = sorted(runner.hooks + list(hooks), key=lambda h: h.priority)
    return runner


def fixed_batch_loss(runner):
    batch = runner.validators[0].loader.dataset[0]
    with torch.no_grad():
        out = runner.model.eval()(batch["lq"][None])
    runner.model.train()
    return (out - batch["gt"][None]).abs().mean().item()


def test_swap_carries_optimizer_ema_and_schedule(tmp_path):
    swap, record = SwapAt(SWAP_AT, inspect=True), Record()
    runner = runner_with(options(tmp_path, "swap", total_iter=40), swap, record)
    runner.train()
    seen, after = swap.seen, swap.seen["after"]
    gc.collect()
    assert seen["model"]() is None and all(ref() is None for ref in seen["params"])

    assert after["held_is_live"] and after["widths"] == (3, 5)
    for name, new in after["adam"].items():
        old = seen["adam"][name]
        assert torch.equal(new["step"], old["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            expected = slice_tensor(old[key], PLAN["keep"].get(name, {}))
            assert torch.equal(new[key], expected), (name, key)
    assert after["initial_lr"] == seen["initial_lr"]
    assert {k: v.shape for k, v in after["ema"].items()} == after["shapes"]
    for name, value in after["ema"].items():
        assert torch.equal(value, slice_tensor(seen["ema"][name], PLAN["keep"].get(name, {})))

    # training goes on: the schedule continues without a jump, every parameter is updated and
    # the loss on a fixed image goes down
    schedule = runner.state.lr_schedule
    assert record.lr[SWAP_AT + 1] == pytest.approx(schedule.lr_at(seen["initial_lr"], SWAP_AT + 1))
    model = runner.model
    assert all(not torch.equal(after["weights"][n], p) for n, p in model.named_parameters())
    assert fixed_batch_loss(runner) < after["loss"]

    # the estimates follow the smaller network from the next iteration, the EMA's bytes too
    assert record.est[SWAP_AT - 1] == record.est[SWAP_AT]  # estimated before the swap
    assert all(a < b for a, b in zip(record.est[SWAP_AT + 1], record.est[SWAP_AT]))
    ema_bytes = runner.hook("MemoryHook").estimates.extra_train_bytes
    assert ema_bytes == resident_bytes(runner.hook("EMAHook").ema.module) < seen["ema_bytes"]


def test_stop_after_swap_resumes_bit_identical(tmp_path, capsys):
    straight = runner_with(options(tmp_path, "straight"), SwapAt(SWAP_AT))
    straight.train()

    stopped = runner_with(options(tmp_path, "resumed"), SwapAt(SWAP_AT), StopAt(SWAP_AT))
    with pytest.raises(RunInterrupted, match=f"iter {SWAP_AT}"):
        stopped.train()
    resumed = Runner(options(tmp_path, "resumed"), auto_resume=True)  # options: dense network_g
    assert resumed.start_iter == SWAP_AT and resumed.state.spec["plan"] == PLAN
    resumed.train()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    ema_a = straight.hook("EMAHook").ema.module.state_dict().values()
    ema_b = resumed.hook("EMAHook").ema.module.state_dict().values()
    assert all(torch.equal(a, b) for a, b in zip(ema_a, ema_b))

    # the weights file alone rebuilds the smaller network for infer and profile_model
    weights = os.path.join(resumed.exp_dir, "models", "net_g_latest.pth")
    figures = load_tool("profile_model").main(
        ["--checkpoint", weights, "--input-shape", "1", "3", "24", "20", "--no-layers"])
    dense = Runner(options(tmp_path, "dense")).model
    assert figures["params"] == sum(p.numel() for p in resumed.model.parameters())
    assert figures["params"] < sum(p.numel() for p in dense.parameters())
    assert figures["network"]["plan"] == PLAN
    photo = tmp_path / "in.png"
    import cv2
    import numpy as np
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (21, 27, 3), np.uint8))
    capsys.readouterr()
    written = load_tool("infer").main(["--checkpoint", weights, "--input", str(photo),
                                       "--output", str(tmp_path / "out"), "--no-progress"])
    assert cv2.imread(written[0]).shape == (21, 27, 3)
    printed = capsys.readouterr().out
    assert "network_g (pruned): " in printed and f"{figures['params']:,} parameters;" in printed
