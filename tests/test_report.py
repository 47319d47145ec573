"""The report page from a results directory alone: content, significance (against hand-worked numbers), colour
maps, and what it says about failed, short and log-less runs. Built from fake records (tests/fake_runs.py)."""
import math
import re

import numpy as np
import pytest

from mtbench.leaderboard import build_tables, to_markdown
from mtbench.records import load_records
from mtbench.report.build import build_report
from mtbench.report.colours import colourise, depth_range, voc_palette
from mtbench.report.figures import pareto
from mtbench.report.significance import t_interval, welch
from tests.fake_runs import write_results, write_run


def _t_cdf(t: float, df: float) -> float:
    """Student's t CDF by integrating its density (trapezoid on a fine grid): independent of scipy.stats."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    x = np.linspace(0, abs(t), 200_001)
    y = c * (1 + x ** 2 / df) ** (-(df + 1) / 2)
    half = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
    return 0.5 + math.copysign(half, t)


def test_welch_and_t_interval_hand_worked():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0]
    # means 2.5 and 6; variances/n 1.6667/4 = 0.41667 and 10/5 = 2; t = -3.5 / sqrt(2.41667) = -2.25144
    # df = 2.41667^2 / (0.41667^2/3 + 2^2/4) = 5.84028 / 1.05787 = 5.52079
    w = welch(a, b)
    assert w.t == pytest.approx(-2.25144, abs=1e-5) and w.df == pytest.approx(5.52079, abs=1e-4)
    assert w.p == pytest.approx(2 * _t_cdf(-2.25144, 5.52079), abs=1e-4)
    assert welch([1.0], b) is None and welch(a, [3.0]) is None  # too few seeds: no number
    # t_{0.975, 3} = 3.182446 (tables); s = 1.290994; half width = 3.182446 * 1.290994 / 2 = 2.054260
    mean, lo, hi = t_interval(a)
    assert mean == 2.5 and lo == pytest.approx(0.445740, abs=1e-5) and hi == pytest.approx(4.554260, abs=1e-5)
    assert t_interval([3.0]) is None


def test_pareto_front():
    # (cost, Δm): 0 (1, 0) and 2 (2, 5) and 4 (8, 9) are on the front; 1 (3, 4) is beaten by 2; 3 (9, 1) by 2
    pts = [(1, 0), (3, 4), (2, 5), (9, 1), (8, 9)]
    assert pareto(pts) == [0, 2, 4]
    assert pareto(pts, lower_x_better=False) == [3, 4]  # higher cost better (img/s): 9 first, then 8 beats it


def test_colour_maps():
    pal = voc_palette()
    # the VOC devkit's colours: background, aeroplane, bicycle, bird, ..., person (15)
    assert [tuple(pal[i]) for i in (0, 1, 2, 3, 15)] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0),
                                                         (192, 128, 128)]
    n = np.zeros((3, 1, 2), np.float32)
    n[:, 0, 0] = (0, 0, 1)
    n[:, 0, 1] = 255  # invalid
    rgb = colourise("normals", n, target=True)
    assert tuple(rgb[0, 0]) == (128, 128, 255) and tuple(rgb[0, 1]) == (0, 0, 0)
    d = np.array([[0.0, 1.0, 3.0]], np.float32)
    assert depth_range(d) == (1.0, 3.0)
    rgb = colourise("depth", d, value_range=(1.0, 3.0))
    assert tuple(rgb[0, 0]) == (128, 128, 128)  # no depth: grey
    assert tuple(rgb[0, 1]) == (68, 1, 84) and tuple(rgb[0, 2]) == (253, 231, 37)  # viridis ends
    e = colourise("probability", np.array([[0.0, 1.0]]), task="edge")
    assert tuple(e[0, 0]) == (255, 255, 255) and tuple(e[0, 1]) == (0, 0, 0)  # edges dark on white
    labels = colourise("labels", np.array([[0, 1, 255]]), dataset="synthetic", num_classes=10)
    assert tuple(labels[0, 0]) == (0x44, 0x77, 0xAA) and tuple(labels[0, 2]) == (0, 0, 0)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_results(root, methods=("baseline", "mqt"), seeds=(0, 1, 2), ref_seeds=(0, 1), history_every=5)
    write_run(root, "invpt", ("semseg", "depth"), 0)  # one seed: too few for a test
    write_run(root, "padnet", ("semseg", "depth"), 0, status="failed")
    write_run(root, "mtinet", ("semseg", "depth"), 0, log=False, weighting="uw", log_weights=True)
    write_run(root, "mtinet", ("semseg", "depth"), 1, weighting="uw", log_weights=True)
    (root / "runs" / "broken").mkdir()
    (root / "runs" / "broken" / "record.json").write_text("{not json")
    path = build_report(root, workers=1)
    return root, path, path.read_text()


def test_page_holds_every_part(report):
    root, path, page = report
    assert path == root / "report" / "index.html"
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (path.parent / src).is_file() and (path.parent / src).with_suffix(".pdf").is_file(), src
    assert "http://" not in page and "https://" not in page and "<script" not in page  # offline, no code
    # the leaderboard's own numbers, e.g. the baseline's semseg cell
    (table,) = build_tables(load_records(root))
    md = to_markdown(table)
    cell = next(ln for ln in md.splitlines() if ln.startswith("| **baseline**")).split("|")[3].strip()
    assert cell in page
    for fig in ("delta_m_vs_cost", "primary_metrics_per_seed",
                "training_curves",
                "qualitative_semseg", "qualitative_depth"):
        assert f"fig/s1_{fig}.png" in page, fig
    assert "mtinet · uw" in page  # a weighting strategy labels its runs
    assert "RuntimeError: CUDA out of memory (fake)" in page and "padnet" in page  # the failed run, its error
    assert "no train_log.jsonl" in page and "mtinet_uw" not in page.split("no train_log.jsonl")[0][-10:]
    assert "unreadable record" in page and "broken" in page
    assert "single-task refs" in page and "trivial (constant)" in page


def test_significance_section(report):
    root, _, page = report
    recs = load_records(root)
    base = [r["metrics"]["semseg"]["mIoU"] for r in recs if r["method"] == "baseline"]
    refs = [r["metrics"]["semseg"]["mIoU"] for r in recs if r["method"] == "single" and r["tasks"] == ["semseg"]]
    ma, mb = np.mean(base), np.mean(refs)
    va, vb = np.var(base, ddof=1) / len(base), np.var(refs, ddof=1) / len(refs)
    t = (ma - mb) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(base) - 1) + vb ** 2 / (len(refs) - 1))
    assert f"vs refs: Δ {ma - mb:+.2f}, t = {t:.2f}, df = {df:.1f}" in page
    assert "Welch" in page and "95 % t-interval" in page
    invpt_row = page[page.rindex("<b>invpt</b>"):].split("</tr>")[0]  # its row of the significance table
    assert "too few seeds" in invpt_row


def test_results_with_only_failures_and_nothing(tmp_path):
    write_run(tmp_path, "baseline", ("semseg", "depth"), 0, status="failed")
    page = build_report(tmp_path, workers=1).read_text()
    assert "semseg mIoU % ↑" in page and "CUDA out of memory" in page
    assert "no finished single-task reference for semseg" in page
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    assert "No finished run yet" in build_report(tmp_path / "empty", workers=1).read_text()


def test_cli_report(tmp_path, capsys):
    from mtbench.cli import main

    write_results(tmp_path, methods=("baseline",), seeds=(0,), ref_seeds=(0,), tasks=("depth",))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").is_file() and "report written to" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2  # one line, no traceback
    assert "does not exist" in capsys.readouterr().out


def test_grid_end_writes_the_report(tmp_path, monkeypatch, tiny_overrides):
    """A grid whose runs are all finished (fake records under the grid's own run ids) rebuilds the leaderboard and
    the report, as every grid does at its end."""
    from mtbench.cli import main
    from mtbench.config import load_recipe
    from mtbench.launch import GridSpec, expand_grid

    monkeypatch.delenv("MTBENCH_NO_REPORT", raising=False)
    recipe = load_recipe("smoke", tiny_overrides)
    tasks = ("depth",)  # one task: no references, three figures (the grid's end is tested here, not the page)
    runs = expand_grid(GridSpec(["baseline"], "synthetic", tasks, recipe["backbone"], [0], recipe))
    for cfg in runs:
        write_run(tmp_path, cfg.method, cfg.tasks, cfg.seed, key=cfg.setting_key, run_id=cfg.run_id)
    args = ["--methods", "baseline", "--tasks", "depth", "--results", str(tmp_path)]
    args += [a for o in tiny_overrides for a in ("--set", o)]
    assert main(args) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "fig/s1_training_curves.png" in page and "fig/s1_qualitative_depth.png" in page
    (tmp_path / "report" / "index.html").unlink()
    assert main(args + ["--no-report"]) == 0 and not (tmp_path / "report" / "index.html").exists()


def test_training_curves_read_the_task_weights_the_engine_logs(tmp_path):
    """The key is the one ``TrainLog`` writes for a weighting strategy (engine: ``{"task_weights": tensor}``)."""
    import json

    import torch

    from mtbench.report.build import _curves
    from mtbench.train_log import LOG_NAME, TrainLog

    log = TrainLog(tmp_path, "run", total=2, start=0, batch_size=2, plain=True, out=open(tmp_path / "out", "w"))
    for it in (1, 2):
        log.step(it, {"semseg": torch.tensor(1.0 / it), "depth": torch.tensor(2.0 / it)}, 0.1, 0.01, 0.001,
                 {"task_weights": torch.tensor([0.25 * it, 1.0])})
    rows = [json.loads(line) for line in (tmp_path / LOG_NAME).read_text().splitlines()]
    curves = _curves({"tasks": ["semseg", "depth"]}, rows)
    assert curves["weights"]["semseg"].tolist() == [0.25, 0.5] and curves["weights"]["depth"].tolist() == [1.0, 1.0]


def test_tradeoff_points_never_share_colour_and_marker():
    from mtbench.report.figures import MARKERS, colour

    styles = [(colour(i), MARKERS[i % len(MARKERS)]) for i in range(100)]
    assert len(set(styles)) == 100  # 14 methods (the all-methods grid) once gave atrc and padnet the same square


def test_log_axis_labels_only_the_2s_and_5s_between_decades():
    from mtbench.report.figures import _minor_label

    assert [_minor_label(x) for x in (20, 30, 50, 70, 0.2, 0.5, 0.9, 200, 5000)] == \
        ["20", "", "50", "", "0.2", "0.5", "", "200", "5000"]
