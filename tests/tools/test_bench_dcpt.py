"""tools/bench_dcpt.py: the smoke mode runs both trainings per seed with equal iterations and
prints the per-degradation table and the result line; mismatched option files are refused."""
import json
import os

import pytest

from conftest import ROOT, load_tool, write_yaml
from llcv.cli import run_cli
from llcv.options import read_yaml

bench = load_tool("bench_dcpt")
TASKS = ["haze", "rain", "noise", "blur", "lowlight"]


def test_quick_run_prints_the_table_and_the_result_line(tmp_path, capsys):
    out = tmp_path / "bench.json"
    summary = bench.main(["--quick", "--seeds", "0", "--root", str(tmp_path / "runs"),
                          "--json", str(out)])
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert lines[-1] == f"result: dcpt_gain_db = {summary['dcpt_gain_db']:+.2f} " \
                        f"(paper: >= 2 on the full benchmark)"
    assert "4 iterations each (2 of them DCPT pre-training in the DCPT run)" in text
    table = [line.split()[0] for line in lines if line.split()[0] in TASKS + ["average"]]
    assert table == TASKS + ["average"]
    runs = summary["runs"]
    assert set(runs) == {"plain_seed0", "dcpt_seed0"}
    plain, dcpt = runs["plain_seed0"]["sets"], runs["dcpt_seed0"]["sets"]
    assert list(plain) == TASKS == list(dcpt)  # only single-task sets are validated
    mean = {k: sum(v["psnr"] for v in sets.values()) / 5 for k, sets in (("plain", plain),
                                                                         ("dcpt", dcpt))}
    assert summary["dcpt_gain_db"] == pytest.approx(mean["dcpt"] - mean["plain"])
    records = [json.loads(line) for line in open(os.path.join(runs["dcpt_seed0"]["exp_dir"],
                                                              "metrics.jsonl"))]
    assert any("train/l_cls" in r for r in records) and any("train/l_pix" in r for r in records)
    assert json.loads(out.read_text())["dcpt_gain_db"] == summary["dcpt_gain_db"]


def test_rescaled_schedules_keep_the_runs_equally_long(tmp_path):
    args = bench.parse_args(["--total-iter", "600", "--root", str(tmp_path)])
    plain = bench.prepare(args.baseline_opt, "plain", 0, args)
    dcpt = bench.prepare(args.dcpt_opt, "dcpt", 0, args)
    assert plain["train"]["total_iter"] == dcpt["train"]["total_iter"] == 600
    assert plain["train"]["scheduler"]["T_max"] == 600
    assert dcpt["train"]["dcpt"]["iters"] == 200  # the file's third of the run
    assert dcpt["train"]["scheduler"]["periods"] == [200, 400]
    assert plain["val"]["val_freq"] == 600 and "val" not in plain["datasets"]


def test_unequal_runs_are_refused(tmp_path, capsys):
    raw = read_yaml(os.path.join(ROOT, "options", "train_allinone_dcpt_demo.yml"))
    raw["network_g"]["widths"] = [8, 16, 32]
    path = write_yaml(tmp_path / "other.yml", raw)
    with pytest.raises(SystemExit):
        run_cli(lambda: bench.main(["--dcpt-opt", path, "--root", str(tmp_path)]))
    assert capsys.readouterr().err.startswith("error: --dcpt-opt: network_g differs from "
                                              "--baseline-opt's")


@pytest.mark.parametrize("pretrain, left", [(40, "fine-tuning"), (0, "pre-training")])
def test_a_dcpt_run_must_both_pre_train_and_fine_tune(tmp_path, capsys, pretrain, left):
    with pytest.raises(SystemExit):
        run_cli(lambda: bench.main(["--total-iter", "40", "--pretrain-iter", str(pretrain),
                                    "--root", str(tmp_path)]))
    assert capsys.readouterr().err.startswith(f"error: --pretrain-iter: {pretrain} pre-training "
                                              f"iterations leave no {left}")
    assert not os.path.exists(tmp_path / "plain_seed0")  # refused before any run
