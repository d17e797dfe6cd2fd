"""DCPTModel: the classifier head learns only in the classification step, the generation step
trains the network alone, the head stays out of the weights file, resume mid-pre-training is
bit-exact, fine-tuning follows; every registered arch has default feature layers."""
import importlib.util
import os
import types

import pytest
import torch

from conftest import ROOT, StopAt, run_two_ranks, tiny_options
from llcv.engine.runner import Runner, RunInterrupted
from llcv.errors import LLCVError, OptionError
from llcv.models.dcpt_model import DCPTModel
from llcv.models.deep_features import (DEFAULT_FEATURE_LAYERS, image_channels, probe_shapes,
                                       resolve_feature_layers)
from llcv.network import build_network, network_spec
from llcv.options import validate_options
from llcv.registry import ARCHS, build


def sibling_tests(path: str):
    """Another folder's test module (for its shared tables and helpers)."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3],
                                                  os.path.join(ROOT, "tests", path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ALL_ARCHS = sibling_tests("archs/test_all_archs.py")
TINY = ALL_ARCHS.TINY  # a tiny configuration of every image-to-image arch

def dcpt_options(tmp_path, total_iter=6, iters=4, amp=None, **dcpt):
    opt = tiny_options(tmp_path, total_iter=total_iter, amp=amp, dcpt={"iters": iters, **dcpt})
    opt["model_type"] = "DCPTModel"
    opt["datasets"]["train"] = {"type": "AllInOneDataset", "gt_size": 32,
                                "builtin_images": ["astronaut", "coffee"], "batch_size_per_gpu": 4,
                                "num_worker_per_gpu": 0, "dataset_enlarge_ratio": 4}
    opt["datasets"]["val"] = {"type": "AllInOneDataset", "builtin_images": ["chelsea"],
                              "tasks": ["noise"], "crop_val": 32}
    return opt


def step_and_state(tmp_path, amp=None, **dcpt):
    """A built step with a bare training state (network, its optimizer) and a labelled batch."""
    opt = validate_options(dcpt_options(tmp_path, amp=amp, **dcpt))
    torch.manual_seed(0)
    model = build_network(network_spec(opt["network_g"]))
    state = types.SimpleNamespace(model=model, train_model=model,
                                  optimizer=torch.optim.Adam(model.parameters(), 1e-2),
                                  memory_format=torch.contiguous_format)
    step = DCPTModel(opt, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    batch = {"lq": torch.rand(4, 3, 32, 32, generator=gen),
             "gt": torch.rand(4, 3, 32, 32, generator=gen), "label": torch.tensor([0, 1, 2, 4])}
    return step, state, batch


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def changed(before, module):
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p)}


def test_classification_step_trains_the_head_and_the_layers_up_to_the_features(tmp_path):
    step, state, batch = step_and_state(tmp_path)
    assert step.layers == ["bottleneck"] and step.channels == [8]
    net, head = snapshot(state.model), snapshot(step.head)
    record = step.classification_step(state, batch["lq"], batch["label"], 1)
    assert set(record) == {"train/l_cls", "train/acc_cls"} and record["train/l_cls"] > 0
    assert changed(head, step.head) == set(head)  # every head parameter learnt
    assert all(p.grad is not None for p in step.head.parameters())
    encoder = {n for n in net if n.startswith(("encoders.", "downs.", "bottleneck."))}
    assert changed(net, state.model) == encoder  # the decoder got no gradient and stayed
    assert all(p.grad is None for n, p in state.model.named_parameters() if n not in encoder)


def test_generation_step_trains_the_network_on_clean_images_without_the_head(tmp_path):
    step, state, batch = step_and_state(tmp_path)
    net, head = snapshot(state.model), snapshot(step.head)
    seen = []
    state.model.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    record = step.generation_step(state, batch["gt"], 1)
    assert set(record) == {"train/l_gen"}
    assert len(seen) == 1 and torch.equal(seen[0], batch["gt"])  # input: the clean image
    assert changed(net, state.model) == set(net)  # the whole network learnt
    assert not changed(head, step.head)
    assert all(p.grad is None for p in step.head.parameters())  # no gradient reached the head


def test_one_iteration_is_both_steps_and_fine_tuning_starts_fresh(tmp_path):
    step, state, batch = step_and_state(tmp_path, iters=1)
    record = step(state, batch, 1)
    assert set(record) == {"train/l_cls", "train/acc_cls", "train/l_gen"}
    steps = {n: int(state.optimizer.state[p]["step"]) for n, p in state.model.named_parameters()}
    encoder = ("encoders.", "downs.", "bottleneck.")
    assert {n: 2 if n.startswith(encoder) else 1 for n in steps} == steps  # both / generation
    head = snapshot(step.head)
    assert set(step(state, batch, 2)) == {"train/l_pix"}  # fine-tuning: restoration only
    assert all(s["step"] == 1 for s in state.optimizer.state.values())  # moments were reset
    assert not changed(head, step.head)


def test_a_network_left_returning_its_input_is_reported_at_the_switch(tmp_path, caplog):
    step, state, batch = step_and_state(tmp_path, iters=1)
    step(state, batch, 1)
    with caplog.at_level("WARNING", logger="llcv"):
        step(state, batch, 2)
    assert not caplog.records  # a network that still computes something
    step, state, batch = step_and_state(tmp_path, iters=1)
    step(state, batch, 1)
    with torch.no_grad():  # the collapse seen after auto-encoding: a zero residual
        state.model.tail.weight.zero_()
        state.model.tail.bias.zero_()
    with caplog.at_level("WARNING", logger="llcv"):
        step(state, batch, 2)
    assert "returns its input unchanged" in caplog.text and "train.gen_opt" in caplog.text


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_network_and_head(tmp_path, amp):
    step, state, batch = step_and_state(tmp_path, amp=amp)
    net, head = snapshot(state.model), snapshot(step.head)
    record = step(state, batch, 1)
    assert all(torch.isfinite(torch.tensor(v)) for v in record.values())
    assert changed(head, step.head) == set(head) and changed(net, state.model) == set(net)
    assert ("scaler" in step.state_dict()) == (amp == "fp16")


def test_the_head_stays_out_of_the_weights_file_and_resume_is_bit_exact(tmp_path):
    opt = dcpt_options(tmp_path, total_iter=8, iters=6)
    opt["logger"]["save_checkpoint_freq"] = 100
    opt["val"]["val_freq"] = 100
    straight = Runner(validate_options(dict(opt, name="straight")))
    straight.train()
    weights = torch.load(os.path.join(straight.exp_dir, "models", "net_g_latest.pth"),
                         weights_only=True)
    assert set(weights) == {"params", "network"}
    assert set(weights["params"]) == set(straight.model.state_dict())  # no head tensors
    state = torch.load(os.path.join(straight.exp_dir, "training_states", "8.state"),
                       weights_only=True)
    assert set(state["step"]) == {"head", "head_optimizer"}

    interrupted = Runner(validate_options(dict(opt, name="resumed")))
    interrupted.hooks.append(StopAt(3))  # in the middle of pre-training
    with pytest.raises(RunInterrupted, match="iter 3"):
        interrupted.train()
    resumed = Runner(validate_options(dict(opt, name="resumed")), auto_resume=True)
    assert resumed.start_iter == 3
    resumed.train()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.state.step.head.state_dict().values(),
                    resumed.state.step.head.state_dict().values()):
        assert torch.equal(a, b)


def test_pretrained_weights_start_a_restoration_run(tmp_path):
    pre = Runner(validate_options(dcpt_options(tmp_path, total_iter=2, iters=2)))
    pre.train()
    opt = tiny_options(tmp_path, total_iter=1)
    opt["name"] = "finetune"
    opt["path"]["pretrain_network_g"] = os.path.join(pre.exp_dir, "models", "net_g_latest.pth")
    finetune = Runner(validate_options(opt))
    for a, b in zip(pre.model.state_dict().values(), finetune.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("change, message", [
    ({"iters": 9}, r"^train\.dcpt\.iters: 9 pre-training iterations exceed train\.total_iter"),
    ({"feature_layers": ["bottlenek"]}, r"^train\.dcpt\.feature_layers\[0\]: no module 'bottlenek'"
                                        r" in UNet; did you mean bottleneck"),
    ({"feature_layers": ["tail", "encoders.*"]}, None),
    ({"num_classes": 1}, r"^train\.dcpt\.num_classes: must be >= 2, got 1"),
])
def test_dcpt_options_are_checked(tmp_path, change, message):
    opt = dcpt_options(tmp_path)
    opt["train"]["dcpt"].update(change)
    if message is None:
        step = DCPTModel(validate_options(opt), torch.device("cpu"))
        assert step.layers == ["tail", "encoders.0"] and step.channels == [3, 4]
        return
    with pytest.raises(OptionError, match=message):
        DCPTModel(validate_options(opt), torch.device("cpu"))


def test_missing_dcpt_section_and_unlabelled_data_are_named(tmp_path):
    opt = dcpt_options(tmp_path)
    del opt["train"]["dcpt"]
    with pytest.raises(OptionError, match=r"^train\.dcpt\.iters: missing"):
        validate_options(opt)
    step, state, batch = step_and_state(tmp_path, num_classes=3)
    with pytest.raises(OptionError, match=r"^train\.dcpt\.num_classes: labels must be in \[0, 3\)"):
        step(state, batch, 1)
    with pytest.raises(LLCVError, match=r"^datasets\.train: DCPTModel needs degradation labels"):
        step(state, {"lq": batch["lq"], "gt": batch["gt"]}, 1)


def test_an_upscaling_network_cannot_auto_encode(tmp_path):
    opt = dcpt_options(tmp_path)
    opt["network_g"] = {"type": "EDSR", **TINY["EDSR"][0]}
    with pytest.raises(OptionError, match=r"^network_g: DCPT's generation step auto-encodes"):
        DCPTModel(validate_options(opt), torch.device("cpu"))


def test_every_registered_arch_has_default_feature_layers():
    assert set(DEFAULT_FEATURE_LAYERS) == set(ALL_ARCHS.image_archs())  # not discriminators
    for name, (options, channels, _, _) in TINY.items():
        model = build(ARCHS, {"type": name, **options}, "network_g", device="meta")
        layers = resolve_feature_layers(model, name, None, "feature_layers")
        assert image_channels({"type": name, **options}) == channels
        widths, _, _ = probe_shapes(model, layers, channels, size=16)
        assert all(w > channels for w in widths), (name, widths)


DDP_SCRIPT = """
import gc

from llcv.engine.dist import close_dist, param_checksum
from llcv.engine.runner import Runner
from llcv.options import load_options

runner = Runner(load_options(sys.argv[1]), launcher="pytorch")
head = runner.state.step.head
before = param_checksum(head)
runner.train()
print("checksum", repr((param_checksum(runner.model), param_checksum(head))))
print("head learnt", param_checksum(head) != before, flush=True)
# release the runner (its DDP wrappers' gloo threads) before the process group
del runner, head
gc.collect()
close_dist()
"""


def test_two_ranks_keep_the_network_and_the_head_identical(tmp_path):
    """Pre-training then fine-tuning on two gloo ranks, each on its own batches: both ranks end
    with the same network and the same classifier head."""
    opt = dcpt_options(tmp_path, total_iter=4, iters=2)
    opt["dist_params"] = {"timeout": 60}
    opt["val"]["val_freq"] = 100
    outs = run_two_ranks(tmp_path, opt, DDP_SCRIPT)
    assert all("head learnt True" in out for out in outs)
    sums = [line for out in outs for line in out.splitlines() if line.startswith("checksum")]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert "weights identical on all 2 ranks at iter 4" in outs[0]
