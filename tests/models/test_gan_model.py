"""SRGANModel / ESRGANModel: a tiny GAN run logs generator and discriminator losses (JSONL, text,
TensorBoard), keeps the discriminator and its optimizer in plain-tensor training states and
resumes bit-exactly (EMA included); two gloo ranks keep both players identical; BasicSR's
net_d_iters/net_d_init_iters; the generator step never trains the discriminator; ESRGAN's
relativistic terms; the discriminator draws from its own seed and the memory estimate leaves
it untouched."""
import json
import math
import types

import pytest
import torch

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_two_ranks, tiny_options
from engine.test_runner import StopAt
from llcv.engine.runner import Runner, RunInterrupted
from llcv.errors import OptionError
from llcv.memory import estimate_peak_memory
from llcv.network import build_network, network_spec
from llcv.options import validate_options
from llcv.registry import MODELS, build

D_LOGGED = ("train/l_d_real", "train/l_d_fake", "train/out_d_real", "train/out_d_fake")


def gan_options(tmp_path, model_type="SRGANModel", total_iter=6, **train):
    opt = tiny_options(tmp_path, total_iter=total_iter, **train)
    opt["model_type"] = model_type
    opt["network_d"] = {"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": 4}
    opt["train"].update(optim_d={"type": "Adam", "lr": 1e-3, "betas": [0.9, 0.99]},
                        gan_opt={"type": "GANLoss", "gan_type": "vanilla", "loss_weight": 0.1})
    return opt


