"""tools/sweep.py: the plan (widths from the estimator), a real tiny sweep end to end, resuming,
and a SLURM array job whose task runs."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, load_tool, tiny_options, write_yaml
from llcv.errors import LLCVError
from llcv.options import read_yaml
from llcv.memory import estimate_peak_memory
from llcv.registry import ARCHS, build
from llcv.pruners.width import scale_widths

SHAPE = [1, 3, 64, 64]
NET = {"type": "UNet", "in_ch": 3, "widths": [8, 16], "blocks": [1, 1]}


@pytest.fixture(scope="module")
def tool():
    return load_tool("sweep")


def peak_mb(network_g, shape, mode="inference", optimizer="AdamW"):
    model = build(ARCHS, network_g, "network_g", device="meta")
    return estimate_peak_memory(model, shape, mode, optimizer, device="cpu").total / 2 ** 20


def test_dry_run_on_the_demo_lists_three_points(tool, tmp_path, capsys):
    result = tool.main(["-opt", os.path.join(ROOT, "options", "train_unet_demo.yml"),
                        "--budgets-mb", "20", "40", "80", "--input-shape", "1", "3", "256", "256",
                        "--set", f"path.experiments_root={tmp_path}", "--dry-run",
                        "--no-progress"])
    points = result["points"]
    assert [p.budget_mb for p in points] == [20, 40, 80]
    assert [p.multiplier for p in points] == sorted({p.multiplier for p in points})
    base = {"type": "UNet", "in_ch": 3, "widths": [16, 32, 64], "blocks": [1, 1, 1]}
    for p in points:  # fits by an independent estimate; a wider multiplier's network does not
        assert p.network_g == scale_widths(base, p.multiplier, 8)
        assert peak_mb(p.network_g, [1, 3, 256, 256]) == pytest.approx(p.est_peak_mb)
        assert p.est_peak_mb <= p.budget_mb
        wider = next(n for n in (scale_widths(base, p.multiplier * (1 + k / 20), 8)
                                 for k in range(1, 40)) if n != p.network_g)
        assert peak_mb(wider, [1, 3, 256, 256]) > p.budget_mb
    out = capsys.readouterr().out
    assert out.count("tools/train.py -opt") == 3 and out.count("tools/test.py -opt") == 3
    assert all(p.name in out for p in points)
    assert not os.path.exists(tmp_path / "sweep_train_unet_demo")


def tiny_base(tmp_path):
    opt = tiny_options(tmp_path, total_iter=2)
    opt["network_g"] = NET
    opt["train"]["scheduler"]["T_max"] = 2
    opt["val"]["val_freq"] = 2
    opt["logger"].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    opt["datasets"]["val"]["crop_val"] = 32
    return write_yaml(tmp_path / "base.yml", opt)


def test_tiny_sweep_runs_resumes_and_its_slurm_job_runs(tool, tmp_path):
    base = tiny_base(tmp_path)
    nets = [dict(NET, widths=[8, 16]), dict(NET, widths=[16, 32])]
    budgets = [f"{peak_mb(n, SHAPE) + 0.01:.2f}" for n in nets]
    args = ["-opt", base, "--input-shape", *map(str, SHAPE), "--max-multiplier", "3",
            "--no-progress", "--test-args", "--runs 1 --warmup 0"]
    here = tool.main([*args, "--budgets-mb", budgets[0]])  # one point, run here
    assert here["ran"] == [here["points"][0].name]
    assert tool.main([*args, "--budgets-mb", budgets[0]])["ran"] == []  # done: not rerun

    job = tool.main([*args, "--budgets-mb", *budgets[:2], "--slurm", "--gpus", "1"])
    script = open(job["sbatch"]).read()
    assert "#SBATCH --array=0-0" in script and "--nproc_per_node=1" in script  # one left
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="0", PYTHON=sys.executable,
               TORCHRUN=f"{sys.executable} -m torch.distributed.run")
    run = subprocess.run(["bash", job["sbatch"]], env=env, capture_output=True, text=True,
                         timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert job["points"][0].network_g != job["points"][1].network_g
    for point in job["points"]:
        net = point.network_g
        assert net == scale_widths(NET, point.multiplier, 8) and point.method == "width"
        assert peak_mb(net, SHAPE) == pytest.approx(point.est_peak_mb)
        assert point.est_peak_mb <= point.budget_mb
        with open(os.path.join(point.result_dir, "metrics.json")) as f:
            metrics = json.load(f)
        params = sum(p.numel() for p in build(ARCHS, net, "network_g").parameters())
        assert metrics["params"] == params and metrics["method"] == "width"
        assert metrics["label"] == point.label and metrics["datasets"]["val"]["images"] == 2
        assert metrics["network"]["network_g"] == net
    drawn = load_tool("pareto").main([os.path.join(job["sweep_dir"], "results"), "--out",
                                      str(tmp_path / "figs")])["drawn"]
    assert drawn["est_peak"] == {"width": 2}
    with pytest.raises(LLCVError, match="every point has results; nothing to submit"):
        tool.main([*args, "--budgets-mb", *budgets[:2], "--slurm"])


def test_budget_below_the_narrowest_network_is_named(tool, tmp_path):
    with pytest.raises(LLCVError, match="budget_mb: 0.01 MiB at 1x3x64x64 .* is below the"):
        tool.main(["-opt", tiny_base(tmp_path), "--budgets-mb", "0.01", "--input-shape",
                   *map(str, SHAPE), "--dry-run", "--no-progress"])


def test_point_status_follows_the_files(tmp_path):
    from llcv.sweep import Point, status

    point = Point("width", 1.0, "p", 1.0, NET, 0.5, str(tmp_path / "p.yml"), str(tmp_path / "exp"),
                  str(tmp_path / "res"))
    assert status(point, 2) == "todo"
    os.makedirs(tmp_path / "exp" / "training_states")
    (tmp_path / "exp" / "training_states" / "1.state").write_bytes(b"")
    assert status(point, 2) == "todo"  # interrupted: train.py --auto_resume continues it
    (tmp_path / "exp" / "training_states" / "2.state").write_bytes(b"")
    assert status(point, 2) == "trained"  # only the test is left
    os.makedirs(tmp_path / "res")
    (tmp_path / "res" / "metrics.json").write_text("{}")
    assert status(point, 2) == "done"


def test_a_replanned_point_with_another_network_is_refused(tool, tmp_path):
    args = ["-opt", tiny_base(tmp_path), "--budgets-mb", "2", "--input-shape", *map(str, SHAPE),
            "--no-progress", "--slurm"]
    first = tool.main(args)["points"][0]
    assert os.path.isfile(first.option_file)
    with pytest.raises(LLCVError, match="this point was planned with network_g .*another --name"):
        tool.main([*args, "--round-to", "16"])


def test_pruner_methods_plan_prune_sections_and_refuse_unreachable_budgets(tool, tmp_path):
    demo = os.path.join(ROOT, "options", "train_unet_demo.yml")
    args = ["-opt", demo, "--input-shape", "1", "3", "128", "128", "--no-progress",
            "--set", f"path.experiments_root={tmp_path}", "--dry-run"]
    points = tool.main([*args, "--budgets-mb", "4", "--methods", "width", "uniform",
                        "memory_aware"])["points"]
    width, uniform, aware = points
    assert width.prune is None and uniform.network_g == aware.network_g != width.network_g
    target = {"peak_memory_mb": 4.0, "input_shape": [1, 3, 128, 128], "mode": "inference",
              "device": "cpu"}
    assert uniform.prune["type"] == "UniformPruner" and aware.prune["type"] == "MemoryAwarePruner"
    assert uniform.prune["target"] == target == aware.prune["target"]
    assert uniform.prune["schedule"] == [1000, 1500, 2000]  # 1/4, 3/8, 1/2 of 4000 iterations
    assert uniform.prune["importance"] == "l1" and uniform.prune["round_to"] == 8
    with pytest.raises(LLCVError, match=r"target.peak_memory_mb: peak 0.10 MiB .* below the"):
        tool.main([*args, "--budgets-mb", "0.1", "--methods", "magnitude"])
    with pytest.raises(LLCVError, match=r"--methods: 'l1' is not one of width, uniform"):
        tool.main([*args, "--budgets-mb", "4", "--methods", "l1"])
    with pytest.raises(LLCVError, match=r"--methods: need distinct methods"):
        tool.main([*args, "--budgets-mb", "4", "--methods", "uniform", "uniform"])


def test_tiny_pruner_point_trains_prunes_and_is_tested(tool, tmp_path):
    base = tiny_base(tmp_path)
    budget = 0.9 * peak_mb(NET, SHAPE)
    result = tool.main(["-opt", base, "--input-shape", *map(str, SHAPE), "--round-to", "2",
                        "--no-progress", "--test-args", "--runs 1 --warmup 0",
                        "--budgets-mb", f"{budget:.3f}", "--methods", "magnitude"])
    point = result["points"][0]
    assert result["ran"] == [point.name] and point.prune["schedule"] == [1, 2]
    assert read_yaml(point.option_file)["prune"] == point.prune
    metrics = json.load(open(os.path.join(point.result_dir, "metrics.json")))
    assert metrics["method"] == "magnitude" and metrics["pruned"]
    from llcv.network import load_network
    model, spec, _ = load_network(os.path.join(point.exp_dir, "models", "net_g_latest.pth"))
    assert spec["plan"] is not None
    est = estimate_peak_memory(model, SHAPE, "inference", device="cpu").total / 2 ** 20
    assert est <= budget


def test_the_base_prune_section_is_the_template_of_pruner_points_only(tool, tmp_path, capsys):
    from llcv.sweep import point_options

    demo = os.path.join(ROOT, "options", "prune_unet_demo.yml")
    args = ["-opt", demo, "--input-shape", "1", "3", "128", "128", "--no-progress",
            "--set", f"path.experiments_root={tmp_path}", "--dry-run", "--methods", "width",
            "uniform", "memory_aware"]
    points = tool.main([*args, "--budgets-mb", "4", "100"])["points"]
    width, uniform, aware = (p for p in points if p.budget_mb == 4)
    above = [p for p in points if p.budget_mb == 100]
    out = capsys.readouterr().out
    raw = read_yaml(demo)
    assert width.prune is None and "prune" not in point_options(raw, width)  # no pruning
    assert point_options(raw, aware)["prune"] == aware.prune
    own = raw["prune"]  # MemoryAwarePruner, Taylor importance, compactors, round_to 4
    target = {"peak_memory_mb": 4.0, "input_shape": [1, 3, 128, 128], "mode": "inference",
              "device": "cpu"}
    assert aware.prune == {**own, "target": target}
    assert uniform.prune == {"type": "UniformPruner", "schedule": own["schedule"],
                             "split": own["split"], "target": target, "importance": "l1",
                             "round_to": own["round_to"]}  # no compactors
    assert "uniform       4           -" in out and "--method uniform --label 4MiB" in out
    dense = peak_mb(raw["network_g"], [1, 3, 128, 128])  # 100 MiB: the dense network fits
    assert [p.est_peak_mb for p in (uniform, aware)] == [4.0, 4.0]
    assert [p.est_peak_mb for p in above[1:]] == pytest.approx([dense, dense])
    assert f"note: {above[1].name}: the dense network's {dense:.2f} MiB is within" in out

    train = tool.main([*args[:-3], "uniform", "--budgets-mb", "40", "--mode", "train"])
    assert train["points"][0].prune["target"]["optimizer"] == raw["train"]["optim_g"]


def test_default_schedule_is_bench_prunings():
    from llcv.sweep import default_schedule

    for n in range(3, 200):  # bench_pruning's points, at least 1, 2, 3
        assert default_schedule(n) == sorted({max(n // 4, 1), max(3 * n // 8, 2),
                                              max(n // 2, 3)})
    assert default_schedule(2) == [1, 2] and default_schedule(1) == [1]


def test_a_replanned_pruner_point_with_another_prune_section_is_refused(tool, tmp_path):
    args = ["-opt", tiny_base(tmp_path), "--input-shape", *map(str, SHAPE), "--no-progress",
            "--slurm", "--methods", "uniform", "--budgets-mb", f"{0.9 * peak_mb(NET, SHAPE):.3f}"]
    first = tool.main([*args, "--round-to", "2"])["points"][0]
    assert read_yaml(first.option_file)["prune"]["round_to"] == 2
    with pytest.raises(LLCVError, match="planned with network_g .* and prune .*'round_to': 2"):
        tool.main([*args, "--round-to", "4"])
