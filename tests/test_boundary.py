"""Boundary evaluation: the BSDS mini-benchmark reference plus hand-made cases with known answers."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage as ndi

from mtbench.cli.eval_boundary import add_arguments, run
from mtbench.metrics.boundary import (BoundaryEvaluator, evaluate_boundaries, hed_thresholds, summarize,
                                      uniform_thresholds)
from mtbench.metrics.boundary_match import correspond_pixels
from mtbench.metrics.boundary_nms import structured_edge_nms


def _minibench() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500_minibench"]
    if os.environ.get("MTBENCH_SHARED"):
        candidates.append(Path(os.environ["MTBENCH_SHARED"]) / "data" / "bsds500_minibench")
    return next((c for c in candidates if (c / "test_2" / "eval_bdry.txt").is_file()), None)


MINIBENCH = _minibench()


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(list(argv)))


@pytest.mark.skipif(MINIBENCH is None, reason="BSDS mini-bench not found in ../shared/data or $MTBENCH_SHARED/data")
def test_reproduces_bsds_matlab_benchmark(tmp_path, capsys):
    out = tmp_path / "res.json"
    assert _cli("--pred", str(MINIBENCH / "png"), "--gt", str(MINIBENCH / "groundTruth"), "--dataset", "bsds",
                "--thresholds", "5", "--no-nms", "--workers", "2", "--out", str(out)) == 0
    res = json.loads(out.read_text())
    ref = np.loadtxt(MINIBENCH / "test_2" / "eval_bdry.txt")
    # printed on the tables' scale: % with two decimals (MATLAB's 0.704628 -> 70.46, ours 0.704717 -> 70.47)
    printed = capsys.readouterr().out
    assert "ODS F %" in printed and "70.47" in printed and "0.7047" not in printed
    assert res["metrics"]["odsF"] == pytest.approx(100 * res["ods_f"])
    assert abs(res["ods_f"] - ref[3]) < 5e-4 and abs(res["ods_f"] - 0.704628) < 5e-4
    assert abs(res["ois_f"] - ref[6]) < 5e-4 and abs(res["ois_f"] - 0.708698) < 5e-4
    assert abs(res["ap"] - ref[7]) < 5e-4 and abs(res["ap"] - 0.307627) < 5e-4
    thr = np.loadtxt(MINIBENCH / "test_2" / "eval_bdry_thr.txt")
    np.testing.assert_allclose(res["thr"], thr[:, 0], atol=1e-5)
    np.testing.assert_allclose(res["R"], thr[:, 1], atol=1e-3)
    np.testing.assert_allclose(res["P"], thr[:, 2], atol=1e-3)
    img = np.loadtxt(MINIBENCH / "test_2" / "eval_bdry_img.txt")
    np.testing.assert_allclose(np.array(res["per_image"])[:, 3], img[:, 4], atol=2e-3)


def _vertical_line(h=64, w=64, col=32) -> np.ndarray:
    g = np.zeros((h, w), bool)
    g[8:56, col] = True
    return g


def test_perfect_prediction_scores_one():
    gt = _vertical_line()
    res = evaluate_boundaries([gt.astype(float)], [[gt]], max_dist=0.0075, protocol="bsds", thresholds=5, workers=1,
                              progress=False)
    assert res.ods_f == pytest.approx(1.0) and res.ois_f == pytest.approx(1.0)


@pytest.mark.parametrize("shift, expected_f", [(1, 1.0), (2, 1.0), (4, 0.0)])
def test_shift_within_and_beyond_radius(shift, expected_f):
    gt = _vertical_line()
    pred = np.roll(gt, shift, axis=1).astype(float)
    # max_dist 0.03 x diagonal 90.5 = 2.7 px: shifts of 1 and 2 px match, 4 px does not.
    res = evaluate_boundaries([pred], [[gt]], max_dist=0.03, protocol="bsds", thresholds=3, workers=1, progress=False)
    assert res.ods_f == pytest.approx(expected_f, abs=1e-9)


def test_matching_is_one_to_one():
    gt = np.zeros((32, 32), bool)
    gt[10, 11] = True
    pred = np.zeros_like(gt)
    pred[10, 10] = pred[10, 12] = True  # both within 1 px of the single GT pixel
    m1, m2 = correspond_pixels(pred, gt, max_dist_px=1.5)
    assert m1.sum() == 1 and m2.sum() == 1
    res = evaluate_boundaries([pred.astype(float)], [[gt]], max_dist=0.05, protocol="bsds", thresholds=1, workers=1,
                              progress=False)
    assert res.R[0] == pytest.approx(1.0) and res.P[0] == pytest.approx(0.5)


def test_matching_prefers_nearest_pairs():
    gt = np.zeros((20, 20), bool)
    gt[5, 5] = gt[5, 8] = True
    pred = np.zeros_like(gt)
    pred[5, 6] = pred[5, 9] = True
    m1, m2 = correspond_pixels(pred, gt, max_dist_px=3.0)
    assert m1.sum() == 2 and m2.sum() == 2  # not (6->8) leaving 5 and 9 unmatched


def test_empty_prediction_and_empty_gt():
    gt = _vertical_line()
    res = evaluate_boundaries([np.zeros(gt.shape)], [[gt]], max_dist=0.0075, protocol="bsds", thresholds=5, workers=1,
                              progress=False)
    assert res.ods_f == 0 and res.ois_f == 0 and res.ap == 0 and np.all(res.counts[..., 2:] == 0)
    res = evaluate_boundaries([gt.astype(float)], [[np.zeros_like(gt)]], max_dist=0.0075, protocol="bsds", thresholds=5,
                              workers=1, progress=False)
    assert np.all(res.P == 0) and np.all(res.R == 0)


def test_ignore_region_excluded_from_both_counts():
    gt = _vertical_line()
    pred = gt.astype(float)
    pred[40:60, 5:15] = 0.9  # spurious blob
    ignore = np.zeros_like(gt)
    ignore[36:64, 0:20] = True
    kw = dict(max_dist=0.0075, protocol="bsds", thresholds=5, workers=1, progress=False)
    assert evaluate_boundaries([pred], [[gt]], **kw).ods_p < 0.9
    res = evaluate_boundaries([pred], [[gt]], ignore_masks=[ignore], **kw)
    assert res.ods_p == pytest.approx(1.0) and res.ods_r == pytest.approx(1.0)


def _random_scene(seed: int, h=96, w=128):
    rng = np.random.default_rng(seed)
    lab = ndi.zoom(rng.integers(0, 4, (6, 8)), (h / 6, w / 8), order=0)
    gt = (ndi.maximum_filter(lab, 2) != ndi.minimum_filter(lab, 2))
    soft = ndi.gaussian_filter(np.roll(gt.astype(float), 1, axis=0), 1.5)
    soft = np.clip(soft / soft.max() + 0.3 * rng.random((h, w)), 0, 1)
    return soft, [gt, np.roll(gt, 2, axis=1)]


def test_worker_count_does_not_change_results():
    scenes = [_random_scene(s) for s in range(4)]
    kw = dict(max_dist=0.011, thresholds=hed_thresholds()[::10], nms=True, progress=False)
    a = evaluate_boundaries([s[0] for s in scenes], [s[1] for s in scenes], workers=1, **kw)
    b = evaluate_boundaries((s[0] for s in scenes), (s[1] for s in scenes), workers=2, **kw)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.ods_f == b.ods_f and a.ois_f == b.ois_f and a.ap == b.ap


def test_nms_thins_blurred_ridge_to_one_pixel():
    ridge = np.zeros((40, 60), np.float32)
    ridge[:, 30] = 1
    blurred = ndi.gaussian_filter(ridge, 2.0)
    out = structured_edge_nms(blurred / blurred.max())
    inner = out[6:-6]
    assert np.all((inner > 0).sum(axis=1) == 1) and np.all(inner.argmax(axis=1) == 30)
    assert np.all(out[0] == 0) and np.all(out[:, 0] == 0)  # border damping zeroes the outermost ring


def test_ods_interpolates_between_thresholds():
    # R falls 1 -> 0 while P rises 0 -> 1: F is 0 at both thresholds, ~0.5 half-way (BSDS maxF).
    counts = np.array([[[10, 10, 0, 10], [0, 10, 10, 10]]])
    res = summarize(np.array([0.25, 0.75]), counts, "bsds")
    assert res.F.max() == 0 and res.ods_f == pytest.approx(0.5, abs=1e-3)
    assert res.ods_thr == pytest.approx(0.5, abs=0.01) and res.ois_f == 0


def test_uniform_thresholds_match_bsds():
    np.testing.assert_allclose(uniform_thresholds(5), [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    hed = hed_thresholds()
    assert len(hed) == 101 and hed[0] == 0.001 and hed[-1] == 0.999 and hed[50] == 0.5


def test_evaluator_crops_padding_and_reports_percent():
    soft, gts = _random_scene(7)
    gt = gts[0]
    h, w = gt.shape
    target = torch.full((1, h + 10, w + 6), 255.0)
    target[0, :h, :w] = torch.from_numpy(gt.astype(np.float32))
    pred = torch.zeros(1, h + 10, w + 6)
    pred[0, :h, :w] = torch.from_numpy(soft.astype(np.float32))
    ev = BoundaryEvaluator(max_dist=0.011, thresholds=9, workers=1)
    ev.update(pred, target)
    out = ev.compute()
    assert set(out) == set(ev.higher_is_better)
    q = (soft.astype(np.float32) * np.float32(255)).astype(np.uint8)  # truncated, as the references save PNGs
    ref = evaluate_boundaries([q], [[gt]], max_dist=0.011, thresholds=9, workers=1, progress=False)
    assert out["odsF"] == pytest.approx(100 * ref.ods_f) and out["AP"] == pytest.approx(100 * ref.ap)
    ev.reset()
    assert np.isnan(ev.compute()["odsF"])


def test_cli_names_missing_files(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    for i in ("a", "b"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "pred" / f"{i}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "gt" / "a.png")
    assert _cli("--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--dataset", "nyud") == 2
    assert "b" in capsys.readouterr().err
