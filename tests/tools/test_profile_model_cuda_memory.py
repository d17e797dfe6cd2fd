"""tools/profile_model.py for a CUDA target on a machine without one: the device line and JSON."""
import json

import yaml

from conftest import load_tool
from llcv.memory import estimate_peak_memory
from llcv.memory.calibration import Calibration
from llcv.registry import ARCHS, build

NET = {"type": "DnCNN", "in_ch": 3, "depth": 4, "features": 8}
MIB = 1 << 20


def test_cuda_target_prints_allocated_reserved_and_device_total(tmp_path, capsys):
    opt = tmp_path / "opt.yml"
    opt.write_text(yaml.safe_dump({"name": "m", "network_g": NET}))
    cal = tmp_path / "cal.json"
    Calibration("Test GPU", (8, 0), 80 << 30, 400 * MIB, 8 * MIB).save(str(cal))
    out = tmp_path / "p.json"
    figures = load_tool("profile_model").main([
        "-opt", str(opt), "--input-shape", "2", "3", "64", "64", "--no-layers", "--device",
        "meta", "--memory-device", "cuda", "--alloc-conf", "expandable_segments:True",
        "--calibration", str(cal), "--json", str(out)])
    model = build(ARCHS, NET, "network_g")
    infer = estimate_peak_memory(model, (2, 3, 64, 64), device="cuda",
                                 allocator="expandable_segments:True", calibration=str(cal))
    assert figures["est_infer_reserved_bytes"] == infer.reserved
    assert figures["est_infer_device_bytes"] == infer.reserved + 400 * MIB
    assert json.loads(out.read_text())["est_train_allocated_bytes"] == \
        figures["memory_estimates"]["train"]["allocated"]
    printed = capsys.readouterr().out
    assert printed.count("on the device: tensors") == 2
    assert f"(context 400.00, {cal})" in printed


def test_cpu_target_has_no_device_figures(tmp_path):
    opt = tmp_path / "opt.yml"
    opt.write_text(yaml.safe_dump({"name": "m", "network_g": NET}))
    figures = load_tool("profile_model").main(["-opt", str(opt), "--no-layers"])
    assert "est_infer_reserved_bytes" not in figures
    assert figures["memory_estimates"]["inference"]["reserved"] is None
