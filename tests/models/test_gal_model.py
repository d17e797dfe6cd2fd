"""GALModel with GALPruner in a tiny run: mask phases before each point log the discriminator's
and the masks' terms, mask values fall under the sparsity term (faster where the peak is), the
pruned network after folding computes what the masked one did with the removed masks at 0,
the budget is met (estimated and measured), a run stopped mid-phase resumes bit-exactly, and two
gloo ranks end identical."""
import copy
import json

import pytest
import torch

from conftest import tiny_options
from engine.test_runner import StopAt
from llcv.engine.hooks import Hook
from llcv.engine.runner import Runner, RunInterrupted
from llcv.errors import OptionError
from llcv.evaluation import measured_inference_peak
from llcv.memory import estimate_peak_memory
from llcv.models.gal_model import mask_windows
from llcv.network import build_network, network_spec
from llcv.options import validate_options
from llcv.pruners.soft_masks import attached_masks
from llcv.utils import MB
from models.test_gan_model import two_ranks
from pruners.gal_helpers import zero_removed

SHAPE = [1, 3, 64, 64]
NETWORK = {"type": "UNet", "in_ch": 3, "widths": [16, 16], "blocks": [1, 1]}
PROBE = torch.rand(1, 3, 24, 16, generator=torch.Generator().manual_seed(0))


def budget_mb(fraction=0.8):
    dense = build_network(network_spec(NETWORK), "meta")
    return fraction * estimate_peak_memory(dense, SHAPE, device="cpu").total / MB


def gal_options(tmp_path, name="gal", total_iter=8):
    opt = tiny_options(tmp_path, total_iter=total_iter)
    opt.update(name=name, model_type="GALModel", network_g=dict(NETWORK),
               network_d={"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": 4})
    opt["train"]["scheduler"]["T_max"] = total_iter
    opt["train"].update(optim_d={"type": "Adam", "lr": 1e-3},
                        gan_opt={"type": "GANLoss", "gan_type": "lsgan", "loss_weight": 0.01},
                        gal={"data_weight": 10.0})
    opt["prune"] = {"type": "GALPruner", "schedule": [4, 7], "mask_iters": 3, "round_to": 2,
                    "target": {"peak_memory_mb": budget_mb(), "input_shape": SHAPE},
                    "sparsity": 2.0, "mask_lr": 0.3, "reweight_every": 2}
    opt["logger"].update(print_freq=1, save_checkpoint_freq=100, use_tb_logger=False)
    opt["val"]["val_freq"] = 100
    return opt


class MaskedProbe(Hook):
    """Before the first prune event: a deep copy of the masked network (it keeps masking with
    the same masks); right after it: the probe through that copy with the removed masks at 0
    and through the pruned network."""

    def __init__(self, point, priority):
        self.point, self.priority, self.store = point, priority, {}

    def after_train_iter(self, runner, it, batch, record):
        if it != self.point:
            return
        if "copy" not in self.store:
            self.store["copy"] = copy.deepcopy(runner.model).eval()
            self.store["masks"] = attached_masks(runner.model)
            return
        plan = runner.state.spec["plan"]
        zero_removed(self.store["masks"], plan)
        with torch.no_grad():
            self.store["masked"] = self.store["copy"](PROBE)
            self.store["pruned"] = runner.model.eval()(PROBE)
        runner.model.train()


def records(runner):
    with open(f"{runner.exp_dir}/metrics.jsonl") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    runner = Runner(validate_options(gal_options(tmp_path_factory.mktemp("gal"))))
    probes = [MaskedProbe(4, 59), MaskedProbe(4, 61)]  # around the prune hook (60)
    probes[1].store = probes[0].store
    runner.hooks = sorted(runner.hooks + probes, key=lambda h: h.priority)
    runner.train()
    return runner, probes[0].store


def test_windows_before_each_point():
    assert mask_windows([4, 7], 3) == [(2, 4), (5, 7)]
    assert mask_windows([2, 30], 10) == [(1, 2), (21, 30)]


def test_phases_log_both_players_and_masks_fall_under_the_sparsity_term(straight):
    runner, _ = straight
    train = {r["iter"]: r for r in records(runner) if "train/lr" in r}
    for it in (2, 3, 4, 5, 6, 7):
        assert {"train/l_d_real", "train/l_d_fake", "train/l_d_reg", "train/l_g_gan",
                "train/l_data", "train/mask_mean", "train/mask_zero"} <= set(train[it]), it
    for it in (1, 8):
        assert "train/l_pix" in train[it] and "train/mask_mean" not in train[it]
    means = [train[it]["train/mask_mean"] for it in (2, 3, 4)]
    assert means[0] < 1.0 and means[0] > means[1] > means[2]
    assert train[4]["train/mask_zero"] > 0  # proximal steps leave exact zeros
    assert train[4]["train/l_sparse"] < train[2]["train/l_sparse"]


def test_pruned_network_after_folding_equals_the_masked_one(straight):
    runner, store = straight
    assert runner.state.spec["plan"] is not None
    torch.testing.assert_close(store["pruned"], store["masked"], rtol=0, atol=1e-5)
    assert attached_masks(runner.model) is None and runner.state.step.phase is None


def test_budget_met_estimated_and_measured(straight):
    runner, _ = straight
    budget = budget_mb() * MB
    model = runner.model
    assert estimate_peak_memory(model, SHAPE).total <= budget
    assert measured_inference_peak(model, SHAPE, torch.device("cpu")) <= budget
    events = [r for r in records(runner) if "prune/event" in r]
    assert [e["iter"] for e in events] == [4, 7]
    assert events[-1]["prune/measured_infer_peak_mb"] <= budget_mb()


def test_stopped_mid_phase_resumes_bit_exactly(straight, tmp_path):
    reference, _ = straight
    opt = gal_options(tmp_path, name="resumed")
    interrupted = Runner(validate_options(opt))
    interrupted.hooks.append(StopAt(3))
    with pytest.raises(RunInterrupted):
        interrupted.train()
    resumed = Runner(validate_options(opt), auto_resume=True)
    assert resumed.start_iter == 3 and resumed.state.step._pending is not None
    resumed.train()
    assert resumed.state.spec == reference.state.spec
    for a, b in ((reference.model, resumed.model),
                 (reference.state.step.d.net, resumed.state.step.d.net)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                     b.state_dict().values()))


def test_two_gloo_ranks_train_masks_and_prune_identically(tmp_path):
    opt = gal_options(tmp_path, total_iter=5)
    opt["prune"]["schedule"] = [4]
    opt["dist_params"] = {"timeout": 60}
    sums = two_ranks(tmp_path, opt)  # folded masks differ unless their gradients were averaged
    assert len(sums) == 2 and sums[0] == sums[1]
    state = torch.load(tmp_path / "experiments" / "gal" / "training_states" / "5.state",
                       weights_only=True)
    assert state["network"]["plan"] is not None and "phase" not in state["step"]


def test_options_gal_needs(tmp_path):
    opt = gal_options(tmp_path)
    del opt["prune"]
    with pytest.raises(OptionError, match="GALModel trains the soft masks"):
        Runner(validate_options(opt))
    opt = gal_options(tmp_path)
    opt["train"]["ema_decay"] = 0.9
    with pytest.raises(OptionError, match="train.ema_decay"):
        Runner(validate_options(opt))
    opt = gal_options(tmp_path)
    opt["train"]["amp"] = "bf16"
    with pytest.raises(OptionError, match="train.amp: GALModel trains in float32"):
        Runner(validate_options(opt))
