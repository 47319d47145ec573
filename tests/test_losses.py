"""Each task loss on hand-made tensors; expected values worked out by hand (see comments)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mtbench.registry import TASKS

LN2 = math.log(2.0)


def test_semseg_ce_ignores_255_and_averages_over_labelled_pixels():
    # pixel A: logits (0, 0), label 0 -> ln 2; pixel B: logits (ln 3, 0), label 0 -> -ln(3/4);
    # pixel C: label 255 -> ignored.  mean = (ln2 + ln(4/3)) / 2
    logits = torch.tensor([[0.0, math.log(3.0), 5.0], [0.0, 0.0, -5.0]]).view(1, 2, 1, 3)
    target = torch.tensor([[[0, 0, 255]]])
    expected = (LN2 + math.log(4 / 3)) / 2
    assert TASKS.get("semseg").loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_ce_all_ignored_is_zero_not_nan():
    logits = torch.randn(1, 3, 2, 2)
    target = torch.full((1, 2, 2), 255)
    for name in ("semseg", "human_parts"):
        assert TASKS.get(name).loss(logits, target).item() == 0.0


def test_depth_l1_on_valid_pixels_only():
    # valid where target > 0: |1-1.5| + |3-2| + |4-4| = 1.5 over 3 pixels
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[1.5, 0.0], [2.0, 4.0]]])
    assert TASKS.get("depth").loss(pred, target).item() == pytest.approx(0.5)


def test_normals_l1_of_normalised_prediction():
    # p1: (2,0,0)->(1,0,0) vs (0,1,0): |1|+|-1|+0 = 2 ; p2: (0,0,5)->(0,0,1) vs (0,0,1): 0 ;
    # p3: target 255 -> ignored.  Sum over channels / valid pixels = 2 / 2 = 1
    pred = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 5.0, 1.0]]).view(1, 3, 1, 3)
    target = torch.tensor([[0.0, 0.0, 255.0], [1.0, 0.0, 255.0], [0.0, 1.0, 255.0]]).view(1, 3, 1, 3)
    assert TASKS.get("normals").loss(pred, target).item() == pytest.approx(1.0)


def test_normals_zero_vector_target_is_invalid():
    pred = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    target = torch.zeros(1, 3, 1, 1)
    assert TASKS.get("normals").loss(pred, target).item() == 0.0


def test_edge_balanced_bce_pos_weight_095():
    # x = ln 3 -> sigma = 3/4.  y=1: 0.95 * -ln(3/4); y=0: 0.05 * -ln(1/4); third pixel ignored.
    x = math.log(3.0)
    logits = torch.tensor([x, x, 7.0]).view(1, 1, 1, 3)
    target = torch.tensor([[[1.0, 0.0, 255.0]]])
    expected = (0.95 * -math.log(0.75) + 0.05 * -math.log(0.25)) / 2
    got = TASKS.get("edge").loss(logits, target).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # Same number as the reference definition: BCE with pos_weight w/(1-w), mean, divided by 1/(1-w).
    w = 0.95
    ref = F.binary_cross_entropy_with_logits(torch.tensor([x, x]), torch.tensor([1.0, 0.0]),
                                             pos_weight=torch.tensor(w / (1 - w))) * (1 - w)
    assert got == pytest.approx(ref.item(), rel=1e-6)


def test_saliency_balanced_ce():
    # labels (1, 0, 0, 255): 3 valid, 2 negatives -> w_pos = 2/3, class weights (1/3, 2/3).
    # zero logits -> each pixel's CE is ln 2.  Sum = (2/3 + 1/3 + 1/3) ln2 = 4/3 ln2; / 3 valid.
    logits = torch.zeros(1, 2, 1, 4)
    target = torch.tensor([[[1, 0, 0, 255]]])
    assert TASKS.get("sal").loss(logits, target).item() == pytest.approx(4 / 9 * LN2, rel=1e-6)


def test_losses_backpropagate():
    for name, (c, target) in {
        "semseg": (3, torch.tensor([[[0, 1], [2, 255]]])),
        "depth": (1, torch.tensor([[[1.0, 2.0], [0.0, 3.0]]])),
        "normals": (3, F.normalize(torch.randn(1, 3, 2, 2), dim=1)),
        "edge": (1, torch.tensor([[[1.0, 0.0], [0.0, 255.0]]])),
        "sal": (2, torch.tensor([[[1, 0], [0, 1]]])),
    }.items():
        logits = torch.randn(1, c, 2, 2, requires_grad=True)
        TASKS.get(name).loss(logits, target).backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0, name
