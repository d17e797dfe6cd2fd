"""Estimated peak memory: exact against a hand count and a real run, breakdown and naming."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llcv.errors import OptionError
from llcv.memory import MemoryEstimateFields, estimate_peak_memory, measure_peak
from llcv.memory.estimate import KINDS
from llcv.archs.unet_arch import UNet

N, H, W = 2, 16, 20
PLANE = N * H * W * 4  # bytes of one fp32 channel over the batch
WEIGHTS = 4 * (8 * 3 * 9 + 8 + 16 * 8 * 9 + 16 + 3 * 16 * 9 + 3)  # the three convs
ADAMW_STATE = 2 * WEIGHTS + 6 * 4  # exp_avg + exp_avg_sq, and a 4-byte step per parameter


def conv_stack(inplace: bool) -> nn.Sequential:
    """Conv(3->8)-ReLU, Conv(8->16)-ReLU, Conv(16->3)-ReLU, 3x3 'same' convolutions."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace),
                         nn.Conv2d(16, 3, 3, padding=1), nn.ReLU(inplace))


@pytest.mark.parametrize("inplace", [False, True])
def test_conv_stack_inference_equals_hand_count(inplace):
    # Sequential drops each input once the next module returns; the caller keeps x (3 planes).
    # Out-of-place: the peak is at the second ReLU, conv2's output (16) and the ReLU's (16)
    # alive together: 3 + 16 + 16 = 35 planes. In-place: at conv2, its input (8) and output
    # (16): 3 + 8 + 16 = 27 planes.
    est = estimate_peak_memory(conv_stack(inplace), (N, 3, H, W), "inference",
                               kernel_workspace=False)
    assert est.total == WEIGHTS + (27 if inplace else 35) * PLANE
    assert est.weights == WEIGHTS and est.inputs == 3 * PLANE
    assert est.gradients == est.optimizer_state == est.transient == 0


@pytest.mark.parametrize("inplace", [False, True])
def test_conv_stack_training_step_equals_hand_count(inplace):
    # Saved for backward: the ReLU outputs of 8 and 16 channels (inputs of conv2 and conv3),
    # the 3-channel output (kept referenced until the step ends, as the runner does); the L1
    # loss's difference is freed when its backward has run. The peak is the second ReLU's
    # backward: saved 8 + 16 + 3, its incoming gradient 16, its result 16 = 59 planes; plus the
    # input and the target (3 + 3), conv3's weight gradients (3*16*9 + 3 floats), the loss and
    # its seed gradient ones_like(loss) held by torch.autograd.backward (4 bytes each).
    est = estimate_peak_memory(conv_stack(inplace), (N, 3, H, W), "train", optimizer="AdamW",
                               kernel_workspace=False)
    conv3_grads = 4 * (3 * 16 * 9 + 3)
    assert est.total == WEIGHTS + ADAMW_STATE + 6 * PLANE + 59 * PLANE + conv3_grads + 4 + 4
    assert est.optimizer_state == ADAMW_STATE and est.gradients == conv3_grads
    assert est.peak_phase == "backward" and est.peak_op == "3 / threshold_backward"


def runner_step(model, optimizer, lq, gt):
    optimizer.zero_grad(set_to_none=True)
    output = model(lq)
    F.l1_loss(output, gt).backward()
    optimizer.step()


def test_estimate_equals_tensor_level_measurement_of_the_real_run():
    torch.manual_seed(0)
    model = UNet(widths=[4, 8], blocks=[1, 1])
    lq, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        measured = measure_peak(lambda: model(lq), "cpu", [model, lq], method="tensors")
    assert estimate_peak_memory(model, lq.shape, kernel_workspace=False).total == measured
    model.train()
    optimizer = torch.optim.AdamW(model.parameters())
    runner_step(model, optimizer, lq, gt)
    optimizer.zero_grad(set_to_none=True)
    measured = measure_peak(lambda: runner_step(model, optimizer, lq, gt), "cpu",
                            [model, optimizer, lq, gt], method="tensors")
    est = estimate_peak_memory(model, lq.shape, "train", "AdamW", kernel_workspace=False)
    assert est.total == measured


