"""Dense evaluators against hand-computed values (arithmetic in the comments), plus the pooling
properties every evaluator must have: batching, ignored pixels, reset, summed state."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtbench.metrics.depth import DepthEvaluator
from mtbench.metrics.normals import NormalsEvaluator
from mtbench.metrics.saliency import SaliencyEvaluator
from mtbench.metrics.segmentation import SegmentationEvaluator

I = 255  # ignore


def run(ev, batches):
    ev.reset()
    for pred, target in batches:
        ev.update(pred, target)
    return ev.compute()


def split(pred, target, bs):
    return [(pred[i:i + bs], target[i:i + bs]) for i in range(0, len(pred), bs)]


def assert_same(a, b, rel=1e-12):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=rel, abs=1e-12), k


def assert_pooling(make_ev, pred, target):
    """One batch == batches of 3 == batches of 1 == two evaluators whose states are summed."""
    ev = make_ev()
    whole = run(ev, [(pred, target)])
    assert all(k in type(ev).higher_is_better for k in whole)
    assert_same(whole, run(ev, split(pred, target, 3)))
    assert_same(whole, run(ev, split(pred, target, 1)))
    a, b, merged = make_ev(), make_ev(), make_ev()
    half = len(pred) // 2
    a.update(pred[:half], target[:half])
    b.update(pred[half:], target[half:])
    for name, t in a.state_tensors().items():
        setattr(merged, name, t + b.state_tensors()[name])
    assert_same(whole, merged.compute())


# ----------------------------------------------------------------------------- segmentation
SEG_PRED = torch.tensor([[[0, 1, 1], [1, 0, 0]]])
SEG_TGT = torch.tensor([[[0, 0, 1], [1, I, 2]]])
# valid (t, p): (0,0) (0,1) (1,1) (1,1) (2,0); the ignored pixel's prediction 0 is dropped.
# class 0: TP 1, FP 1 (t2→p0), FN 1 (t0→p1) → 1/3;  class 1: TP 2, FP 1, FN 0 → 2/3
# class 2: TP 0, FN 1 → 0;  class 3 absent from GT and prediction → 0, still in the mean
# mIoU = (1/3 + 2/3 + 0 + 0) / 4 = 25 %;  pixAcc = 3 correct / 5 valid = 60 %
SEG_EXPECTED = {"mIoU": 25.0, "pixAcc": 60.0, "IoU/a": 100 / 3, "IoU/b": 200 / 3, "IoU/c": 0.0, "IoU/d": 0.0}


def test_segmentation_hand_example():
    ev = SegmentationEvaluator(4, ["a", "b", "c", "d"])
    out = run(ev, [(SEG_PRED, SEG_TGT)])
    assert out == pytest.approx(SEG_EXPECTED)
    assert all(k in SegmentationEvaluator.higher_is_better for k in out)
    assert SegmentationEvaluator.higher_is_better["IoU/a"] is True
    assert run(SegmentationEvaluator(4), [(SEG_PRED, SEG_TGT)])["IoU/1"] == pytest.approx(200 / 3)


def test_segmentation_ignored_image_and_padding_and_reset():
    ev = SegmentationEvaluator(4, ["a", "b", "c", "d"])
    ignored = (torch.tensor([[[3, 3, 3], [3, 3, 3]]]), torch.full((1, 2, 3), I))
    assert run(ev, [(SEG_PRED, SEG_TGT), ignored]) == pytest.approx(SEG_EXPECTED)
    # pad to 4x5 with ignore in the target and garbage in the prediction
    pred = torch.full((1, 4, 5), 2)
    tgt = torch.full((1, 4, 5), I)
    pred[:, :2, :3], tgt[:, :2, :3] = SEG_PRED, SEG_TGT
    assert run(ev, [(pred, tgt)]) == pytest.approx(SEG_EXPECTED)
    ev.update(pred, tgt)  # a second copy doubles every count: the ratios stay
    assert ev.compute() == pytest.approx(SEG_EXPECTED)
    ev.reset()
    assert (ev.confusion == 0).all()
    ev.update(SEG_PRED, SEG_TGT)
    assert ev.compute() == pytest.approx(SEG_EXPECTED)


def test_segmentation_out_of_range_labels():
    # pixels (t, p): (0,0) (1,7) (1,-1) (5,0): predictions 7 / -1 are FN for class 1 and FP for
    # nobody; target 5 (not ignore) makes prediction 0 a FP.
    # class 0: TP 1, FP 1 → 1/2;  class 1: TP 0, FN 2 → 0;  mIoU 25 %;  pixAcc 1/4
    out = run(SegmentationEvaluator(2), [(torch.tensor([[0, 7, -1, 0]]), torch.tensor([[0, 1, 1, 5]]))])
    assert out == pytest.approx({"mIoU": 25.0, "pixAcc": 25.0, "IoU/0": 50.0, "IoU/1": 0.0})


def test_segmentation_pooling():
    g = torch.Generator().manual_seed(0)
    tgt = torch.randint(0, 5, (7, 6, 5), generator=g)
    tgt[torch.rand(tgt.shape, generator=g) < 0.2] = I
    pred = torch.randint(0, 5, (7, 6, 5), generator=g)
    assert_pooling(lambda: SegmentationEvaluator(5), pred, tgt)


# ----------------------------------------------------------------------------- depth
DEPTH_PRED = torch.tensor([[[1.0, 2.0], [4.0, 3.0]]])
DEPTH_TGT = torch.tensor([[[2.0, 2.0], [0.0, 4.0]]])
# valid (p, g): (1,2) (2,2) (3,4); the 0-depth pixel is skipped.
# rmse = sqrt((1 + 0 + 1) / 3);  log_rmse = sqrt((ln²2 + 0 + ln²(4/3)) / 3)
# abs_rel = (1/2 + 0 + 1/4) / 3 = 0.25;  sq_rel = (1/2 + 0 + 1/4) / 3 = 0.25
# max(p/g, g/p) = 2, 1, 4/3 → δ<1.25: 1/3;  δ<1.5625: 2/3;  δ<1.953125: 2/3 (2 is not < 1.95)
DEPTH_EXPECTED = {
    "rmse": math.sqrt(2 / 3), "log_rmse": math.sqrt((math.log(2) ** 2 + math.log(4 / 3) ** 2) / 3),
    "abs_rel": 0.25, "sq_rel": 0.25, "delta1": 100 / 3, "delta2": 200 / 3, "delta3": 200 / 3}


def test_depth_hand_example_padding_reset():
    ev = DepthEvaluator()
    assert run(ev, [(DEPTH_PRED, DEPTH_TGT)]) == pytest.approx(DEPTH_EXPECTED)
    pred = torch.full((2, 3, 4), 100.0)  # padded prediction is garbage; padded target is 0
    tgt = torch.zeros(2, 3, 4)
    pred[0, :2, :2], tgt[0, :2, :2] = DEPTH_PRED[0], DEPTH_TGT[0]  # image 1 fully invalid
    assert run(ev, [(pred, tgt)]) == pytest.approx(DEPTH_EXPECTED)
    ev.reset()
    assert int(ev.n_valid) == 0 and math.isnan(ev.compute()["rmse"])
    ev.update(DEPTH_PRED, DEPTH_TGT)
    assert ev.compute() == pytest.approx(DEPTH_EXPECTED)
    assert all(k in DepthEvaluator.higher_is_better for k in DEPTH_EXPECTED)


def test_depth_clamp_and_delta_boundary():
    # p = -1 and p = 0 both become 1e-9 (reference: pred[pred <= 0] = 1e-9), g = 1:
    # squared error (1 − 1e-9)² ≈ 1, log error (ln 1 − ln 1e-9)² = (9 ln 10)²
    out = run(DepthEvaluator(), [(torch.tensor([[-1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))])
    assert out["log_rmse"] == pytest.approx(9 * math.log(10))
    assert out["rmse"] == pytest.approx(1.0)
    assert out["delta3"] == 0.0
    # p/g = 5/4 = 1.25 exactly: not < 1.25 (strict), but < 1.5625
    out = run(DepthEvaluator(), [(torch.tensor([[5.0]]), torch.tensor([[4.0]]))])
    assert (out["delta1"], out["delta2"]) == (0.0, 100.0)


def test_depth_pooling():
    g = torch.Generator().manual_seed(1)
    tgt = torch.rand(7, 6, 5, generator=g) * 10
    tgt[torch.rand(tgt.shape, generator=g) < 0.3] = 0
    pred = torch.rand(7, 6, 5, generator=g) * 10 - 0.5
    assert_pooling(DepthEvaluator, pred, tgt)


# ----------------------------------------------------------------------------- normals
def unit_at(deg):
    """A unit vector at `deg` degrees from +z (in the x-z plane)."""
    r = math.radians(deg)
    return [math.sin(r), 0.0, math.cos(r)]


def normals_example():
    """8 valid pixels against GT +z at angles 0, 10, 20, 25, 45, 90, 90 (zero prediction), 180,
    plus one GT pixel of 255s and one zero GT vector, both ignored."""
    preds = ([[0.0, 0.0, 2.0]] + [unit_at(a) for a in (10, 20, 25, 45)]
             + [[0.0, 5.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    gts = [[0.0, 0.0, 1.0]] * 8 + [[I, I, I], [0.0, 0.0, 0.0]]
    pred = torch.tensor(preds, dtype=torch.float32).T.reshape(1, 3, 2, 5)
    tgt = torch.tensor(gts, dtype=torch.float32).T.reshape(1, 3, 2, 5)
    return pred, tgt


# sorted angles 0 10 20 25 45 90 90 180: mean 460/8 = 57.5;  median (25 + 45)/2 = 35
# rmse = sqrt((0 + 100 + 400 + 625 + 2025 + 8100 + 8100 + 32400) / 8) = sqrt(51750 / 8)
# < 11.25: 2/8;  < 22.5: 3/8;  < 30: 4/8
NORMALS_EXPECTED = {"mean": 57.5, "median": 35.0, "rmse": math.sqrt(51750 / 8),
                    "a11.25": 25.0, "a22.5": 37.5, "a30": 50.0}


def test_normals_hand_example_reset():
    ev = NormalsEvaluator()
    pred, tgt = normals_example()
    out = run(ev, [(pred, tgt)])
    assert out == pytest.approx(NORMALS_EXPECTED, abs=1e-3)  # float32 inputs; median bin 1e-3°
    assert {k: out[k] for k in ("a11.25", "a22.5", "a30")} == {"a11.25": 25.0, "a22.5": 37.5, "a30": 50.0}
    assert all(k in NormalsEvaluator.higher_is_better for k in out)
    ignored = (torch.randn(1, 3, 2, 5), torch.full((1, 3, 2, 5), float(I)))
    assert run(ev, [(pred, tgt), ignored]) == pytest.approx(NORMALS_EXPECTED, abs=1e-3)
    ev.reset()
    assert int(ev.hist.sum()) == 0
    ev.update(pred, tgt)
    assert ev.compute() == pytest.approx(NORMALS_EXPECTED, abs=1e-3)


@pytest.mark.parametrize("n", [20001, 20000])
@pytest.mark.parametrize("bins_per_degree", [1000, 10])
def test_normals_median_within_one_bin_of_np_median(n, bins_per_degree):
    rng = np.random.default_rng(n + bins_per_degree)
    target = rng.normal(size=(n, 3))
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    pred = target + rng.normal(scale=0.4, size=(n, 3))
    t32, p32 = target.astype(np.float32), pred.astype(np.float32)
    # the reference's formula (InvPT eval_normals.py) in float64 on the same float32 inputs
    p_hat = p32 / np.linalg.norm(p32.astype(np.float64), axis=1, keepdims=True)
    t_hat = t32 / np.linalg.norm(t32.astype(np.float64), axis=1, keepdims=True)
    ref = np.degrees(np.arccos(np.clip((p_hat * t_hat).sum(1), -1, 1)))
    ev = NormalsEvaluator(bins_per_degree)
    as_image = lambda a: torch.from_numpy(a.T.copy()).view(1, 3, 1, n)  # noqa: E731
    ev.update(as_image(p32), as_image(t32))
    out = ev.compute()
    assert abs(out["median"] - np.median(ref)) < 1.0 / bins_per_degree
    assert out["mean"] == pytest.approx(ref.mean(), abs=1e-6)
    assert out["rmse"] == pytest.approx(np.sqrt((ref ** 2).mean()), abs=1e-6)
    assert out["a22.5"] == pytest.approx(100 * (ref < 22.5).mean(), abs=100.0 / n)  # ±1 pixel at the edge


def test_normals_pooling():
    g = torch.Generator().manual_seed(2)
    tgt = torch.nn.functional.normalize(torch.randn(7, 3, 6, 5, generator=g), dim=1)
    tgt[:, :, :2, :2] = I
    pred = torch.randn(7, 3, 6, 5, generator=g)
    assert_pooling(NormalsEvaluator, pred, tgt)


# ----------------------------------------------------------------------------- saliency
SAL_PRED = torch.tensor([[[0.9, 0.6], [0.3, 0.1]],   # image A
                         [[0.8, 0.4], [0.7, 0.2]]])  # image B
SAL_TGT = torch.tensor([[[1, 1], [0, 1]],
                        [[1, 0], [0, I]]])
# maxF, pooled, positive iff p >= t, β² = 0.3, actual positives AP = 3 (A) + 1 (B) = 4:
#  t=0.10: A all 4 → TP 3, PP 4; B {.8,.4,.7} → TP 1, PP 3 (.2 ignored): TP 4, PP 7
#          P = 4/7, R = 1 → F = 1.3·(4/7) / (0.3·4/7 + 1) = 5.2 / 8.2 = 0.6341
#  t=0.30: 0.3 >= 0.3 counts: A {.9,.6,.3} TP 2 PP 3; B TP 1 PP 3 → P 1/2, R 3/4 → F = 0.4875/0.9 = 0.5417
#  t=0.50: A {.9,.6} TP 2 PP 2; B {.8,.7} TP 1 PP 2 → P = R = 3/4 → F = 0.75
#  t=0.80: A {.9} TP 1 PP 1; B {.8} TP 1 PP 1 → P = 1, R = 1/2 → F = 1.3·0.5 / (0.3 + 0.5) = 0.8125
#  t=0.95: nothing predicted → P = 0/0 → F := 0.  The max over all 19 thresholds is 0.8125.
#  (With InvPT's extra sigmoid every t ≤ 0.5 would mark all 7 pixels positive: F(0.5) = 0.6341.)
# mIoU_mtinet, per image, positive iff p > t (strict), 15 thresholds 0.20 … 0.90:
#  t=0.20: A {.9,.6,.3}: TP 2, ∪ = 3+3−2 = 4 → 1/2;   B {.8,.4,.7}: TP 1, ∪ 3 → 1/3; mean 5/12
#  t=0.40: A {.9,.6} → 2/3; B {.8,.7} (.4 > .4 false) → 1/2; mean 7/12
#  t=0.70: A {.9} → 1/3;   B {.8} → TP 1, ∪ 1 → 1;  mean 2/3  ← max over thresholds
#  t=0.80: A 1/3; B nothing → 0/1 = 0; mean 1/6.   mIoU_mtinet = 66.67 %
#  Pooled instead of per image, the best threshold is t=0.40: TP 3, PP 4, G 4 → 3/5 = 60 %.
SAL_EXPECTED = {"maxF": 81.25, "mIoU_mtinet": 200 / 3}


def test_saliency_hand_example_batches_reset():
    ev = SaliencyEvaluator()
    assert run(ev, [(SAL_PRED, SAL_TGT)]) == pytest.approx(SAL_EXPECTED)
    assert run(ev, split(SAL_PRED, SAL_TGT, 1)) == pytest.approx(SAL_EXPECTED)
    assert run(ev, [(SAL_PRED, SAL_TGT)])["mIoU_mtinet"] != pytest.approx(60.0)  # not pooled
    ignored = (torch.rand(1, 2, 2), torch.full((1, 2, 2), I))  # contributes to neither metric
    assert run(ev, [(SAL_PRED, SAL_TGT), ignored]) == pytest.approx(SAL_EXPECTED)
    ev.reset()
    assert int(ev.n_images) == 0 and math.isnan(ev.compute()["maxF"])
    ev.update(SAL_PRED, SAL_TGT)
    assert ev.compute() == pytest.approx(SAL_EXPECTED)
    assert all(k in SaliencyEvaluator.higher_is_better for k in SAL_EXPECTED)


def test_saliency_f_per_threshold():
    ev = SaliencyEvaluator()
    ev.update(SAL_PRED, SAL_TGT)
    tp, pp = ev.true_pos.tolist(), ev.pred_pos.tolist()
    # thresholds 0.05·k: index 1 → 0.10, 5 → 0.30, 9 → 0.50, 15 → 0.80, 18 → 0.95 (see above)
    assert [(tp[i], pp[i]) for i in (1, 5, 9, 15, 18)] == [(4, 7), (3, 6), (3, 4), (2, 2), (0, 0)]
    assert int(ev.actual_pos) == 4
    # per-image IoU sums (A + B) at 0.20, 0.40, 0.70, 0.80 (thresholds 0.2 + 0.05·k)
    assert ev.iou_sum[[0, 4, 10, 12]].tolist() == pytest.approx([5 / 6, 7 / 6, 4 / 3, 1 / 3])


def test_saliency_empty_union_scores_one():
    # GT all negative; p = 0.5 is positive for t < 0.5 (IoU 0/1 = 0), nothing is for t ≥ 0.5:
    # empty union → IoU 1 (MTI-Net jaccard). No actual positive → recall 0/0 → F 0 everywhere.
    out = run(SaliencyEvaluator(), [(torch.tensor([[[0.1, 0.5]]]), torch.tensor([[[0, 0]]]))])
    assert out == pytest.approx({"maxF": 0.0, "mIoU_mtinet": 100.0})


def test_saliency_padding_ignored():
    pred = torch.rand(2, 4, 4)
    tgt = torch.full((2, 4, 4), I)
    pred[:, :2, :2], tgt[:, :2, :2] = SAL_PRED, SAL_TGT
    assert run(SaliencyEvaluator(), [(pred, tgt)]) == pytest.approx(SAL_EXPECTED)


def test_saliency_pooling():
    g = torch.Generator().manual_seed(3)
    tgt = (torch.rand(7, 6, 5, generator=g) < 0.4).long()
    tgt[torch.rand(tgt.shape, generator=g) < 0.2] = I
    tgt[4] = I  # an all-ignored image in the middle
    pred = torch.rand(7, 6, 5, generator=g)
    assert_pooling(SaliencyEvaluator, pred, tgt)
