"""tools/profile_model.py memory estimates: printed breakdowns and the --json fields."""
import json

import yaml

from conftest import load_tool
from llcv.memory import estimate_peak_memory
from llcv.registry import ARCHS, build

NET = {"type": "DnCNN", "in_ch": 3, "depth": 4, "features": 8}


def test_estimates_are_printed_and_written(tmp_path, capsys):
    opt = tmp_path / "opt.yml"
    opt.write_text(yaml.safe_dump({"name": "m", "network_g": NET,
                                   "train": {"optim_g": {"type": "SGD", "lr": 0.1}}}))
    out = tmp_path / "p.json"
    figures = load_tool("profile_model").main(["-opt", str(opt), "--input-shape", "2", "3", "24", "24",
                                "--no-layers", "--json", str(out)])
    model = build(ARCHS, NET, "network_g")
    infer = estimate_peak_memory(model, (2, 3, 24, 24), "inference")
    train = estimate_peak_memory(model, (2, 3, 24, 24), "train", {"type": "SGD", "lr": 0.1})
    assert figures["est_infer_peak_bytes"] == infer.total
    assert figures["est_train_peak_bytes"] == train.total
    assert figures["memory_estimates"]["train"]["optimizer"] == "SGD"  # the option file's
    assert figures["memory_estimates"]["train"]["optimizer_state"] == 0  # plain SGD
    assert json.loads(out.read_text())["est_train_peak_bytes"] == train.total
    printed = capsys.readouterr().out
    assert "estimated inference peak at 2x3x24x24" in printed
    assert "estimated train (SGD) peak" in printed and "activations" in printed


def test_no_memory_flag_skips_the_estimates(tmp_path):
    opt = tmp_path / "opt.yml"
    opt.write_text(yaml.safe_dump({"name": "m", "network_g": NET}))
    figures = load_tool("profile_model").main(["-opt", str(opt), "--no-layers", "--no-memory"])
    assert "est_infer_peak_bytes" not in figures
