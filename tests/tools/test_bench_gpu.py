"""tools/bench_gpu.py, the parts that run without a GPU: arguments, the table, a dry run."""
import json

import pytest
import torch

from conftest import load_tool

MIB = 1 << 20


@pytest.fixture(scope="module")
def tool():
    return load_tool("bench_gpu")


def test_arguments(tool):
    args = tool.parse_args(["--dry-run", "--models", "DnCNN,UNet"])
    assert args.dry_run and args.sections == "memory,overhead,throughput"
    assert args.models == "DnCNN,UNet"
    with pytest.raises(SystemExit):
        tool.parse_args(["--sections", "memory,speed"])
    with pytest.raises(SystemExit):
        tool.parse_args(["--models", "ResNet"])


def test_table_and_worst_errors(tool):
    rows = [tool.Row("UNet", (1, 3, 8, 8), "train",
                     {"allocated": 90 * MIB, "reserved": 110 * MIB, "device": 600 * MIB},
                     {"allocated": 100 * MIB, "reserved": 100 * MIB, "device": 640 * MIB}),
            tool.Row("DnCNN", (2, 3, 8, 8), "inference",
                     {"allocated": 21 * MIB, "reserved": 42 * MIB, "device": None},
                     {"allocated": 20 * MIB, "reserved": 40 * MIB, "device": 500 * MIB})]
    assert rows[0].error("allocated") == pytest.approx(-0.1)
    assert rows[1].error("device") is None  # not calibrated: no estimate
    worst = tool.worst_errors(rows)
    assert worst["allocated"] == pytest.approx(0.1) and worst["reserved"] == pytest.approx(0.1)
    assert worst["device"] == pytest.approx(40 / 640)
    lines = tool.format_table(rows)
    assert lines[2].split()[:6] == ["UNet", "1x3x8x8", "train", "90.0", "100.0", "-10.0%"]
    assert lines[3].split()[-3:] == ["-", "500.0", "-"]
    assert lines[-1] == "worst |error|: allocated 10.0%, reserved 10.0%, device 6.2%"


def test_dry_run_estimates_every_cell_without_a_gpu(tool, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tool, "QUICK_SHAPES", [(1, 3, 32, 32)])
    out = tmp_path / "bench.json"
    figures = tool.main(["--dry-run", "--quick", "--models", "DnCNN", "--sections", "memory",
                         "--json", str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == "result: memory dry run: 2 cells estimated, nothing measured"
    rows = figures["memory"]["rows"]
    assert [r["mode"] for r in rows] == ["inference", "train"]
    assert all(r["estimated"]["reserved"] % (2 * MIB) == 0 and not r["measured"] for r in rows)
    assert json.loads(out.read_text())["memory"]["worst"] == {"allocated": None,
                                                             "reserved": None, "device": None}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_measuring_needs_cuda(tool):
    from llcv.errors import LLCVError

    with pytest.raises(LLCVError, match="no CUDA device here; use --dry-run"):
        tool.main(["--quick"])


def test_speed_sections_dry_run_print_their_plan(tool, capsys):
    tool.main(["--dry-run", "--quick", "--sections", "overhead,throughput"])
    out = capsys.readouterr().out
    assert "would compare on train_unet_demo.yml, train_nafnet_demo.yml" in out
    assert "| model | fp32 | bf16 | channels_last | compile |" in out
    assert out.strip().splitlines()[-1].startswith("result: overhead dry run")
