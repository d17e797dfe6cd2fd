"""tools/bench_checkpoint.py: both ways write a loadable checkpoint; the ratio is printed."""
import os

from conftest import ROOT, load_tool


def test_bench_checkpoint_prints_the_ratio(tmp_path, capsys):
    demo = os.path.join(ROOT, "options", "train_unet_demo.yml")
    ratio = load_tool("bench_checkpoint").main(["--rounds", "1", "--demos", demo,
                                                "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert ratio > 0 and "weights written three times" in out
    assert out.strip().endswith(f"result: once/three = {ratio:.2f}")
    assert os.listdir(tmp_path) == []  # its temporary folder is gone
