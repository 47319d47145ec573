"""MTI-Net and PAD-Net: output contract, gradients, determinism, config errors, and parameter counts
checked against a closed-form count of the released architecture (Multi-Task-Learning-PyTorch)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mtbench import engine
from mtbench.config import RunConfig
from mtbench.layers import upsample_to
from mtbench.registry import BACKBONES, METHODS

NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}
PASCAL = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}
H, W = 64, 96
HRNET18 = "hrnet_w18_small_v2"  # = the release's hrnet_w18 (hrnet_w18_small_model_v2.pth, same config)
AUX_LEVELS = {"mtinet": ["scale_0", "scale_1", "scale_2", "scale_3"], "padnet": ["initial"]}


def build(method, backbone, tasks, cfg=None, seed=0):
    torch.manual_seed(seed)
    bb = BACKBONES.get(backbone)(img_size=(H, W))
    return METHODS.get(method)(dict(tasks), bb, cfg or {})


# ------------------------------------------------------------------------------------------------
# Output contract
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("taskset", ["nyud", "pascal"])
@pytest.mark.parametrize("backbone", [HRNET18, "resnet18"])
@pytest.mark.parametrize("method", ["mtinet", "padnet"])
def test_output_shapes_final_and_deep_supervision(method, backbone, taskset):
    tasks = NYUD if taskset == "nyud" else PASCAL
    model = build(method, backbone, tasks)  # mtinet on resnet18 + PASCAL: 272 M params, not cached
    assert isinstance(model.backbone, nn.Module) and hasattr(model.backbone, "channels")
    model.train()
    for batch in (1, 2):
        with torch.no_grad():
            out = model(torch.randn(batch, 3, H, W))
        assert set(out) == {"final", "aux"}
        assert sorted(out["aux"]) == AUX_LEVELS[method]
        for entry in [out["final"], *out["aux"].values()]:
            assert list(entry) == list(tasks)  # every task of the run, nothing else
            for t, c in tasks.items():
                assert entry[t].shape == (batch, c, H, W), (t, entry[t].shape)
                assert torch.isfinite(entry[t]).all()


def test_mtinet_sizes_not_multiple_of_32():
    """Backbone levels are ceil(H/s): propagated features are resized to the level, not just ×2."""
    model = build("mtinet", HRNET18, {"semseg": 5, "depth": 1}).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 72, 100))
    assert out["final"]["semseg"].shape == (1, 5, 72, 100)
    assert all(v["depth"].shape == (1, 1, 72, 100) for v in out["aux"].values())


def test_resize_to_double_size_equals_release_scale_factor_2():
    x = torch.randn(1, 3, 5, 7)
    assert torch.equal(upsample_to(x, (10, 14)), F.interpolate(x, scale_factor=2, mode="bilinear"))


# ------------------------------------------------------------------------------------------------
# Gradients and determinism
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["mtinet", "padnet"])
def test_loss_reaches_every_parameter(method):
    """No parameter is intentionally unused: final heads, every deep-supervision decoder, FPMs,
    distillation blocks and the whole backbone are all in the graph and get non-zero gradient. Only
    exception allowed: an SE bottleneck of the release's width C//16 (2 units at 36 channels) can start
    with every hidden ReLU off for a given init, which zeroes its first layer's gradient (in the graph)."""
    model = build(method, HRNET18, NYUD).train()
    out = model(torch.randn(2, 3, H, W))
    g = torch.Generator().manual_seed(0)
    loss = sum((v * torch.randn(v.shape, generator=g)).mean()
               for entry in [out["final"], *out["aux"].values()] for v in entry.values())
    loss.backward()
    params = dict(model.named_parameters())
    assert not [n for n, p in params.items() if p.grad is None]
    zero = [n for n, p in params.items() if not p.grad.abs().sum() > 0]
    assert all(".se." in n and ".squeeze." in n for n in zero), zero


@pytest.mark.parametrize("method", ["mtinet", "padnet"])
def test_eval_forward_is_deterministic_and_seeded_builds_agree(method):
    x = torch.randn(2, 3, H, W)
    a = build(method, HRNET18, {"semseg": 5, "normals": 3}, seed=1).eval()
    b = build(method, HRNET18, {"semseg": 5, "normals": 3}, seed=1).eval()
    with torch.no_grad():
        o1, o2, o3 = a(x), a(x), b(x)
    for key in ["final", *AUX_LEVELS[method]]:
        e1, e2, e3 = (o["final"] if key == "final" else o["aux"][key] for o in (o1, o2, o3))
        for t in e1:
            assert torch.equal(e1[t], e2[t]) and torch.equal(e1[t], e3[t]), (key, t)


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["mtinet", "padnet"])
def test_aux_tasks_select_distillation_sources(method):
    model = build(method, HRNET18, NYUD, {"auxilary_tasks": ["depth", "semseg"]})
    assert model.aux_tasks == ["semseg", "depth"]  # run order
    dists = model.distillation if method == "mtinet" else [model.distillation]
    for d in dists:
        assert {t: sorted(m) for t, m in d.attention.items()} == {
            "semseg": ["depth"], "depth": ["semseg"], "normals": ["depth", "semseg"], "edge": ["depth", "semseg"]}
    with torch.no_grad():  # every task still gets initial (deeply supervised) and final predictions
        out = model.eval()(torch.randn(1, 3, H, W))
    assert all(list(v) == list(NYUD) for v in [out["final"], *out["aux"].values()])
    default = build(method, HRNET18, {"semseg": 5, "depth": 1})
    assert default.aux_tasks == ["semseg", "depth"]


