"""End-to-end runs on CPU: outputs written, TensorBoard tags, exact resume, checkpoint rules."""
import json
import os

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import StopAt, tiny_options
from llcv.engine.runner import Runner, RunInterrupted
from llcv.errors import LLCVError
from llcv.options import validate_options


def run(opt, **kwargs):
    runner = Runner(validate_options(opt), **kwargs)
    runner.train()
    return runner


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    runner = run(tiny_options(tmp))
    return runner.exp_dir


def test_outputs_written(finished_run):
    exp = finished_run
    for rel in ("models/net_g_3.pth", "models/net_g_6.pth", "models/net_g_latest.pth",
                "training_states/3.state", "training_states/6.state", "options.yml"):
        assert os.path.isfile(os.path.join(exp, rel)), rel
    weights = torch.load(os.path.join(exp, "models/net_g_6.pth"), weights_only=True)
    net = {"type": "UNet", "in_ch": 3, "widths": [4, 8], "blocks": [1, 1]}
    assert weights["network"] == {"network_g": net, "plan": None}
    assert "params" in weights and "optimizer" not in weights
    state = torch.load(os.path.join(exp, "training_states/6.state"), weights_only=True)
    assert state["iter"] == 6 and "optimizer" in state and "rng" in state
    # the TensorBoard crops are fixed in the state (whole 48 px images here: smaller than 128)
    assert state["hooks"]["ValidationHook"]["crops"] == {
        "val/skimage_chelsea": [0, 0, 48], "val/skimage_camera": [0, 0, 48]}
    summary = json.load(open(os.path.join(exp, "summary.json")))
    assert summary["best"]["val/psnr"]["iter"] in (3, 6) and summary["params"] > 0
    assert summary["weights"].endswith("net_g_latest.pth") and summary["macs"] > 0
    assert not [f for f in os.listdir(os.path.join(exp, "models")) if f.startswith(".tmp")]


def test_jsonl_and_text_log(finished_run):
    with open(os.path.join(finished_run, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    train = [r for r in lines if "train/l_pix" in r]
    val = [r for r in lines if "val/psnr" in r]
    assert [r["iter"] for r in train] == [2, 4, 6]
    memory = ("mem/rss_mb", "mem/rss_peak_mb", "mem/alloc_peak_mb", "mem/est_train_peak_mb",
              "mem/est_infer_peak_mb")
    assert all(all(k in r for k in memory) and "train/lr" in r for r in train)
    between = [r for r in lines if "train/l_pix" not in r and "val/psnr" not in r]
    assert [r["iter"] for r in between] == [1, 3, 5]  # memory only, every other iteration
    assert all(set(r) - {"iter"} <= set(memory) and "mem/rss_mb" in r for r in between)
    assert [r["iter"] for r in val] == [3, 6]
    assert "val/lq_psnr" in val[0] and "val/best_psnr" in val[1]
    assert val[1]["val/best_psnr"] == max(v["val/psnr"] for v in val)
    log = [f for f in os.listdir(finished_run) if f.endswith(".log")][0]
    text = open(os.path.join(finished_run, log)).read()
    assert "iter:       6/6" in text and "mem/rss_peak_mb:" in text and "eta:" in text
    assert "reference val LQ vs GT: psnr:" in text


def test_tensorboard_tags(finished_run):
    acc = EventAccumulator(os.path.join(finished_run, "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"train/l_pix", "train/lr", "val/psnr", "val/ssim", "val/lq_psnr"} <= scalars
    for tag in ("mem/rss_mb", "mem/rss_peak_mb", "mem/est_train_peak_mb",
                "mem/est_infer_peak_mb"):
        assert [e.step for e in acc.Scalars(tag)] == [1, 2, 3, 4, 5, 6]
    # CPU allocator peak: the first 3 iterations, then every print_freq (2) and the last
    assert [e.step for e in acc.Scalars("mem/alloc_peak_mb")] == [1, 2, 3, 4, 6]
    measured = {e.step: e.value for e in acc.Scalars("mem/alloc_peak_mb")}
    estimated = {e.step: e.value for e in acc.Scalars("mem/est_train_peak_mb")}
    assert all(abs(estimated[s] / m - 1) < 0.25 for s, m in measured.items() if s > 1), \
        (estimated, measured)
    assert any(tag.startswith("val_images/") for tag in acc.Tags()["images"])



@pytest.mark.parametrize("workers", [0, 1])
def test_stop_and_resume_is_bit_identical(tmp_path, workers):
    opt = tiny_options(tmp_path, total_iter=8, ema_decay=0.9)
    opt["datasets"]["train"]["num_worker_per_gpu"] = workers
    opt["logger"]["save_checkpoint_freq"] = 100
    opt["val"]["val_freq"] = 100
    straight = run(dict(opt, name="straight"))

    interrupted = Runner(validate_options(dict(opt, name="resumed")))
    interrupted.hooks.append(StopAt(5))
    with pytest.raises(RunInterrupted, match="SIGTERM.*iter 5"):
        interrupted.train()
    resumed = run(dict(opt, name="resumed"), auto_resume=True)
    assert resumed.start_iter == 5
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    straight_ema = straight.hook("EMAHook").ema.module.state_dict().values()
    for a, b in zip(straight_ema, resumed.hook("EMAHook").ema.module.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_state_must_be_a_training_state(tmp_path, finished_run):
    opt = tiny_options(tmp_path)
    opt["path"]["resume_state"] = os.path.join(finished_run, "models", "net_g_6.pth")
    with pytest.raises(LLCVError, match="path.resume_state: .* holds network weights"):
        Runner(validate_options(opt))


def test_pretrained_weights_load_and_mismatch_is_named(tmp_path, finished_run):
    opt = tiny_options(tmp_path)
    opt["path"]["pretrain_network_g"] = os.path.join(finished_run, "models", "net_g_6.pth")
    runner = Runner(validate_options(opt))
    saved = torch.load(opt["path"]["pretrain_network_g"], weights_only=True)["params"]
    assert all(torch.equal(saved[k], v) for k, v in runner.model.state_dict().items())
    opt["network_g"]["widths"] = [8, 8]
    with pytest.raises(LLCVError, match=r"path.pretrain_network_g: .* does not fit network_g "
                                        r"\(size mismatch: .*downs.0.weight.*strict_load_g"):
        Runner(validate_options(dict(opt, name="mismatch")))


def test_fresh_run_archives_previous_folder(tmp_path):
    opt = tiny_options(tmp_path, total_iter=2)
    first = run(opt)
    run(opt)
    siblings = os.listdir(os.path.dirname(first.exp_dir))
    assert any(s.startswith("tiny_archived_") for s in siblings) and "tiny" in siblings


def test_diverging_loss_stops_with_named_term(tmp_path):
    opt = tiny_options(tmp_path, total_iter=20)
    opt["train"]["optim_g"] = {"type": "SGD", "lr": 1e30}
    runner = Runner(validate_options(opt))
    with pytest.raises(LLCVError, match=r"train: loss l_pix is (nan|inf) at iter \d+; .*train.optim_g.lr"):
        runner.train()
