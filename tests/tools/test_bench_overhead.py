"""tools/bench_overhead.py: bare loop, runner with defaults and runner without the allocator
meter take turns on one demo; the result line is the defaults' relative overhead."""
import re

from conftest import ROOT, load_tool

bench = load_tool("bench_overhead")


def test_short_comparison_prints_three_loops_and_the_result(capsys):
    overhead = bench.main(["--iters", "3", "--warmup", "1", "--rounds", "1", "--demos",
                           f"{ROOT}/options/train_unet_demo.yml"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert not [line for line in lines if " INFO: " in line]  # the runner's lines are captured
    summary = next(line for line in lines if line.startswith("train_unet_demo.yml"))
    bare, ours = (float(x) for x in re.findall(r"bare ([\d.]+) ms/iter, llcv ([\d.]+)",
                                               summary)[0])
    assert "without the allocator meter" in summary
    assert abs(overhead - (ours / bare - 1)) < 1e-3  # the printed medians, rounded to 0.01 ms
    assert lines[-1] == f"result: llcv_overhead = {overhead:.3f} (target <= 0.05)"