@pytest.mark.parametrize("method", ["mtinet", "padnet"])
def test_bad_cfg_is_rejected_with_valid_keys(method):
    bb = BACKBONES.get(HRNET18)(img_size=(H, W))
    with pytest.raises(ValueError, match=r"unknown cfg key.*\['aux_tasks', 'auxilary_tasks'\]"):
        METHODS.get(method)(NYUD, bb, {"aux_task": ["semseg"]})
    with pytest.raises(ValueError, match="not in the run: \\['sal'\\]"):
        METHODS.get(method)(NYUD, bb, {"aux_tasks": ["semseg", "sal"]})
    with pytest.raises(ValueError, match="only one of"):
        METHODS.get(method)(NYUD, bb, {"aux_tasks": ["semseg"], "auxilary_tasks": ["semseg"]})


def test_mtinet_needs_four_levels():
    class ThreeLevels(nn.Module):
        channels, strides, name = [8, 16, 32], [4, 8, 16], "three_levels"

    with pytest.raises(ValueError, match="exactly 4 feature levels.*\\[8, 16, 32\\].*three_levels"):
        METHODS.get("mtinet")(NYUD, ThreeLevels(), {})


# ------------------------------------------------------------------------------------------------
# Parameter counts against the released architecture
# ------------------------------------------------------------------------------------------------
# Closed forms of the release's modules, written from its source: torchvision BasicBlock/Bottleneck
# (models/resnet.py; 1×1 conv + BN shortcut when widths differ), SEBlock (r=16) and SABlock
# (models/layers.py), InitialTaskPredictionModule/FPM/MTINet (models/mti_net.py), PADNet
# (models/padnet.py), HighResolutionHead/HighResolutionFuse (models/seg_hrnet.py; 1×1 convs with bias).
def _conv(ci, co, k, bias=False):
    return ci * co * k * k + (co if bias else 0)


def _basic(ci, co):
    return _conv(ci, co, 3) + _conv(co, co, 3) + 4 * co + (_conv(ci, co, 1) + 2 * co if ci != co else 0)


def _bottleneck(ci, p):
    return (_conv(ci, p, 1) + _conv(p, p, 3) + _conv(p, 4 * p, 1) + 2 * (p + p + 4 * p)
            + (_conv(ci, 4 * p, 1) + 2 * 4 * p if ci != 4 * p else 0))


def _se(c):
    return 2 * c * (c // 16) + c // 16 + c


def _sa(c):
    return 2 * _conv(c, c, 3)


def release_mtinet_decoder(ch, outs):
    n, total = len(outs), 0
    for s in range(4):
        cin = ch[s] + (ch[s + 1] if s < 3 else 0)
        total += sum(_basic(cin, ch[s]) + _basic(ch[s], ch[s]) + _conv(ch[s], o, 1, True) for o in outs.values())
        if s > 0:  # fpm_scale_1..3
            sh = n * ch[s]
            total += (_basic(sh, sh // 4) + _basic(sh // 4, sh // 4) + _conv(sh // 4, sh, 1, True)
                      + _basic(sh, ch[s]) + n * _se(ch[s]))
        total += n * (n - 1) * _sa(ch[s])  # distillation_scale_s
    c = sum(ch)
    return total + sum(_conv(c, c, 1, True) + 2 * c + _conv(c, o, 1, True) for o in outs.values())


def release_padnet_decoder(ch, outs):
    n, c = len(outs), sum(ch)
    total = _conv(c, c, 1, True) + 2 * c + n * (n - 1) * _sa(256)  # HighResolutionFuse, distillation
    for o in outs.values():  # initial prediction + final head per task
        total += _bottleneck(c, 64) + 3 * _bottleneck(256, 64) + 2 * _conv(256, o, 1, True)
    return total


HRNET18_RELEASE_PARAMS = 3_860_720  # release HighResolutionNet from hrnet_w18.yml, counted the same way


@pytest.mark.parametrize("method,tasks,expected", [
    ("mtinet", NYUD, 17_960_945), ("mtinet", PASCAL, 24_494_716),
    ("padnet", NYUD, 19_521_848), ("padnet", PASCAL, 29_305_506),
])
def test_param_count_matches_release(method, tasks, expected):
    """HRNet-18 of the release = timm hrnet_w18_small_v2 raw branches (3,860,720 both: stem, 2
    bottlenecks, stages 1/3/2 modules, 18/36/72/144); decoders equal the closed form of the release
    code. MTI-Net NYUD (4 tasks): 3,860,720 + 14,100,225 = 17,960,945."""
    model = build(method, HRNET18, tasks)
    n_backbone = sum(p.numel() for p in model.backbone.parameters())
    n_decoder = sum(p.numel() for p in model.parameters()) - n_backbone
    release = release_mtinet_decoder if method == "mtinet" else release_padnet_decoder
    assert n_backbone == HRNET18_RELEASE_PARAMS
    assert n_decoder == release([18, 36, 72, 144], tasks)
    assert n_backbone + n_decoder == expected


# ------------------------------------------------------------------------------------------------
# Engine: real task losses on every aux entry, one tiny run each
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["mtinet", "padnet"])
def test_engine_trains_and_evaluates(method, tmp_path, tiny_recipe):
    cfg = RunConfig(method, "synthetic", ("semseg", "depth"), HRNET18, 0, tiny_recipe)
    rec = engine.run(cfg, tmp_path / "runs" / cfg.run_id)
    assert rec["status"] == "done" and set(rec["metrics"]) == {"semseg", "depth"}