def test_breakdown_and_names():
    model = UNet(widths=[8, 16], blocks=[1, 1])
    weights = sum(p.numel() * 4 for p in model.parameters())
    est = estimate_peak_memory(model, (1, 3, 32, 32), "train", optimizer="AdamW")
    parts = [est.weights, est.inputs, est.gradients, est.optimizer_state, est.activations,
             est.transient]
    assert est.total == sum(parts) == sum(t.bytes for t in est.live_at_peak)
    assert est.weights == weights and est.inputs == 2 * 3 * 32 * 32 * 4
    assert est.optimizer_state == 2 * weights + 4 * len(list(model.parameters()))
    assert 0 < est.gradients <= weights and est.activations > 0
    sizes = [t.bytes for t in est.live_at_peak]
    assert sizes == sorted(sizes, reverse=True)
    assert {t.kind for t in est.live_at_peak} <= set(KINDS)
    names = {t.name for t in est.live_at_peak}
    assert "encoders.0.1 / relu" in names  # a saved activation, named by module and op
    assert "tail.weight" in names and "input" in names and "target" in names
    assert any(n.endswith("[kernel workspace]") for n in names) == (est.peak_op != "")
    text = est.format()
    assert "estimated train (AdamW) peak at 1x3x32x32" in text and "encoders" in text
    assert est.to_dict()["total"] == est.total


@pytest.mark.parametrize("optimizer,factor", [("SGD", 0), ({"type": "SGD", "momentum": 0.9}, 1),
                                              ({"type": "Adam", "lr": 1e-4}, 2)])
def test_optimizer_state_by_type(optimizer, factor):
    model = conv_stack(False)
    est = estimate_peak_memory(model, (1, 3, 8, 8), "train", optimizer=optimizer)
    steps = 6 * 4 if factor == 2 else 0
    assert est.optimizer_state == factor * WEIGHTS + steps


def test_mixed_precision_keeps_fp32_weights_and_shrinks_activations():
    model = UNet(widths=[8, 16], blocks=[1, 1])
    fp32 = estimate_peak_memory(model, (1, 3, 64, 64), "train", kernel_workspace=False)
    bf16 = estimate_peak_memory(model, (1, 3, 64, 64), "train", amp="bf16",
                                kernel_workspace=False)
    assert bf16.amp == "bfloat16" and fp32.amp is None
    assert bf16.weights == fp32.weights and bf16.optimizer_state == fp32.optimizer_state
    assert bf16.total < fp32.total
    assert any(t.dtype == "bfloat16" for t in bf16.live_at_peak)


def test_cuda_target_needs_no_gpu():
    model = UNet(widths=[8, 16], blocks=[1, 1])
    est = estimate_peak_memory(model, (1, 3, 32, 32), "train", device="cuda", amp=True)
    assert est.device == "cuda" and est.amp == "float16"
    assert all(t.bytes % 512 == 0 for t in est.live_at_peak)  # caching-allocator blocks


def test_model_is_left_untouched_and_meta_models_work():
    model = UNet(widths=[8, 16], blocks=[1, 1])
    model.train()
    model.tail.eval()
    before = copy.deepcopy(model.state_dict())
    est = estimate_peak_memory(model, (1, 3, 24, 24), "train")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and not model.tail.training
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    meta = UNet(widths=[8, 16], blocks=[1, 1], device="meta")
    assert estimate_peak_memory(meta, (1, 3, 24, 24), "train").total == est.total


def test_bad_arguments_name_the_argument():
    model = conv_stack(False)
    with pytest.raises(OptionError, match="input_shape"):
        estimate_peak_memory(model, (1, 3, 0, 8))
    with pytest.raises(OptionError, match="mode"):
        estimate_peak_memory(model, (1, 3, 8, 8), "training")
    with pytest.raises(OptionError, match="optimizer.type.*AdamW"):
        estimate_peak_memory(model, (1, 3, 8, 8), "train", optimizer="AdamX")
    with pytest.raises(OptionError, match="amp"):
        estimate_peak_memory(model, (1, 3, 8, 8), amp="int8")


def test_fields_are_cached_per_structure(monkeypatch):
    import llcv.memory.fields as fields_module

    calls = []
    real = fields_module.estimate_peak_memory
    monkeypatch.setattr(fields_module, "estimate_peak_memory",
                        lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    fields = MemoryEstimateFields([2, 3, 16, 16], [1, 3, 32, 32], {"type": "Adam", "lr": 1e-3})
    model = UNet(widths=[8, 16], blocks=[1, 1])
    first = dict(fields(model))
    assert set(first) == {"mem/est_train_peak_mb", "mem/est_infer_peak_mb"}
    assert fields(model) == first and calls == ["train", "inference"]
    smaller = UNet(widths=[4, 16], blocks=[1, 1])  # e.g. after pruning
    assert fields(smaller)["mem/est_infer_peak_mb"] < first["mem/est_infer_peak_mb"]
    assert len(calls) == 4
