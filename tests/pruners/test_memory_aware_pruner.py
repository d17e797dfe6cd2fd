"""MemoryAwarePruner: a peak-memory budget met in estimate and in measurement, with far more
parameters kept than uniform thinning at the same budget; compactors on the UNet's long skips."""
import pytest
import torch

from llcv.evaluation import measured_inference_peak
from llcv.memory import estimate_peak_memory
from llcv.network import apply_plan, build_network, network_spec
from llcv.pruners.memory_aware_pruner import MemoryAwarePruner
from llcv.pruners.uniform_pruner import UniformPruner
from llcv.utils import MB
from prune_helpers import tiny_network

SHAPE = [1, 3, 512, 512]


def params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def base_unet():
    torch.manual_seed(0)
    spec = network_spec({"type": "UNet"})  # widths 32, 64, 128, 256
    return spec, build_network(spec).eval()


def test_half_the_base_unet_inference_peak_at_512(base_unet):
    spec, model = base_unet
    budget = estimate_peak_memory(model, SHAPE).total / 2
    target = {"peak_memory_mb": budget / MB, "input_shape": SHAPE}
    aware = MemoryAwarePruner(target, round_to=8).prune(model, spec)
    uniform = UniformPruner(target, round_to=8).prune(model, spec)
    pruned = aware.apply(model).eval()
    estimated = estimate_peak_memory(pruned, SHAPE).total
    measured = measured_inference_peak(pruned, SHAPE, torch.device("cpu"))
    kept, thin = params(pruned), uniform.report.after.params
    print(f"\nbudget {budget / MB:.2f} MiB at 1x3x512x512: MemoryAwarePruner {kept:,} params "
          f"(est. {estimated / MB:.2f} MiB, measured {measured / MB:.2f} MiB), UniformPruner "
          f"{thin:,} params (est. {uniform.report.after.est_infer_peak_bytes / MB:.2f} MiB), "
          f"dense {params(model):,}")
    assert estimated <= budget and measured <= budget
    assert aware.report.after.est_infer_peak_bytes == estimated
    assert kept > 2.5 * thin
    assert uniform.report.after.est_infer_peak_bytes <= budget


def test_compactors_prune_the_skips_apart_from_their_encoders(base_unet):
    spec, model = base_unet
    budget = estimate_peak_memory(model, SHAPE).total / 2
    result = MemoryAwarePruner({"peak_memory_mb": budget / MB, "input_shape": SHAPE},
                               round_to=8, compactors=True).prune(model, spec)
    assert result.spec["network_g"]["skip_compactors"] is True
    pruned = result.apply(model).eval()
    assert estimate_peak_memory(pruned, SHAPE).total <= budget
    skip = pruned.compactors[0].weight.shape
    assert skip[0] < skip[1] == pruned.encoders[0][2].weight.shape[0]  # narrower than encoder
    # replay: the dense network with compactors, the original weights, the composed plan
    torch.manual_seed(1)
    dense = build_network(network_spec(result.spec["network_g"]))  # identity compactors
    dense.load_state_dict(model.state_dict(), strict=False)
    replayed = apply_plan(dense, result.spec["plan"]).eval()
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(replayed(x), pruned(x), rtol=0, atol=0)


def test_compactors_carry_an_earlier_plan_over():
    spec, model = tiny_network({"type": "UNet", "widths": [8, 16, 32], "blocks": [1, 1, 1]})
    first = UniformPruner({"channel_ratio": 0.25}, round_to=2).prune(model, spec)
    thinner = first.apply(model).eval()
    result = MemoryAwarePruner({"peak_memory_mb": 0.5, "input_shape": [1, 3, 32, 32]},
                               round_to=2, compactors=True).prune(thinner, first.spec)
    assert result.base_spec["network_g"]["skip_compactors"] is True
    pruned = result.apply(thinner).eval()
    x = torch.rand(1, 3, 17, 15)
    with torch.no_grad():
        assert pruned(x).shape == x.shape
    assert estimate_peak_memory(pruned, [1, 3, 32, 32]).total <= 0.5 * MB
    # the network with compactors (before this event's cut) computes what the thinner one did
    carried = build_network(result.base_spec, init=False)
    carried.load_state_dict(thinner.state_dict(), strict=False)
    with torch.no_grad():
        for compactor in carried.compactors:
            torch.nn.init.dirac_(compactor.weight)
            compactor.bias.zero_()
        torch.testing.assert_close(carried.eval()(x), thinner(x), rtol=0, atol=1e-6)


def test_training_step_budget():
    spec, model = tiny_network({"type": "UNet", "widths": [8, 16, 32], "blocks": [1, 1, 1]})
    shape = [2, 3, 64, 64]
    dense = estimate_peak_memory(model, shape, "train").total
    result = MemoryAwarePruner({"peak_memory_mb": 0.6 * dense / MB, "input_shape": shape,
                                "mode": "train", "optimizer": "Adam"}, round_to=2,
                               memory_stride=0.2).prune(model, spec)
    pruned = result.apply(model)
    assert estimate_peak_memory(pruned, shape, "train", "Adam").total <= 0.6 * dense
    assert result.report.after.est_train_peak_bytes <= 0.6 * dense