def step_and_state(tmp_path, model_type="SRGANModel", **train):
    """A built step, a bare training state and a batch."""
    opt = validate_options(gan_options(tmp_path, model_type, **train))
    torch.manual_seed(0)
    model = build_network(network_spec(opt["network_g"]))
    state = types.SimpleNamespace(model=model, train_model=model,
                                  optimizer=torch.optim.Adam(model.parameters(), 1e-2))
    step = build(MODELS, {"type": model_type}, "model_type", opt=opt, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    batch = {"lq": torch.rand(2, 3, 16, 16, generator=gen),
             "gt": torch.rand(2, 3, 16, 16, generator=gen)}
    return step, state, batch


def snapshot(module):
    return {n: t.detach().clone() for n, t in module.state_dict().items()}


def same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


def test_tiny_gan_run_logs_both_players_and_resumes_bit_exactly(tmp_path):
    opt = gan_options(tmp_path, ema_decay=0.9)
    opt["logger"].update(print_freq=1, save_checkpoint_freq=100)
    opt["val"]["val_freq"] = 100
    straight = Runner(validate_options(dict(opt, name="straight")))
    d_init = snapshot(straight.state.step.d.net)
    straight.train()
    with open(tmp_path / "experiments" / "straight" / "metrics.jsonl") as f:
        train = [r for r in map(json.loads, f) if "train/l_g_pix" in r]
    assert len(train) == 6
    for key in ("train/l_g_pix", "train/l_g_gan", *D_LOGGED):
        assert all(math.isfinite(r[key]) for r in train), key
    assert not same(d_init, snapshot(straight.state.step.d.net))  # the discriminator learnt
    exp = tmp_path / "experiments" / "straight"
    text = next(exp.glob("*.log")).read_text()
    assert all(f"{key}:" in text for key in ("train/l_g_gan", *D_LOGGED))
    acc = EventAccumulator(str(exp / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    for key in ("train/l_g_gan", *D_LOGGED):
        assert [e.step for e in acc.Scalars(key)] == list(range(1, 7)), key
    saved = torch.load(exp / "training_states" / "6.state", weights_only=True)["step"]
    assert same(saved["net_d"], snapshot(straight.state.step.d.net))
    assert saved["optimizer_d"]["state"] and "weight_orig" in "".join(saved["net_d"])

    interrupted = Runner(validate_options(dict(opt, name="resumed")))
    interrupted.hooks.append(StopAt(3))
    with pytest.raises(RunInterrupted):
        interrupted.train()
    resumed = Runner(validate_options(dict(opt, name="resumed")), auto_resume=True)
    assert resumed.start_iter == 3
    resumed.train()
    assert same(snapshot(straight.model), snapshot(resumed.model))
    assert same(snapshot(straight.state.step.d.net), snapshot(resumed.state.step.d.net))
    d_opt = [straight.state.step.d.optimizer, resumed.state.step.d.optimizer]
    moments = [[s["exp_avg"] for s in o.state.values()] for o in d_opt]
    assert all(torch.equal(a, b) for a, b in zip(*moments))
    ema = [r.hook("EMAHook").ema.module for r in (straight, resumed)]
    assert same(snapshot(ema[0]), snapshot(ema[1]))


def test_generator_waits_for_net_d_init_iters_and_steps_every_net_d_iters(tmp_path):
    step, state, batch = step_and_state(tmp_path, net_d_iters=2, net_d_init_iters=2)
    for it, g_updates in ((1, False), (2, False), (3, False), (4, True)):
        g, d = snapshot(state.model), snapshot(step.d.net)
        record = step(state, batch, it)
        assert same(g, snapshot(state.model)) is not g_updates, it
        assert not same(d, snapshot(step.d.net)), it  # the discriminator learns every iteration
        assert ("train/l_g_gan" in record) is g_updates and set(D_LOGGED) <= set(record)


def test_generator_step_gives_the_discriminator_no_gradient(tmp_path):
    step, state, batch = step_and_state(tmp_path)
    step.generator_step(state, batch["lq"], batch["gt"], 1)
    assert all(p.grad is None and p.requires_grad for p in step.d.net.parameters())
    assert all(p.grad is not None for p in state.model.parameters())


def test_esrgan_terms_are_relativistic_averages(tmp_path):
    step, state, batch = step_and_state(tmp_path, "ESRGANModel")
    real, fake = torch.tensor([[2.0], [1.0]]), torch.tensor([[-1.0], [0.5]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    terms = step.discriminator_terms(real, fake)
    assert float(terms["l_d_real"]) == pytest.approx(
        0.5 * float(bce(real - fake.mean(), torch.ones_like(real))))
    assert float(terms["l_d_fake"]) == pytest.approx(
        0.5 * float(bce(fake - real.mean(), torch.zeros_like(fake))))
    record = step(state, batch, 1)
    assert record["train/l_g_gan"] > 0 and set(D_LOGGED) <= set(record)


def test_discriminator_has_its_own_seed_and_leaves_the_run_rng_alone(tmp_path):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first, _, _ = step_and_state(tmp_path)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), expected)
    second, _, _ = step_and_state(tmp_path)
    assert same(snapshot(first.d.net), snapshot(second.d.net))


def test_memory_estimate_counts_the_discriminator_and_leaves_it_untouched(tmp_path):
    step, state, batch = step_and_state(tmp_path)
    before = snapshot(step.d.net)
    shape = [2, 3, 16, 16]
    with_d = estimate_peak_memory(state.model, shape, "train", loss=step.memory_loss(),
                                  target_shape=shape)
    without = estimate_peak_memory(state.model, shape, "train", loss="l1", target_shape=shape)
    assert with_d.total > without.total
    assert same(before, snapshot(step.d.net)) and step.d.net.training


def test_options_name_what_a_gan_needs(tmp_path):
    opt = gan_options(tmp_path)
    opt["network_d"] = {"type": "UNet"}
    with pytest.raises(OptionError, match="network_d.type: UNet is not a discriminator"):
        step_and_state_from(opt)
    opt = gan_options(tmp_path)
    opt["train"]["gan_opt"] = {"type": "L1Loss"}
    with pytest.raises(OptionError, match="train.gan_opt: expected {type: GANLoss"):
        step_and_state_from(opt)
    opt = gan_options(tmp_path)
    del opt["train"]["optim_d"]
    with pytest.raises(OptionError, match="train.optim_d: missing"):
        validate_options(opt)
    with pytest.raises(OptionError, match="train.amp: SRGANModel trains in float32"):
        step_and_state_from(gan_options(tmp_path, amp="bf16"))


def step_and_state_from(opt):
    opt = validate_options(opt)
    return build(MODELS, {"type": opt["model_type"]}, "model_type", opt=opt,
                 device=torch.device("cpu"))


DDP_SCRIPT = """
import gc

from llcv.engine.dist import close_dist, param_checksum
from llcv.engine.runner import Runner
from llcv.options import load_options

runner = Runner(load_options(sys.argv[1]), launcher="pytorch")
d = runner.state.step.d
before = param_checksum(d.net)
runner.train()
moments = [s["exp_avg"].double().sum().item() for s in d.optimizer.state.values()]
print("checksum", repr((param_checksum(runner.model), param_checksum(d.net), moments)))
print("d learnt", param_checksum(d.net) != before, flush=True)
# release the runner (its DDP wrappers' gloo threads) before the process group
del runner, d
gc.collect()
close_dist()
"""


def two_ranks(tmp_path, opt) -> list[str]:
    """Train ``opt`` on two gloo ranks; each rank's ``checksum`` line (network, discriminator,
    discriminator's Adam moments), after checking both learnt."""
    outs = run_two_ranks(tmp_path, opt, DDP_SCRIPT)
    assert all("d learnt True" in out for out in outs)
    return [line for out in outs for line in out.splitlines() if line.startswith("checksum")]


def test_two_gloo_ranks_keep_generator_and_discriminator_identical(tmp_path):
    opt = gan_options(tmp_path, total_iter=4, ema_decay=0.9)
    opt["dist_params"] = {"timeout": 60}
    opt["val"]["val_freq"] = 100
    sums = two_ranks(tmp_path, opt)
    assert len(sums) == 2 and sums[0] == sums[1]  # the ranks saw different batches
    saved = torch.load(tmp_path / "experiments" / "tiny" / "training_states" / "4.state",
                       weights_only=True)["step"]
    total = sum(t.double().sum().item() for t in saved["net_d"].values()
                if t.dtype.is_floating_point)
    assert repr(total) in sums[0]  # rank 0 saved the discriminator it trained
    assert saved["optimizer_d"]["state"]
