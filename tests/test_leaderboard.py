"""Δm and the leaderboard built from records alone, on hand-computed numbers."""
import json
import math

import pytest

from mtbench.leaderboard import build_tables, delta_m, to_markdown, write_leaderboard
from mtbench.records import write_record


def test_delta_m_hand_computed():
    # semseg mIoU 40 vs 38 (higher better): +2/38 = +5.2631579 %
    # depth rmse 0.60 vs 0.62 (lower better): -(0.60-0.62)/0.62 = +3.2258065 %
    got = delta_m({"semseg": 40.0, "depth": 0.60}, {"semseg": 38.0, "depth": 0.62},
                  {"semseg": True, "depth": False})
    assert got == pytest.approx((2 / 38 + 0.02 / 0.62) / 2 * 100)
    assert got == pytest.approx(4.2444822, abs=1e-6)


def test_delta_m_missing_task_is_nan():
    assert math.isnan(delta_m({"semseg": 40.0}, {"semseg": 38.0, "depth": 0.6}, {"semseg": True, "depth": False}))


def _record(method, tasks, seed, metrics, ref=False, key="K1", status="done"):
    hib = {"semseg": {"mIoU": True}, "depth": {"rmse": False}}
    return {
        "run_id": f"{method}_{'+'.join(tasks)}_s{seed}", "status": status, "method": method, "dataset": "synthetic",
        "tasks": list(tasks), "backbone": "resnet18", "seed": seed, "recipe_name": "smoke", "setting_key": key,
        "single_task_reference": ref,
        "metrics": {t: {m: v} for t, (m, v) in metrics.items()},
        "primary_metrics": {"semseg": "mIoU", "depth": "rmse"},
        "higher_is_better": {t: hib[t] for t in tasks},
        "trivial": {"semseg": {"mIoU": 5.0}, "depth": {"rmse": 1.0}},
        "params": {"total": 1_000_000}, "flops": {"gflops": 2.0},
    }


def test_table_mean_std_and_delta_m_per_seed(tmp_path):
    recs = [
        _record("single", ["semseg"], 0, {"semseg": ("mIoU", 38.0)}, ref=True),
        _record("single", ["semseg"], 1, {"semseg": ("mIoU", 40.0)}, ref=True),  # ref mean 39
        _record("single", ["depth"], 0, {"depth": ("rmse", 0.5)}, ref=True),  # ref mean 0.5
        _record("baseline", ["semseg", "depth"], 0, {"semseg": ("mIoU", 39.0), "depth": ("rmse", 0.45)}),
        _record("baseline", ["semseg", "depth"], 1, {"semseg": ("mIoU", 42.9), "depth": ("rmse", 0.55)}),
        _record("baseline", ["semseg", "depth"], 2, {}, status="failed"),
    ]
    recs[-1]["error"] = "NonFiniteLoss: nan"
    (table,) = build_tables(recs)
    rows = {r["method"]: r for r in table.rows}
    assert rows["single-task refs"]["semseg"][0] == pytest.approx(39.0)
    assert rows["single-task refs"]["semseg"][1] == pytest.approx(math.sqrt(2.0))  # sample std of 38, 40
    # seed 0: (0/39 + 0.05/0.5)/2 = 5 % ; seed 1: (3.9/39 - 0.05/0.5)/2 = 0 %  -> mean 2.5, std 3.5355
    assert rows["baseline"]["delta_m"][0] == pytest.approx(2.5)
    assert rows["baseline"]["delta_m"][1] == pytest.approx(math.sqrt(12.5))
    # trivial: (5-39)/39 and -(1-0.5)/0.5 -> mean of -87.18 % and -100 %
    assert rows["trivial (constant)"]["delta_m"][0] == pytest.approx(((5 - 39) / 39 - 1.0) / 2 * 100)
    assert rows["baseline"]["seeds"] == "2/3"  # the failed seed is planned, not done
    md = to_markdown(table)
    assert "semseg mIoU % ↑" in md and "depth rmse m ↓" in md and "failed run" in md

    for r in recs:
        write_record(tmp_path / "runs" / r["run_id"], r)
    tables, path = write_leaderboard(tmp_path)
    assert path.read_text().count("| **baseline** |") == 1
    assert len(list((tmp_path / "leaderboards").glob("*.csv"))) == 1


def test_missing_reference_marks_delta_m_missing():
    recs = [_record("single", ["semseg"], 0, {"semseg": ("mIoU", 38.0)}, ref=True),
            _record("baseline", ["semseg", "depth"], 0, {"semseg": ("mIoU", 39.0), "depth": ("rmse", 0.45)})]
    (table,) = build_tables(recs)
    rows = {r["method"]: r for r in table.rows}
    assert math.isnan(rows["baseline"]["delta_m"][0])
    assert any("no single-task reference for 'depth'" in n for n in table.notes)
    assert "| — |" in to_markdown(table) or "—" in to_markdown(table)


def test_records_are_written_atomically(tmp_path):
    path = write_record(tmp_path / "r", {"run_id": "x", "status": "done"})
    assert json.loads(path.read_text())["run_id"] == "x"
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]  # no temp file left behind


def test_method_whose_runs_all_failed_keeps_its_row():
    recs = [_record("single", ["semseg"], 0, {"semseg": ("mIoU", 38.0)}, ref=True),
            _record("single", ["depth"], 0, {"depth": ("rmse", 0.5)}, ref=True),
            _record("baseline", ["semseg", "depth"], 0, {"semseg": ("mIoU", 39.0), "depth": ("rmse", 0.45)}),
            {**_record("mqt", ["semseg", "depth"], 0, {}, status="failed"), "error": "OutOfMemoryError: CUDA"}]
    (table,) = build_tables(recs)
    rows = {r["method"]: r for r in table.rows}
    assert rows["mqt"]["seeds"] == "0/1" and math.isnan(rows["mqt"]["semseg"][0])
    line = next(ln for ln in to_markdown(table).splitlines() if ln.startswith("| **mqt**"))
    assert line.count("—") >= 3  # semseg, depth and Δm cells are marked missing
