"""ATRC: output contract, genotypes, the initial predictions' losses, parameter counts and output parity with
the released head (brdav/atrc). Small inputs (64×96); run with HF_HUB_OFFLINE=1."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import mtbench.registry as registry  # noqa: E402
from methods._atrc_aux import (DEPTH_BINS, aux_losses, depth_bins, edge_two_class_loss, load_centroids,  # noqa: E402
                               normal_clusters)
from methods._atrc_context import local_attention  # noqa: E402
from methods._atrc_genotype import resolve  # noqa: E402
from methods.atrc import ATRCHead, build_atrc  # noqa: E402
from mtbench.backbones import create_backbone  # noqa: E402
from mtbench.layers import upsample_to  # noqa: E402
from mtbench.objective import task_losses  # noqa: E402
from mtbench.registry import TASKS  # noqa: E402
from test_method_invpt import _fill, _stats  # noqa: E402  (_fill: the weights the release ran with)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread

NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}
PASCAL = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}
HW = (64, 96)
HRNET18 = "hrnet_w18_small_v2"


def _build(tasks, backbone="resnet18", cfg=None):
    torch.manual_seed(0)
    return build_atrc(tasks, create_backbone(backbone, HW), cfg or {"head_channels": 16})


# --------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("backbone,tasks", [("resnet18", "nyud"), (HRNET18, "pascal")])
def test_outputs_and_initial_predictions(backbone, tasks):
    """Final outputs for every task; initial predictions (aux) only where a label context reads them, with the
    release's channels: depth 40 bins, normals 40 clusters, edge 2 classes, the others their own."""
    tc = NYUD if tasks == "nyud" else PASCAL
    model = _build(tc, backbone).train()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *HW))
    assert list(out["final"]) == list(tc)
    for t, c in tc.items():
        assert out["final"][t].shape == (2, c, *HW)
    expected = {"depth": 40, "normals": 40, "edge": 2}
    initial = out["aux"]["initial"]
    assert list(initial) == model.head.aux_tasks == list(tc)  # both published genotypes read every task
    for t, v in initial.items():
        assert v.shape == (2, expected.get(t, tc[t]), *HW) and torch.isfinite(v).all()
    assert set(model.aux_losses["initial"]) == {"depth", "normals", "edge"} & set(tc)


def test_no_label_context_means_no_initial_predictions():
    model = _build(NYUD, cfg={"context": "global", "head_channels": 16}).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *HW))
    assert out["aux"] == {} and model.head.aux_tasks == [] and model.aux_losses == {"initial": {}}


