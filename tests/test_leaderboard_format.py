"""Readable tables: units in headers, one number of decimals per column, right names for failed-only tables,
and the LaTeX form (booktabs, best per column in bold, mean ± std)."""
import re

from mtbench.latex import escape, to_latex
from mtbench.leaderboard import build_tables, to_markdown, write_leaderboard
from mtbench.records import write_record
from tests.test_leaderboard import _record


def _table_recs():
    return [
        _record("single", ["semseg"], 0, {"semseg": ("mIoU", 38.0)}, ref=True),
        _record("single", ["depth"], 0, {"depth": ("rmse", 0.5)}, ref=True),
        _record("baseline", ["semseg", "depth"], 0, {"semseg": ("mIoU", 39.0), "depth": ("rmse", 0.45)}),
        _record("baseline", ["semseg", "depth"], 1, {"semseg": ("mIoU", 41.0), "depth": ("rmse", 0.55)}),
        _record("mqt", ["semseg", "depth"], 0, {"semseg": ("mIoU", 12.345), "depth": ("rmse", 0.4)}),
    ]


def _rows(md):
    return {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
            for ln in md.splitlines() if ln.startswith("| **")}


def test_units_in_headers_and_fixed_decimals_per_column():
    (table,) = build_tables(_table_recs())
    md = to_markdown(table)
    assert "| semseg mIoU % ↑ | depth rmse m ↓ | Δm % ↑ |" in md
    rows = _rows(md)
    # semseg (%): 2 decimals whatever the size; depth (m): 3 decimals, also for the std
    assert rows["**mqt**"][1:3] == ["12.35", "0.400"]
    assert rows["**baseline**"][1:3] == ["40.00 ± 1.41", "0.500 ± 0.071"]
    assert rows["**single-task refs**"][1:3] == ["38.00", "0.500"]
    # Δm of mqt by hand: ((12.345-38)/38 + (0.5-0.4)/0.5)/2*100 = (-0.675132 + 0.2)/2*100 = -23.76 %
    assert rows["**mqt**"][3] == "-23.76"


def test_table_of_failed_runs_names_its_metrics():
    recs = [{**_record("baseline", ["semseg", "depth"], 0, {}, status="failed"), "error": "OOM"},
            {**_record("baseline", ["semseg", "depth"], 1, {}, status="failed"), "error": "OOM"}]
    (table,) = build_tables(recs)
    md = to_markdown(table)
    assert "semseg mIoU % ↑" in md and "depth rmse m ↓" in md and "?" not in md.split("\n")[2]


def test_other_units():
    recs = [_record("single", ["semseg"], 0, {}, ref=True), _record("single", ["depth"], 0, {}, ref=True)]
    for r, t, (m, v) in zip(recs, ["normals", "edge"], [("mean", 21.234), ("odsF", 70.0)]):
        r["tasks"], r["run_id"] = [t], f"single_{t}"
        r["metrics"] = {r["tasks"][0]: {m: v}}
        r["primary_metrics"] = {r["tasks"][0]: m}
        r["higher_is_better"] = {r["tasks"][0]: {m: m == "odsF"}}
        r["config"] = {"recipe": {"eval": {"edge_protocol": "seism"}}}
    (table,) = build_tables(recs)
    md = to_markdown(table)
    assert "normals mean ° ↓" in md and "edge odsF % ↑" in md and "21.23" in md


def test_latex_booktabs_bold_best_and_escaping(tmp_path):
    (table,) = build_tables(_table_recs())
    tex = to_latex(table)
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"semseg mIoU \% $\uparrow$" in tex and r"depth rmse m $\downarrow$" in tex
    lines = {ln.split(" & ")[0]: ln.split(" & ") for ln in tex.splitlines() if " & " in ln}
    # semseg best is baseline's 40.00 (mqt 12.35, refs 38.00); depth best (lowest) is mqt's 0.400
    assert lines["baseline"][2] == r"\textbf{40.00} $\pm$ 1.41"
    assert lines["mqt"][3] == r"\textbf{0.400}"
    assert lines["single-task refs"][2] == "38.00"
    # the trivial row never competes
    assert r"\textbf" not in " ".join(lines["trivial (constant)"])
    # Δm: baseline seeds (5.0, ...) vs mqt -23.76: the higher one is bold
    assert lines["mqt"][4] == "-23.76" and lines["baseline"][4].startswith(r"\textbf{")
    assert escape("human_parts 50% · Δm ±") == r"human\_parts 50\% $\cdot$ $\Delta$m $\pm$"
    for ln in tex.splitlines():  # every special character of text is escaped (\label and comments aside)
        if not ln.startswith(("%", r"\label")):
            assert not re.search(r"(?<!\\)[%_#]", ln), ln
    for r in _table_recs():
        write_record(tmp_path / "runs" / r["run_id"], r)
    write_leaderboard(tmp_path)
    assert (tmp_path / "leaderboards" / "leaderboard.tex").read_text().count(r"\begin{tabular}") == 1


def test_leaderboard_cli_latex(tmp_path, capsys):
    import argparse

    from mtbench.cli import leaderboard as cli

    for r in _table_recs():
        write_record(tmp_path / "runs" / r["run_id"], r)
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    assert cli.run(p.parse_args([str(tmp_path), "--format", "latex"])) == 0
    out = capsys.readouterr().out
    assert r"\begin{tabular}" in out and "| **baseline** |" not in out

