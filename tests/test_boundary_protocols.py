"""Edge protocols: the summariser against MATLAB benchmarks' own counts, and hand-worked rules."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mtbench.config import ConfigError, load_recipe
from mtbench.evaluation import _save_pngs
from mtbench.leaderboard import build_tables
from mtbench.metrics.boundary import BoundaryEvaluator, curve_scores, summarize
from mtbench.metrics.boundary_protocol import PROTOCOLS, seg2bmap
from tests.test_boundary import MINIBENCH

SBD_BENCH = Path(__file__).parent / "data" / "sbd_bench"
SBD_IDS = ("2008_000051", "2008_000195")


@pytest.mark.skipif(MINIBENCH is None, reason="BSDS mini-bench not found in ../shared/data or $MTBENCH_SHARED/data")
def test_summariser_reproduces_bsds_minibench_from_its_curve():
    thr = np.loadtxt(MINIBENCH / "test_2" / "eval_bdry_thr.txt")
    ref = np.loadtxt(MINIBENCH / "test_2" / "eval_bdry.txt")
    (ods_t, ods_r, ods_p, ods_f), ap = curve_scores(thr[:, 0], thr[:, 1], thr[:, 2], "bsds")
    np.testing.assert_allclose([ods_t, ods_r, ods_p, ods_f, ap], ref[[0, 1, 2, 3, 7]], atol=1e-6)


def _sbd_counts() -> tuple[np.ndarray, np.ndarray]:
    ev = [np.loadtxt(SBD_BENCH / "outdir" / f"{i}_ev1.txt") for i in SBD_IDS]
    return ev[0][:, 0], np.stack([e[:, 1:] for e in ev]).astype(np.int64)


def test_summariser_reproduces_sbd_bench_from_its_counts():
    # Recall repeats here (0.990624 over 41 thresholds): MATLAB's AP keeps the last of them.
    thr, counts = _sbd_counts()
    res = summarize(thr, counts, "sbd")
    ref = np.loadtxt(SBD_BENCH / "outdir" / "eval_bdry.txt")
    got = [res.ods_thr, res.ods_r, res.ods_p, res.ods_f, res.ois_r, res.ois_p, res.ois_f, res.ap]
    np.testing.assert_allclose(got, ref[:8], atol=1e-6)
    curve = np.loadtxt(SBD_BENCH / "outdir" / "eval_bdry_thr.txt")
    np.testing.assert_allclose(np.c_[res.R, res.P, res.F], curve[:, 1:], atol=1e-6)
    img = np.loadtxt(SBD_BENCH / "outdir" / "eval_bdry_img.txt")
    np.testing.assert_allclose(res.per_image, img[:, 1:], atol=1e-6)
    assert abs(summarize(thr, counts, "seism").ap - ref[7]) > 1e-4  # the first-of-ties rule differs here


def _one_image(*rows) -> np.ndarray:
    return np.array([rows], dtype=np.int64)


def test_ap_keeps_first_or_last_of_repeated_recalls():
    # R = 1, .5, .5, 0 with P = .5, .5, 1, 0. Precision at recall .5 is .5 (first) or 1 (last);
    # interpolating (0, 0) -> (.5, p) -> (1, .5) at r = 0, .01, ..., 1 sums to 50 p + 12.75.
    counts = _one_image([10, 10, 10, 20], [5, 10, 5, 10], [5, 10, 5, 5], [0, 10, 0, 2])
    thr = np.array([0.2, 0.4, 0.6, 0.8])
    assert summarize(thr, counts, "seism").ap == pytest.approx(0.01 * (50 * 0.5 + 12.75))
    assert summarize(thr, counts, "bsds").ap == pytest.approx(0.01 * (50 * 1.0 + 12.75))


def test_seism_takes_the_best_threshold_and_p_one_without_predictions():
    counts = _one_image([10, 10, 0, 10], [0, 10, 10, 10])  # F is 0 at both thresholds
    thr = np.array([0.25, 0.75])
    assert summarize(thr, counts, "seism").ods_f == 0  # general_ods: max over thresholds
    assert summarize(thr, counts, "bsds").ods_f == pytest.approx(0.5, abs=1e-3)  # maxF interpolates
    # Last threshold leaves no predicted pixel: SEISM's P is 1 there, BSDS's 0. AP integrates
    # (0, 1) -> (.5, .5): sum over r = 0..0.5 of (1 - r) = 38.25; BSDS (0, 0) -> (.5, .5): 12.75.
    counts = _one_image([5, 10, 5, 10], [0, 10, 0, 0])
    res = summarize(thr, counts, "seism")
    assert (res.R[1], res.P[1]) == (0.0, 1.0) and res.ap == pytest.approx(0.3825)
    assert summarize(thr, counts, "bsds").ap == pytest.approx(0.1275)


def test_seg2bmap_marks_right_lower_and_diagonal_changes():
    seg = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    np.testing.assert_array_equal(seg2bmap(seg), [[0, 1, 0], [1, 1, 1], [0, 0, 0]])


def test_evaluator_truncates_predictions_like_the_reference_pngs():
    # 100.6 / 255 is stored as 100 (truncation), not 101: below a threshold of 0.3935 (100.35 / 255).
    gt = np.zeros((40, 40), np.float32)
    gt[5:35, 20] = 1
    pred = torch.from_numpy(gt * np.float32(100.6 / 255))[None]
    ev = BoundaryEvaluator(max_dist=0.02, protocol="bsds", thresholds=[0.3935], workers=1)
    ev.update(pred, torch.from_numpy(gt)[None])
    assert ev.compute()["odsF"] == 0.0
    ev = BoundaryEvaluator(max_dist=0.02, protocol="bsds", thresholds=[0.39], workers=1)
    ev.update(pred, torch.from_numpy(gt)[None])
    assert ev.compute()["odsF"] == pytest.approx(100.0)


def test_saved_pngs_truncate(tmp_path):
    pred = torch.tensor([[[100.6 / 255, 0.999, 0.0]]], dtype=torch.float32)
    _save_pngs(tmp_path, pred, [{"id": "a", "size": (1, 3)}])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), [[100, 254, 0]])


def test_recipes_record_a_valid_edge_protocol():
    assert load_recipe("smoke")["eval"]["edge_protocol"] == "seism"
    assert all(load_recipe(n)["eval"]["edge_protocol"] in PROTOCOLS for n in ("nyud", "pascal", "mqt_nyud"))
    with pytest.raises(ConfigError, match="edge_protocol"):
        load_recipe("smoke", ["eval.edge_protocol=matlab"])


def test_leaderboard_title_names_the_edge_protocol():
    rec = {"run_id": "r", "status": "done", "method": "baseline", "dataset": "nyud", "tasks": ["edge"],
           "backbone": "resnet18", "seed": 0, "recipe_name": "nyud", "setting_key": "K", "single_task_reference": False,
           "metrics": {"edge": {"odsF": 70.0}}, "primary_metrics": {"edge": "odsF"},
           "higher_is_better": {"edge": {"odsF": True}}, "trivial": {}, "params": {"total": 1}, "flops": {"gflops": 1.0},
           "config": {"recipe": {"eval": {"edge_protocol": "mtinet"}}}}
    (table,) = build_tables([rec])
    assert table.title.endswith("edge protocol mtinet")


def test_protocol_thresholds_are_the_released_lists():
    from mtbench.metrics.boundary import protocol_thresholds

    # MTI-Net writes '%.2f' % v for v in np.arange(0.01, 1.00, 0.01); SEISM reads them with str2double.
    written = [float("%.2f" % v) for v in np.arange(0.01, 1.00, 0.01)]
    np.testing.assert_array_equal(protocol_thresholds("mtinet"), written)
    hed = protocol_thresholds("seism")  # SEISM parameters/HED.txt
    assert len(hed) == 101 and hed[0] == 0.001 and hed[1] == 0.01 and hed[-2] == 0.99 and hed[-1] == 0.999
    np.testing.assert_array_equal(protocol_thresholds("bsds"), np.linspace(1 / 100, 99 / 100, 99))


def test_seism_ois_picks_thresholds_by_the_printed_f():
    # F = 0.5 and 0.5000001 at the two thresholds: SEISM's results file holds both as 0.500000, and
    # MATLAB's max takes the first; BSDS compares the exact values.
    counts = _one_image([5_000_000, 10_000_000, 5_000_000, 10_000_000], [5_000_001, 10_000_000, 5_000_001, 10_000_000])
    thr = np.array([0.3, 0.6])
    assert summarize(thr, counts, "seism").ois_r == 0.5
    assert summarize(thr, counts, "bsds").ois_r == pytest.approx(0.5000001, abs=1e-12)