def test_gradients_initial_predictions_do_not_reach_the_backbone():
    """The release detaches the head's input for the initial predictions; the final outputs train everything
    (out_proj's BN starts at zero, which blocks the context blocks' gradient, so weights are _fill-ed)."""
    model = _build(NYUD).train()
    _fill(model.head)
    x = torch.randn(2, 3, *HW)
    out = model(x)
    sum(v.square().mean() for v in out["aux"]["initial"].values()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.head.aux_logits.parameters())
    model.zero_grad(set_to_none=True)
    out = model(x)
    sum(v.square().mean() for v in out["final"].values()).backward()
    no_grad = [n for n, p in model.head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    assert model.backbone.body.conv1.weight.grad.abs().sum() > 0


def test_zero_initialised_context_starts_as_identity():
    """Default init: out_proj's BN is zero, so the contexts add nothing until trained (the release's zero_init)."""
    model = _build(NYUD).eval()
    for m in model.head.atrc_module.out_proj.values():
        assert not m.bn.weight.any() and not m.bn.bias.any()


def test_unsupported_backbone_is_refused():
    vit = create_backbone("vit_b", HW, embed_dim=64, depth=4, num_heads=2, out_indices=(0, 1, 2, 3))
    with pytest.raises(ValueError, match=r"needs a 4-level pyramid with strides \[4, 8, 16, 32\].*vit_b.*\[16, 16"):
        build_atrc(NYUD, vit, {})


# -------------------------------------------------------------------------------------------- genotypes
def test_published_genotypes_read_as_released():
    g = resolve(list(NYUD), "nyud_hrnet18")  # genotypes/atrc_nyud_hrnet18.json: codes 3, 3, 4, 4 for semseg
    assert g["semseg"] == {"semseg": "tlabel", "depth": "tlabel", "normals": "slabel", "edge": "slabel"}
    assert g["edge"]["normals"] == "global"
    g48 = resolve(list(NYUD), "nyud_hrnet48")
    assert g48["semseg"] == {"semseg": "tlabel", "depth": "none", "normals": "none", "edge": "slabel"}
    assert resolve(list(PASCAL), "pascal_hrnet18")["semseg"]["normals"] == "none"


def test_default_genotype_follows_tasks_and_backbone():
    assert resolve(list(NYUD), backbone=HRNET18) == resolve(list(NYUD), "nyud_hrnet18")
    assert resolve(list(NYUD), backbone="hrnet_w48") == resolve(list(NYUD), "nyud_hrnet48")
    assert resolve(list(NYUD), backbone="resnet18") == resolve(list(NYUD), "nyud_hrnet18")
    assert resolve(list(PASCAL), backbone="resnet18") == resolve(list(PASCAL), "pascal_hrnet18")
    with pytest.raises(ValueError, match="no published genotype for the tasks.*methods.atrc.context"):
        resolve(["semseg", "depth"])


def test_explicit_genotypes_codes_names_and_subsets():
    tasks = ["semseg", "depth"]
    by_code = resolve(tasks, {"semseg": {"semseg": 0, "depth": 2}, "depth": {"semseg": "SLabel", "depth": 1}})
    assert by_code == {"semseg": {"semseg": "none", "depth": "local"}, "depth": {"semseg": "slabel", "depth": "global"}}
    assert resolve(tasks, context="tlabel") == {t: {s: "tlabel" for s in tasks} for t in tasks}
    assert resolve(tasks, "nyud_hrnet18") == {"semseg": {"semseg": "tlabel", "depth": "tlabel"},
                                              "depth": {"semseg": "slabel", "depth": "tlabel"}}


@pytest.mark.parametrize("kwargs,match", [
    ({"genotype": "nyud_hrnet34"}, "unknown genotype 'nyud_hrnet34'; published genotypes: nyud_hrnet18"),
    ({"genotype": "nyud_hrnet18", "context": "global"}, "either 'genotype'"),
    ({"context": "cross"}, "context 'cross' for every task pair is not one of none, global, local"),
    ({"context": 7}, "not one of"),
    ({"context": True}, "not one of"),
    ({"genotype": {"semseg": {"semseg": 1}}}, r"no context for target 'semseg' from source\(s\) \['depth'\]"),
    ({"genotype": ["global"]}, "must be a name or a mapping"),
])
def test_bad_genotypes_are_explained(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resolve(["semseg", "depth"], **kwargs)


def test_unknown_option_and_bad_values():
    bb = create_backbone("resnet18", HW)
    with pytest.raises(ValueError, match=r"unknown cfg key\(s\) \['genotypes'\]"):
        build_atrc(NYUD, bb, {"genotypes": "nyud_hrnet18"})
    with pytest.raises(ValueError, match="normals_centroids must be one of nyud, pascal"):
        build_atrc(NYUD, bb, {"normals_centroids": "kitti"})
    with pytest.raises(ValueError, match="head_channels must be an integer"):
        build_atrc(NYUD, bb, {"head_channels": 1})


def test_registered(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", True)  # don't import the other plugins
    assert registry.METHODS.get("atrc") is build_atrc


# ----------------------------------------------------------------------- initial predictions' losses
def test_depth_bins_by_hand():
    """floor(40 · ln(d / 0.7) / ln(10 / 0.7)): 0.7 m → 0, 10 m → 40 → 39, the geometric middle → 20, 0 → ignore;
    below 0.7 m → 0 and beyond 10 m → 39."""
    mid = 0.7 * (10 / 0.7) ** (20.5 / 40)
    d = torch.tensor([[[0.7, 10.0, mid, 0.0, 0.5, 30.0]]])
    assert depth_bins(d).tolist() == [[[0, 39, 20, 255, 0, 39]]]


def test_depth_bins_loss_is_ce_over_valid_pixels():
    logits = torch.zeros(1, DEPTH_BINS, 1, 3)
    logits[0, 0, 0, 0] = math.log(DEPTH_BINS - 1.0)  # pixel 0: p(bin 0) = (K-1)/(2K-2) = 1/2
    target = torch.tensor([[[0.7, 0.7, 0.0]]])  # bin 0, bin 0, invalid
    expected = (math.log(2) + math.log(DEPTH_BINS)) / 2
    assert aux_losses(["depth"], load_centroids("nyud"))["depth"](logits, target).item() == pytest.approx(expected)


def test_normal_clusters_are_the_nearest_centroid():
    c = load_centroids("nyud")
    assert c.shape == (40, 3) and torch.allclose(c.norm(dim=1), torch.ones(40), atol=1e-6)
    n = torch.stack([c[5], c[17], torch.zeros(3), torch.full((3,), 255.0)], dim=1).view(1, 3, 1, 4)
    assert normal_clusters(n, c).tolist() == [[[5, 17, 255, 255]]]
    assert not torch.equal(load_centroids("pascal"), c)


def test_edge_two_class_loss_equals_the_edge_task_loss_on_the_logit_difference():
    """softmax over (no edge, edge) is sigmoid(l1 − l0), so the class-weighted CE is the edge task's balanced BCE."""
    logits = torch.randn(2, 2, 5, 7)
    target = (torch.rand(2, 5, 7) > 0.7).float()
    target[0, 0] = 255
    ours = edge_two_class_loss(logits, target)
    ref = TASKS.get("edge").loss((logits[:, 1] - logits[:, 0]).unsqueeze(1), target)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_training_objective_uses_the_methods_aux_losses():
    model = _build(NYUD).train()
    out = model(torch.randn(2, 3, *HW))
    tasks = {t: TASKS.get(t) for t in NYUD}
    targets = {"semseg": torch.randint(0, 40, (2, *HW)), "depth": torch.rand(2, *HW) * 5,
               "normals": torch.nn.functional.normalize(torch.randn(2, 3, *HW), dim=1),
               "edge": (torch.rand(2, *HW) > 0.9).float()}
    weights = {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0}
    own = model.aux_losses["initial"]
    expected = sum(weights[t] * tasks[t].loss(out["final"][t], targets[t]) for t in NYUD)
    expected = expected + sum(weights[t] * (own[t] if t in own else tasks[t].loss)(out["aux"]["initial"][t], targets[t])
                              for t in NYUD)
    got = sum(task_losses(out, targets, tasks, weights, model.aux_losses).values())
    assert torch.isfinite(got) and got.item() == pytest.approx(expected.item(), rel=1e-6)


# ------------------------------------------------------------------------------------- local attention
def test_local_attention_matches_a_per_pixel_loop():
    """Each pixel: softmax over its k×k window of q·k/√C, neighbours outside the image counting as similarity 0
    with value 0 (the release's CUDA kernels cc2k / ck2c_ori)."""
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 5, 6), torch.randn(1, 4, 5, 6), torch.randn(1, 3, 5, 6)
    out = local_attention(q, k, v, 3)
    for i in range(5):
        for j in range(6):
            sims, vals = [], []
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    inside = 0 <= i + di < 5 and 0 <= j + dj < 6
                    sims.append(float(q[0, :, i, j] @ k[0, :, i + di, j + dj]) / 2 if inside else 0.0)
                    vals.append(v[0, :, i + di, j + dj] if inside else torch.zeros(3))
            w = torch.tensor(sims).softmax(0)
            assert torch.allclose(out[0, :, i, j], sum(wi * vi for wi, vi in zip(w, vals)), atol=1e-6)


# -------------------------------------------------------------------------------- parameter counts
# brdav/atrc at commit 76d805514aea4fde2be5765edb6ce02091abafe6, run unmodified on CPU (torch 2.14.1):
# src/model/backbones/hrnet.py (hrnetv2p_w18_s / hrnetv2p_w48, pretrained=False) + src/model/heads/
# relationalcontext.py (RelationalContextHead, in_index 0,1,2,3) with genotypes/atrc_*.json, the aux channels of
# src/data/pl_data.py, NYUD semseg 40 classes / PASCAL 21. Single-context heads: the genotype filled with one code
# (builder.py's Global/Local/TLabel/SLabelRelationalContextHead); the local one built with the CPU stand-in for
# its CUDA extension described below (it holds no parameters).
RELEASED_PARAMS = {  # name: (backbone, head)
    "nyud_hrnet18": (3_860_720, 1_200_274),
    "nyud_hrnet48": (65_325_120, 7_153_827),
    "pascal_hrnet18": (3_860_720, 1_522_422),
    "global": (3_860_720, 873_452),
    "local": (3_860_720, 873_452),
    "tlabel": (3_860_720, 1_200_274),
    "slabel": (3_860_720, 1_200_274),
    "none": (3_860_720, 673_328),
}


@pytest.mark.parametrize("name", list(RELEASED_PARAMS))
def test_param_count_equals_release(name):
    backbone, tasks = (("hrnet_w48" if "48" in name else HRNET18), PASCAL if name.startswith("pascal") else NYUD)
    cfg = {"genotype": name} if "_" in name else {"context": name}
    with torch.device("meta"):
        model = build_atrc(tasks, create_backbone(backbone, (448, 576)), cfg)
    n_bb = sum(p.numel() for p in model.backbone.parameters())
    n_head = sum(p.numel() for p in model.head.parameters())
    assert (n_bb, n_head) == RELEASED_PARAMS[name]


# torch's flop counter on the released head (same commit and files, eval mode, batch 1) fed the released HRNet's
# levels: 425×560 → 107×140 … 14×18 (NYUD), 512×512 → 128×128 … 16×16 (PASCAL). Multiply-adds, the counter's
# FLOPs / 2; the bilinear upsampling of the outputs is not counted by it.
RELEASED_HEAD_GMACS = {"nyud_hrnet18": ((107, 140), 17.380063472), "pascal_hrnet18": ((128, 128), 23.325543783),
                       "nyud_hrnet48": ((107, 140), 102.5036802)}


@pytest.mark.parametrize("name", list(RELEASED_HEAD_GMACS))
def test_head_flops_equal_release(name):
    from torch.utils.flop_counter import FlopCounterMode

    (h, w), gmacs = RELEASED_HEAD_GMACS[name]
    tasks, planes = (PASCAL if name.startswith("pascal") else NYUD), ([48, 96, 192, 384] if "48" in name
                                                                      else [18, 36, 72, 144])
    with torch.device("meta"):
        head = ATRCHead(sum(planes), tasks, resolve(list(tasks), name)).eval()
        feats = [torch.empty(1, c, -(-h // 2 ** i), -(-w // 2 ** i)) for i, c in enumerate(planes)]
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            head(feats)
    assert counter.get_total_flops() / 2e9 == pytest.approx(gmacs, rel=1e-9)


# ------------------------------------------------------------------------------------ output parity
# Statistics (mean, mean square, cos-weighted mean; test_method_invpt._stats) of the released head's outputs, from
# brdav/atrc at 76d805514aea4fde2be5765edb6ce02091abafe6, files src/model/heads/{relationalcontext.py, attention.py,
# base.py, utils_heads.py} and genotypes/atrc_nyud_hrnet48.json, run unmodified on CPU (torch 2.14.1) in eval mode:
# RelationalContextHead(tasks=NYUD, in_index=[0,1,2,3], idx_to_planes={0: 8, 1: 12, 2: 16, 3: 28}), weights by
# _fill then aux_logits weights ×30 (peaked class distributions; at _fill's scale t-label ≈ s-label to 1e-4),
# inputs below, inp_shape 64×96, an image without 255s (so spatial_normalize_pred masks nothing).
# The release's local context needs its CUDA extension (ops/locatt_ops, asserts CUDA), which this CPU machine cannot
# build: for "local" the extension's two forward functions were replaced by a CPU loop written from kernels.cuh
# (cc2k and ck2c_ori, double accumulation); the rest is the release's code.
RELEASED = {
    "global": {
        "final": {
            "semseg": [0.0023268003609518456, 0.15648444661679287, 0.0008495059848638021],
            "depth": [0.42929453209702234, 0.18464430961101944, -0.001184092469590105],
            "normals": [0.05230218190889799, 0.1039786825040566, 8.848833186293347e-05],
            "edge": [-0.5680764150141234, 0.32389376303472267, 0.0015872058681424975],
        },
        "aux": {},
    },
    "local": {
        "final": {
            "semseg": [0.0022784762326555352, 0.16038051784191065, 0.000849931712086704],
            "depth": [0.42207722680905135, 0.17873039956204193, -0.0010899579252498328],
            "normals": [0.051538197738712675, 0.10258358047955268, 8.408504095674707e-05],
            "edge": [-0.5584622262807292, 0.3136394846404103, 0.0015556410823984411],
        },
        "aux": {},
    },
    "tlabel": {
        "final": {
            "semseg": [-0.0028037722362488655, 0.13059471678382523, 0.0009324052691142947],
            "depth": [0.13760617570975833, 0.019090417191606538, -0.00037267052494397557],
            "normals": [0.11175903984217762, 0.24496055417209028, 0.0007772878401573512],
            "edge": [-0.4397659179994662, 0.1949489830127261, 0.0011267506059954053],
        },
        "aux": {
            "semseg": [1.0238151424540851, 256.29039215973046, -0.005705212314409341],
            "depth": [-0.16934014246984647, 265.5024919462529, -0.004875351993740753],
            "normals": [-2.0921216972684373, 224.91051248311118, 0.003465362816558601],
            "edge": [-20.844495170516893, 442.0106436241369, -0.058667493130221994],
        },
    },
    "slabel": {
        "final": {
            "semseg": [-0.0028451366426577233, 0.13182300007725556, 0.0009324950551302489],
            "depth": [0.1376808460230071, 0.01911544725136313, -0.0003611753645317739],
            "normals": [0.11235689361496447, 0.24668603345028817, 0.0007862469327072572],
            "edge": [-0.43872929676945205, 0.19407216824945225, 0.0011056801663363745],
        },
        "aux": {
            "semseg": [1.0238151424540851, 256.29039215973046, -0.005705212314409341],
            "depth": [-0.16934014246984647, 265.5024919462529, -0.004875351993740753],
            "normals": [-2.0921216972684373, 224.91051248311118, 0.003465362816558601],
            "edge": [-20.844495170516893, 442.0106436241369, -0.058667493130221994],
        },
    },
    "none": {
        "final": {
            "semseg": [0.0034343770533387403, 0.03294889722327864, -0.00014040704996091182],
            "depth": [0.14173666846606162, 0.022024594231587036, -0.0005626718084296094],
            "normals": [-0.06957692357412447, 0.055897197938460645, -0.0008167701642427597],
            "edge": [-0.010947760271123505, 0.00023114868134191648, -3.9805148258957326e-05],
        },
        "aux": {},
    },
    "nyud_hrnet48": {  # none, global, t-label and s-label pairs in one head
        "final": {
            "semseg": [0.0014604468094342737, 0.005720557221754624, 0.0008633500817362682],
            "depth": [-0.04481074102881877, 0.0027423021659333476, 7.916746870195196e-05],
            "normals": [-0.04469450610034779, 0.003949264137043441, 2.6653679194116337e-05],
            "edge": [0.06153937590636834, 0.004616837334397369, -0.0001575540959497284],
        },
        "aux": {
            "semseg": [0.7035593592640258, 257.1770750017125, 0.005237122628035456],
            "edge": [7.392487361648061, 66.27730117239383, 0.022814138313879007],
        },
    },
}
PLANES = [8, 12, 16, 28]


def _parity_inputs(batch=2):
    feats = []
    for lvl, c in enumerate(PLANES):
        h, w = HW[0] // 4 >> lvl, HW[1] // 4 >> lvl
        n = batch * c * h * w
        feats.append(torch.sin(torch.arange(n, dtype=torch.float64) * 2.39 + lvl).mul(2).view(batch, c, h, w).float())
    return feats


@pytest.mark.parametrize("name", list(RELEASED))
def test_head_matches_released_numbers(name):
    """Every context type (and a mixed published genotype) against the release. The references differ between
    context types by 1e-3 (t-label vs s-label) to 1 (none vs the rest) relative, ≥ 100× the tolerance."""
    cfg = {"genotype": name} if "_" in name else {"context": name}
    head = ATRCHead(sum(PLANES), NYUD, resolve(list(NYUD), **cfg)).eval()
    _fill(head)
    with torch.no_grad():
        for m in head.aux_logits.values():
            m.weight.mul_(30)
        final, initial = head(_parity_inputs())
    for kind, outs in (("final", final), ("aux", initial)):
        assert list(outs) == list(RELEASED[name][kind])
        for t, v in outs.items():
            assert _stats(upsample_to(v, HW)) == pytest.approx(RELEASED[name][kind][t], rel=1e-5, abs=1e-8), (kind, t)


def test_state_dict_names_are_the_released_ones():
    """Names as in the release (so _fill assigns the same values, and released head weights load by name)."""
    head = ATRCHead(sum(PLANES), NYUD, resolve(list(NYUD), "nyud_hrnet48"))
    names = set(head.state_dict())
    assert {"atrc_module.cp_blocks.depth.semseg.query_project.0.conv.weight",
            "atrc_module.cp_blocks.edge.edge.value_project.bn.running_var",
            "atrc_module.out_proj.semseg.bn.weight", "atrc_module.bottleneck.semseg.0.conv.weight",
            "aux_conv.edge.conv.weight", "aux_logits.semseg.bias", "bottleneck.normals.bn.weight",
            "final_logits.depth.weight"} <= names
    assert not any(n.startswith("atrc_module.cp_blocks.semseg.depth.") for n in names)  # none: no block


# -------------------------------------------------------------------------------------- end to end
def test_nyud_fixture_runs_end_to_end(tmp_path):
    from fixtures_real import write_nyud

    from mtbench.cli import main

    root = write_nyud(tmp_path / "data")
    argv = ["--methods", "atrc", "--dataset", "nyud", "--data-dir", str(root), "--tasks", "semseg,depth,normals,edge",
            "--results", str(tmp_path / "res"), "--recipe", "smoke"]
    for o in ["iterations=3", "batch_size=2", "checkpoint_every=100", "num_workers=0", "eval.edge_thresholds=3",
              "eval.edge_workers=1", "methods.atrc.head_channels=8", "methods.single.head_channels=8",
              "datasets.nyud.pad_size=[64,64]"]:
        argv += ["--set", o]
    assert main(argv) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*/record.json")]
    atrc = next(r for r in recs if r["method"] == "atrc")
    assert atrc["status"] == "done" and set(atrc["metrics"]) == set(NYUD)
    assert atrc["config"]["recipe"]["methods"]["atrc"]["head_channels"] == 8
