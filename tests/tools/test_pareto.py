"""tools/pareto.py: PNGs per cost axis with the points of each series, the front, the table."""
import json

import cv2
import numpy as np
import pytest

from conftest import load_tool
from llcv.analysis.pareto import cost_axis, load_points, pareto_front
from llcv.errors import OptionError


@pytest.fixture(scope="module")
def tool():
    return load_tool("pareto")


def write_result(folder, name, method, psnr, est, macs, tiled=None):
    """A metrics.json with the fields tools/test.py writes."""
    d = {"phase": "val", "images": 2, "metrics": {"psnr": psnr, "ssim": psnr / 40},
         "lq_metrics": {"lq_psnr": 20.0, "lq_ssim": 0.5}, "input_shape": [1, 3, 32, 32],
         "params": int(macs / 1e4), "macs": int(macs), "est_infer_peak_mb": est,
         "measured_peak_mb": est * 1.1, "latency": {"median_ms": est / 2, "runs": 3}}
    result = {"name": name, "method": method, "label": name, "datasets": {"val": d}}
    if tiled is not None:
        result["tiled"] = {"seconds": tiled, "tiles": 4}
    path = folder / name / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(result))
    return str(path)


@pytest.fixture
def three(tmp_path):
    return [write_result(tmp_path, "w050", "width", 30.0, 10.0, 1e9),
            write_result(tmp_path, "w100", "width", 31.0, 20.0, 2e9),
            write_result(tmp_path, "u075", "uniform", 29.5, 15.0, 1.5e9)]


def test_plots_and_table(tool, three, tmp_path):
    out = tmp_path / "figs"
    result = tool.main([*three, "--out", str(out)])
    costs = ["est_peak", "measured_peak", "latency", "macs", "params"]
    assert result["drawn"] == {c: {"width": 2, "uniform": 1} for c in costs}
    for cost in costs:
        img = cv2.imread(str(out / f"pareto_{cost}.png"))
        assert img is not None and img.shape == (480, 640, 3) and img.std() > 0
    rows = (out / "points.md").read_text().strip().splitlines()[4:]
    assert [r.split("|")[2].strip() for r in rows] == ["w100", "w050", "u075"]
    assert rows[2].rstrip(" |").endswith("-")  # u075 is beaten by w050 on every axis
    assert rows[0].split("|")[-2].strip() == ", ".join(costs)


def test_folder_input_and_tiled_latency(tool, tmp_path):
    write_result(tmp_path, "a", "width", 30.0, 10.0, 1e9, tiled=4.0)
    write_result(tmp_path, "b", "width", 31.0, 20.0, 2e9, tiled=9.0)
    points, dataset = load_points([str(tmp_path)])
    assert dataset == "val" and [p.label for p in points] == ["a", "b"]
    assert cost_axis(points, "latency") == ("tiled large-image latency (s)", [4.0, 9.0])
    write_result(tmp_path, "c", "width", 32.0, 30.0, 3e9)  # no tiled run: test-size latency
    points, _ = load_points([str(tmp_path)])
    assert cost_axis(points, "latency")[1] == [5.0, 10.0, 15.0]


def test_front_matches_a_sort_sweep():
    rng = np.random.default_rng(0)
    xs, ys = rng.random(60).tolist(), rng.random(60).tolist()
    best, expected = -1.0, set()
    for i in sorted(range(60), key=lambda i: xs[i]):
        if ys[i] > best:
            expected.add(i)
            best = ys[i]
    assert {i for i, f in enumerate(pareto_front(xs, ys)) if f} == expected


def test_unknown_dataset_or_metric_is_named(tool, three, tmp_path):
    with pytest.raises(OptionError, match="--dataset: .*w050/metrics.json' has no set 'SIDD'"):
        tool.main([*three, "--dataset", "SIDD", "--out", str(tmp_path)])
    with pytest.raises(OptionError, match="--metric: .* has no 'lpips' for val"):
        tool.main([*three, "--metric", "lpips", "--out", str(tmp_path)])
