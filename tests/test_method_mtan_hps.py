"""mtan, segnet_split, single-task SegNet and hps against the released code (lorenmt/mtan, CAGrad, LibMTL):
parameter counts, outputs under the same weights, and end-to-end grids on fixtures in the exact formats."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from deterministic_weights import det  # noqa: E402

from mtbench.launch import GridSpec, expand_grid  # noqa: E402
from mtbench.registry import BACKBONES, METHODS  # noqa: E402

NYU = {"semseg_libmtl": 13, "depth_libmtl": 1, "normals_libmtl": 3}
CITY = {"semseg_libmtl": 7, "depth_libmtl": 1}

# Trainable parameters of the released networks, their classes run unmodified on torch 2.14.1 (class definitions
# extracted with ast from the files, the scripts' training code not run; LibMTL's modules imported from its files):
#   lorenmt/mtan c36c30b im2im_pred/model_segnet_mtan.py, model_segnet_split.py (--type standard),
#   model_segnet_single.py (--task semantic/depth/normal); Cranial-XIX/CAGrad dc3d481 cityscapes/model_segnet_mtan.py,
#   model_segnet_single.py; median-research-group/LibMTL 4336804 LibMTL/model/resnet_dilated.py
#   resnet_dilated('resnet50', pretrained=False) and examples/nyu/aspp.py DeepLabHead(2048, C).
# The SegNet releases hold one logsigma per task (uncertainty weighting), which is not part of our networks.
RELEASED = {
    ("mtan", "nyu"): 44_229_076 - 3, ("mtan", "city"): 41_206_987 - 3,
    ("segnet_split", "nyu"): 25_055_188 - 3,
    # CAGrad's cityscapes split file is a copy of the NYUv2 one (13 classes, 3 tasks); the 2-task count is the
    # released single-task SegNets': body (24,980,289 − depth layer 36,993) + the 7-class and depth layers
    ("segnet_split", "city"): 24_980_289 - 36_993 + (24_980_679 - 24_943_296) + 36_993,
    ("hps", "nyu"): 23_508_032 + 16_128_781 + 16_125_697 + 16_126_211,
    ("hps", "city"): 23_508_032 + 16_127_239 + 16_125_697,
}
SINGLE = {("nyu", "semseg_libmtl"): 24_981_069, ("nyu", "depth_libmtl"): 24_980_289,
          ("nyu", "normals_libmtl"): 24_980_419, ("city", "semseg_libmtl"): 24_980_679,
          ("city", "depth_libmtl"): 24_980_289}


def _backbone(name, **kw):
    if name == "resnet50":
        kw.setdefault("output_stride", 8)
    return BACKBONES.get(name)(img_size=(288, 384), **kw)


def _count(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("method,setting", list(RELEASED))
def test_parameter_counts_are_the_released(method, setting):
    tasks = NYU if setting == "nyu" else CITY
    with torch.device("meta"):
        model = METHODS.get(method)(tasks, _backbone("resnet50" if method == "hps" else "segnet"), {})
    assert _count(model) == RELEASED[(method, setting)]


@pytest.mark.parametrize("setting,task", list(SINGLE))
def test_single_task_segnet_is_the_released(setting, task):
    tasks = NYU if setting == "nyu" else CITY
    with torch.device("meta"):
        model = METHODS.get("single")({task: tasks[task]}, _backbone("segnet"), {"head": "aspp"})  # segnet decides
    assert _count(model) == SINGLE[(setting, task)]
    with torch.device("meta"):
        hps_ref = METHODS.get("single")({task: tasks[task]}, _backbone("resnet50"), {"head": "aspp"})
    assert _count(hps_ref) == 23_508_032 + {13: 16_128_781, 7: 16_127_239, 1: 16_125_697, 3: 16_126_211}[tasks[task]]


def _fill(model, rename):
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                v.copy_(det(rename(k), v.shape))


def _stats(x):
    x = x.double().flatten()
    w = torch.cos(torch.arange(x.numel(), dtype=torch.float64) * 0.01)
    return [x.mean().item(), x.pow(2).mean().item(), (x * w).mean().item()]


def _image(shape):
    n = torch.tensor(shape).prod().item()
    return (torch.sin(torch.arange(n, dtype=torch.float64) * 0.37).view(shape) * 0.5 + 0.5).float()


# [mean, mean square, cos-weighted mean] of the released outputs, eval mode, every tensor filled by
# deterministic_weights.det under its released name, input _image((2, 3, 32, 64)) / ((2, 3, 64, 96)):
#   MTAN: lorenmt/mtan c36c30b model_segnet_mtan.py SegNet (its class run unmodified), outputs
#     [log_softmax semantic, depth, normalised normals];
#   HPS: LibMTL 4336804 resnet_dilated('resnet50') and examples/nyu/aspp.py DeepLabHead(2048, 7 / 1), then
#     F.interpolate(bilinear, align_corners=True) to the input size (Trainer.process_preds of examples/cityscapes).
RELEASED_MTAN = [[-2.5710608010413125, 6.622683926598301, 0.004395044614761066],
                 [0.1484167854396219, 0.022036913862569563, -0.00020823479546184511],
                 [0.15961716241872637, 0.3333333332566664, 0.0007127239429296723]]
RELEASED_HPS = {"semseg_libmtl": [0.08838749324275427, 0.027706231204252335, 5.872526490380876e-05],
                "depth_libmtl": [0.3139186015735807, 0.09868452568841853, -0.0007998582661879576]}


def test_mtan_outputs_match_the_release():
    """Catches any change of wiring: e.g. attending the pre-conv encoder map instead of the conv block's output, or
    sharing the task attention, moves these statistics by far more than the tolerance."""
    model = METHODS.get("mtan")(NYU, _backbone("segnet"), {}).eval()
    order = list(NYU)

    def rename(k):
        if k.startswith("backbone."):
            return k[len("backbone."):]
        if k.startswith("pred."):
            task, rest = k[len("pred."):].split(".", 1)
            return f"pred_task{order.index(task) + 1}.{rest}"
        return k

    _fill(model, rename)
    with torch.no_grad():
        out = model(_image((2, 3, 32, 64)))["final"]
    got = [F.log_softmax(out["semseg_libmtl"], 1), out["depth_libmtl"], F.normalize(out["normals_libmtl"], dim=1)]
    for g, ref in zip(got, RELEASED_MTAN):
        assert _stats(g) == pytest.approx(ref, rel=1e-5, abs=1e-8)


def test_hps_outputs_match_libmtl():
    model = METHODS.get("hps")(CITY, BACKBONES.get("resnet50")(img_size=(64, 96), output_stride=8), {}).eval()
    lib = {"semseg_libmtl": "segmentation", "depth_libmtl": "depth"}

    def rename(k):
        if k.startswith("backbone.body."):
            return "encoder." + k[len("backbone.body."):]
        task, rest = k[len("decoders."):].split(".", 1)
        return f"decoders.{lib[task]}.{rest}"

    _fill(model, rename)
    with torch.no_grad():
        out = model(_image((2, 3, 64, 96)))["final"]
    for t, ref in RELEASED_HPS.items():
        assert out[t].shape[-2:] == (64, 96)
        assert _stats(out[t]) == pytest.approx(ref, rel=1e-5, abs=1e-8)


def test_hps_needs_a_stride_8_map_and_mtan_needs_segnet():
    with torch.device("meta"):
        with pytest.raises(ValueError, match="output_stride: 8"):
            METHODS.get("hps")(CITY, BACKBONES.get("resnet18")(img_size=(64, 96)), {})
        with pytest.raises(ValueError, match="segnet"):
            METHODS.get("mtan")(CITY, BACKBONES.get("resnet18")(img_size=(64, 96)), {})


def test_grid_runs_segnet_methods_on_segnet_with_their_own_references():
    spec = GridSpec(methods=["mtan", "hps"], dataset="nyuv2_mtan", tasks=tuple(NYU), backbone="resnet50", seeds=[0],
                    recipe={"name": "r", "datasets": {}, "methods": {}}, backbone_weights="/w/resnet50.pth")
    runs = expand_grid(spec)
    got = sorted((r.method, r.backbone, r.tasks, r.backbone_weights) for r in runs)
    assert ("mtan", "segnet", tuple(NYU), None) in got and ("hps", "resnet50", tuple(NYU), "/w/resnet50.pth") in got
    singles = [(b, t) for m, b, t, _ in got if m == "single"]
    assert sorted(singles) == sorted((b, (t,)) for b in ("segnet", "resnet50") for t in NYU)
    assert len({r.setting_key for r in runs}) == 2  # one table per network, each with its references


def _grid(tmp_path, root, dataset, methods, sets, extra=()):
    from mtbench.cli import main

    argv = ["--methods", methods, "--dataset", dataset, "--data-dir", str(root), "--results", str(tmp_path / "res"),
            *extra]
    for o in ["iterations=1", "batch_size=2", "checkpoint_every=100", "num_workers=0",
              "backbone_cfg.segnet_filters=[4,8,8,8,8]"] + sets:
        argv += ["--set", o]
    assert main(argv) == 0
    return [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*/record.json")]


def test_nyuv2_mtan_fixture_grid_end_to_end(tmp_path):
    from fixtures_real import write_mtan

    root = write_mtan(tmp_path / "data", "nyuv2", n_train=2, n_val=1)
    recs = _grid(tmp_path, root, "nyuv2_mtan", "segnet_split", [])  # mtan end to end: test_mtan_synthetic (CPU)
    assert sorted(r["method"] for r in recs) == ["segnet_split", "single", "single", "single"]
    mtan = next(r for r in recs if r["method"] == "segnet_split")
    assert mtan["status"] == "done" and mtan["backbone"] == "segnet" and mtan["recipe_name"] == "nyuv2_mtan"
    assert mtan["delta_m"]["convention"] == "all"
    assert set(mtan["metrics"]["normals_libmtl"]) == {"mean", "median", "a11.25", "a22.5", "a30", "loss"}
    md = (tmp_path / "res" / "leaderboards" / "leaderboard.md").read_text()
    assert "Δm over all 9 metrics" in md and "| **segnet_split** |" in md


def test_cityscapes_mtan_fixture_hps_end_to_end(tmp_path):
    """hps on resnet18 at output stride 8, one task (no references: their ASPP network is counted in
    test_single_task_segnet_is_the_released; the grid with mtan beside it is expanded in
    test_grid_runs_segnet_methods_on_segnet_with_their_own_references; more would cost too much CPU here)."""
    from fixtures_real import write_mtan

    root = write_mtan(tmp_path / "data", "cityscapes", n_train=2, n_val=1)
    recs = _grid(tmp_path, root, "cityscapes_mtan", "hps",
                 ["backbone=resnet18", "methods.hps.aspp_channels=8"], ["--tasks", "depth_libmtl"])
    (hps,) = recs
    assert hps["status"] == "done" and hps["backbone_info"]["strides"][-1] == 8
    assert set(hps["metrics"]["depth_libmtl"]) == {"abs_err", "rel_err", "loss"}
    assert "Δm over all 2 metrics" in (tmp_path / "res" / "leaderboards" / "leaderboard.md").read_text()


def test_step_schedule_and_the_recipes_epochs():
    from mtbench.config import apply_override, load_recipe, validate_recipe
    from mtbench.optim import lr_factor
    from mtbench.recipe_check import ConfigError

    step = {"name": "step", "step_size": 10, "gamma": 0.5}
    assert [lr_factor(i, 100, step) for i in (0, 9, 10, 19, 20)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    # StepLR(step_size=100 epochs, gamma 0.5) over 200 epochs, at each recipe's iterations per epoch (drop_last)
    for name, n_train in (("nyuv2_mtan", 795), ("nyuv2_mtan_hps", 795), ("cityscapes_mtan", 2975),
                          ("cityscapes_mtan_hps", 2975)):
        r = load_recipe(name)
        per_epoch = n_train // r["batch_size"]
        assert (r["iterations"], r["schedule"]["step_size"]) == (200 * per_epoch, 100 * per_epoch), name
        assert r["optimizer"]["name"] == "adam" and r["optimizer"]["lr"] == 1e-4 and r["schedule"]["gamma"] == 0.5
    r = load_recipe("nyuv2_mtan")
    apply_override(r, "schedule={name: step}")
    with pytest.raises(ConfigError, match="step_size"):
        validate_recipe(r)
