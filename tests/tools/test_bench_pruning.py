"""tools/bench_pruning.py: the smoke mode trains every row under one budget, prints the table,
and ends with the result line computed from the rows."""
from conftest import load_tool

bench = load_tool("bench_pruning")
ROWS = ["base", "thinner", "UniformPruner", "MagnitudePruner", "GALPruner",
        "MemoryAwarePruner", "MemoryAwarePruner (seed 11)"]


def test_quick_run_prints_every_row_and_ends_with_the_margin(capsys):
    summary = bench.main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    rows = summary["rows"]
    assert [r["row"].split(" x")[0] for r in rows] == ROWS
    table = [line for line in lines if line.startswith("| ") and not line.startswith("| row")]
    assert [line.split(" | ")[0][2:].split(" x")[0] for line in table] == ROWS
    budget, base = summary["budget_mb"], rows[0]
    assert base["est_mb"] > budget  # the budget is a fraction of the base's own estimate
    for row in rows[1:]:  # every smaller network is planned to fit the estimated budget
        assert row["est_mb"] <= budget and row["params"] < base["params"], row
    margin = rows[5]["psnr"] - max(r["psnr"] for r in rows[1:4])
    assert summary["margin_db"] == margin
    assert f"GALPruner minus MemoryAwarePruner: {rows[4]['psnr'] - rows[5]['psnr']:.3f} dB" \
        in lines
    assert lines[-1] == f"result: memory_aware_minus_best_other_db = {margin:.3f} (target >= 0)"
