"""TaskPrompter: output contract, gradient flow, input sizes, refusals, the released parameter counts, and
agreement with the released module's numbers. Small sizes (a 12-block ViT of width 64 at 64×128)."""
from __future__ import annotations

import functools
import math
import os
import re

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import mtbench.registry as registry  # noqa: E402
from methods.taskprompter import build_taskprompter  # noqa: E402
from mtbench.backbones import create_backbone  # noqa: E402
from tests.deterministic_weights import det  # noqa: E402

NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}
PASCAL = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}
HW = (64, 128)
# Both published variants at toy widths: NYUD's (no cross-task reweighting, 4 channel windows; prompt_len 2
# to exercise several prompts per task) and PASCAL's (cross-task reweighting, one channel window).
CASES = {
    "nyud": (NYUD, {"embed_dim": 32, "final_embed_dim": 48, "chan_nheads": 4, "use_ctr": False, "prompt_len": 2}),
    "pascal": (PASCAL, {"embed_dim": 40, "final_embed_dim": 24, "chan_nheads": 1, "use_ctr": True, "prompt_len": 1}),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


def _tiny_vit(hw=HW):
    """vit_b's layout (12 blocks, levels after blocks 3/6/9/12, the release's ViT-B select_list) at width 64."""
    return create_backbone("vit_b", hw, embed_dim=64, depth=12, num_heads=2)


@functools.lru_cache(maxsize=None)
def _model(case: str, keep_unused: bool = False):
    torch.manual_seed(0)
    tasks, cfg = CASES[case]
    return build_taskprompter(tasks, _tiny_vit(), {**cfg, "keep_unused": keep_unused})


def _check(out, task_channels, batch, hw):
    assert set(out) == {"final", "aux"} and out["aux"] == {}  # the release trains without deep supervision
    assert set(out["final"]) == set(task_channels)
    for t, c in task_channels.items():
        assert out["final"][t].shape == (batch, c, *hw), (t, out["final"][t].shape)
        assert torch.isfinite(out["final"][t]).all()


@pytest.mark.parametrize("case", ["nyud", "pascal"])
def test_output_shapes(case):
    with torch.no_grad():
        _check(_model(case).eval()(torch.randn(2, 3, *HW)), CASES[case][0], 2, HW)


def test_smaller_input_is_padded_and_larger_refused():
    """The prompts are built for the backbone's token grid: a 50×70 image equals the zero-padded 64×128 image
    cropped back; a larger one is refused with the reason."""
    model = _model("pascal").eval()
    x = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        small = model(x)["final"]
        padded = model(torch.nn.functional.pad(x, (0, 58, 0, 14)))["final"]
    for t in PASCAL:
        assert small[t].shape[-2:] == (50, 70)
        assert torch.allclose(small[t], padded[t][..., :50, :70], atol=1e-6), t
    with pytest.raises(ValueError, match="larger than the 64x128"):
        model(torch.randn(1, 3, 64, 144))


def _no_grad_params(model):
    model.train().zero_grad(set_to_none=True)
    out = model(torch.randn(2, 3, *HW))
    sum((o ** 2).mean() for o in out["final"].values()).backward()
    return {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}


@pytest.mark.parametrize("case", ["nyud", "pascal"])
def test_every_parameter_trains(case):
    """Default build: the loss reaches every parameter, backbone included (no class token is kept)."""
    assert _no_grad_params(_model(case)) == set()
    assert _model(case).backbone.body.model.cls_token is None


def test_keep_unused_adds_only_the_last_blocks_token_trans1():
    """The release's last block has a token_trans1 whose output (the final prompts) is never read."""
    model = _model("nyud", keep_unused=True)
    assert _no_grad_params(model) == {"chan_prompt.11.token_trans1.weight", "chan_prompt.11.token_trans1.bias"}
    assert model.find_unused_parameters and not _model("nyud").find_unused_parameters


# ------------------------------------------------------------------------------- released parameter counts
# The released TaskPrompterWrapper (prismformore/Multi-Task-Transformer 870c6be, TaskPrompter/, run unmodified on
# CPU, torch 2.14.1 + timm 1.0.31, einops; `tests/data/taskprompter_release/reference.py params`):
# `TaskPrompter(p=p, **taskprompter_vit_*_patch16_384 kwargs, drop_path_rate=0.15, img_size=TRAIN.SCALE)` + a
# `ConvHead` per task, as utils/common_config.get_model builds it, at the three published configs. Its ViT part (no class token, final norm included) / token_trans /
# token_trans1 (of which the last block's is unused) / task decoders / heads:
RELEASED = {  # name: (tasks, backbone, size, cfg, total, ViT part, last token_trans1)
    "nyud_vitLp16": (NYUD, "vit_l", (448, 576), {}, 513_505_709, 304_132_096, 1_033_216),
    "pascal_vitLp16": (PASCAL, "vit_l", (512, 512), {"embed_dim": 300, "final_embed_dim": 350, "chan_nheads": 1,
                                                     "use_ctr": True}, 401_104_864, 304_148_480, 1_049_600),
    "pascal_vitBp16": (PASCAL, "vit_b", (512, 512), {"embed_dim": 780, "final_embed_dim": 1024, "chan_nheads": 16,
                                                     "use_ctr": True}, 418_332_214, 86_433_792, 787_200),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_param_count_released_configs(name):
    tasks, bb_name, size, cfg, total, vit_part, unused = RELEASED[name]
    with torch.device("meta"):
        full = build_taskprompter(tasks, create_backbone(bb_name, size), {**cfg, "keep_unused": True})
        lean = build_taskprompter(tasks, create_backbone(bb_name, size), cfg)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(full) == total
    assert n(full.backbone) + n(full.vit_norm) == vit_part  # timm's ViT without its class token + final norm
    assert n(full) - n(lean) == unused


def test_flops_nyud_vitl():
    """torch's flop counter, batch 1, 448×576. The released module (built on CPU, moved to meta, same counter;
    `tests/data/taskprompter_release/reference.py flops`) counts 839,674,822,656 multiply-adds. It computes all N×N scores and then a channel
    attention product it never reads (T·C·HW per block); here the spatial attention is one fused call plus the
    T prompt rows' raw scores again (T·(T+HW)·C per block): T²·C·24 = 393,216 more. The default build skips the
    last block's token_trans1 and prompt update (37.7 M)."""
    from torch.utils.flop_counter import FlopCounterMode

    macs = {}
    with torch.device("meta"):
        bb = create_backbone("vit_l", (448, 576))
        for keep in (True, False):
            model = build_taskprompter(NYUD, bb, {"keep_unused": keep}).eval()
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(torch.empty(1, 3, 448, 576))
            macs[keep] = counter.get_total_flops() // 2
    assert macs[True] == 839_674_822_656 + 4 ** 2 * 1024 * 24
    assert macs[False] == 839_637_532_672


# ------------------------------------------------------------------------------ agreement with the release
# Statistics (mean, mean square, cos-weighted mean) of the released TaskPrompterWrapper's outputs and of three
# gradients, for the CASES above on a 12-block width-64 ViT (2 heads, patch 16, select_list range(3, 12, 3),
# drop_path 0) at 64×128, batch 2, weights det(release key, shape) from tests/deterministic_weights.py, and the
# input of `_image`; train mode = BatchNorm batch statistics, then backward of sum over tasks of the cos-weighted
# mean. Produced by `tests/data/taskprompter_release/reference.py parity` (its docstring says how it was run):
# the released modules of prismformore/Multi-Task-Transformer 870c6be
# (TaskPrompter/models/transformers/taskprompter.py: TaskPrompter, ConvHead; models/taskprompter_wrapper.py)
# imported unmodified, constructed directly with the kwargs taskprompter_vit_base_patch16_384 passes (timm
# 1.0.31's build_model_with_cfg no longer takes default_cfg; with pretrained=False it only calls the class).
RELEASED_STATS = {
    "nyud": {
        "eval": {
            "semseg": [-0.02221988126, 0.01252335651, 1.653942466e-06],
            "depth": [-0.1692123276, 0.02881632233, -0.0004481613194],
            "normals": [0.03499100468, 0.00526972872, -2.262005197e-05],
            "edge": [0.2625130796, 0.06903571019, 0.0007755868272]},
        "train": {
            "semseg": [-0.02618148723, 0.1210512727, -4.343798516e-05],
            "depth": [-0.04659200788, 0.1654860598, -0.0002811812701],
            "normals": [0.1345309792, 0.09421512707, -0.0004267256035],
            "edge": [0.222947319, 0.1789904589, 0.0009470144142]},
        "grad": {
            "task_prompts": [-5.666578318e-12, 1.079840422e-06, 4.424198859e-06],
            "token_trans0": [3.516141177e-07, 2.110759309e-07, 1.325690319e-07],
            "qkv0": [2.855753671e-07, 9.804106176e-09, 1.504919134e-08]},
    },
    "pascal": {
        "eval": {
            "semseg": [-0.05491925226, 0.01286728959, -3.937659597e-05],
            "human_parts": [0.01318912479, 0.01056638504, 7.866052665e-06],
            "sal": [-0.06228845963, 0.02932240672, -0.0001449773704],
            "normals": [-0.02503789204, 0.01315269359, -4.398741421e-05],
            "edge": [0.2138141341, 0.04571906634, 0.0006171001901]},
        "train": {
            "semseg": [-0.02885106064, 0.1162182482, 0.0001005911658],
            "human_parts": [0.01378563143, 0.1040364575, -4.984685866e-05],
            "sal": [-0.1116805526, 0.1055441673, -0.0006495931836],
            "normals": [-0.00400051848, 0.1012939234, -0.0001005637447],
            "edge": [0.2710188847, 0.1176298792, 0.001978291943]},
        "grad": {
            "task_prompts": [9.504219634e-12, 3.161578374e-06, -7.052176345e-06],
            "token_trans0": [2.23331501e-06, 4.661832413e-07, 1.865826129e-06],
            "qkv0": [3.357693805e-07, 1.720547529e-08, -5.586177424e-09]},
    },
}


def release_key(name: str) -> str:
    """mtbench state-dict name → the released TaskPrompterWrapper's."""
    for pattern, repl in ((r"^backbone\.body\.model\.", "backbone."),
                          (r"^chan_prompt\.(\d+)\.", r"backbone.blocks.\1.attn."),
                          (r"^vit_norm\.", "backbone.norm."),
                          (r"^task_prompts$", "backbone.task_prompts"),
                          (r"^levels\.(\d+)\.(\w+)\.", r"backbone.\2.\1.")):
        if re.match(pattern, name):
            return re.sub(pattern, repl, name)
    return name  # heads.<task>.mt_proj / linear_pred: same names


def _image():
    n = 2 * 3 * HW[0] * HW[1]
    return torch.sin(torch.arange(n, dtype=torch.float64) * 0.731).mul(1.5).view(2, 3, *HW).float()


def _cos_mean(x):
    x = x.double().flatten()
    return (x * torch.cos(torch.arange(x.numel(), dtype=torch.float64) * 0.01)).mean()


def _assert_stats(x, ref, what):
    """Means to 1e-5 of the RMS, the mean square to 1e-5 relative."""
    x = x.double().flatten()
    got = [x.mean().item(), x.pow(2).mean().item(), _cos_mean(x).item()]
    rms = math.sqrt(ref[1])
    assert got[1] == pytest.approx(ref[1], rel=1e-5), (what, got, ref)
    assert got[0] == pytest.approx(ref[0], abs=1e-5 * rms), (what, got, ref)
    assert got[2] == pytest.approx(ref[2], abs=1e-5 * rms), (what, got, ref)


@pytest.mark.parametrize("case", ["nyud", "pascal"])
def test_matches_released_numbers(case):
    tasks, cfg = CASES[case]
    model = build_taskprompter(tasks, _tiny_vit(), {**cfg, "keep_unused": True})
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(det(release_key(k), t.shape))
    ref = RELEASED_STATS[case]
    for mode in ("eval", "train"):
        model.train(mode == "train").zero_grad()
        out = model(_image())["final"]
        for t in tasks:
            _assert_stats(out[t], ref[mode][t], (mode, t))
    sum(_cos_mean(out[t]) for t in tasks).backward()
    vit = model.backbone.body.model
    for name, p in (("task_prompts", model.task_prompts), ("token_trans0", model.chan_prompt[0].token_trans.weight),
                    ("qkv0", vit.blocks[0].attn.qkv.weight)):
        _assert_stats(p.grad, ref["grad"][name], ("grad", name))


# ------------------------------------------------------------------------------------------- configuration
def test_non_vit_backbone_is_refused():
    with pytest.raises(ValueError, match="runs inside a plain ViT.*--backbone vit_l or vit_b"):
        build_taskprompter(NYUD, create_backbone("resnet18", HW), {})


def test_output_norms_are_refused():
    with pytest.raises(ValueError, match="remove out_norms"):
        build_taskprompter(NYUD, create_backbone("vit_b", HW, embed_dim=64, depth=12, num_heads=2, out_norms=True), {})


def test_bad_windows_and_keys_are_explained():
    with pytest.raises(ValueError, match="chan_nheads=9 must be a square"):
        build_taskprompter(NYUD, _tiny_vit(), {"chan_nheads": 9})  # 3 does not divide the 4x8 grid
    with pytest.raises(ValueError, match="chan_nheads=2 must be a square"):
        build_taskprompter(NYUD, _tiny_vit(), {"chan_nheads": 2})
    with pytest.raises(ValueError, match=r"unknown cfg key\(s\) \['use_crt'\].*use_ctr"):
        build_taskprompter(NYUD, _tiny_vit(), {"use_crt": True})
    with pytest.raises(ValueError, match="use_ctr needs prompt_len 1"):
        build_taskprompter(NYUD, _tiny_vit(), {"use_ctr": True, "prompt_len": 2})


@pytest.mark.parametrize("recipe, released", [("taskprompter_nyud", "nyud_vitLp16"),
                                              ("taskprompter_pascal", "pascal_vitLp16")])
def test_recipes_hold_the_released_configs(recipe, released):
    """The recipes pass the recipe check and give the method the released widths (the param test's cfg)."""
    from mtbench.config import load_recipe

    r = load_recipe(recipe)
    cfg = {**{"embed_dim": 768, "final_embed_dim": 768, "chan_nheads": 16, "use_ctr": False}, **RELEASED[released][3]}
    assert r["methods"]["taskprompter"] == {**cfg, "prompt_len": 1}
    assert r["backbone"] == RELEASED[released][1] and r["backbone_cfg"] == {"drop_path_rate": 0.15}
    assert list(next(iter(r["datasets"].values()))["pad_size"]) == list(RELEASED[released][2])


def test_registered(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", True)  # don't import the other plugins
    from methods import taskprompter

    assert registry.METHODS.get("taskprompter") is taskprompter.build_taskprompter is build_taskprompter


# -------------------------------------------------------------------------------------------- end to end
def test_nyud_fixture_runs_end_to_end(tmp_path):
    """bench.py with the smoke_vit recipe on a tiny folder in the real NYUDv2 format: taskprompter and its
    single-task references (same narrow ViT) train, evaluate and write records. Two tasks keep it cheap (the
    edge evaluation and two more reference runs add ~20 s of CPU)."""
    import json

    from fixtures_real import write_nyud

    from mtbench.cli import main

    root = write_nyud(tmp_path / "data")
    argv = ["--methods", "taskprompter", "--dataset", "nyud", "--data-dir", str(root), "--tasks",
            "semseg,normals", "--results", str(tmp_path / "res"), "--recipe", "smoke_vit"]
    for o in ["iterations=2", "batch_size=2", "checkpoint_every=100", "num_workers=0", "eval.edge_thresholds=3",
              "eval.edge_workers=1", "backbone_cfg.embed_dim=32", "methods.taskprompter.embed_dim=16",
              "methods.taskprompter.final_embed_dim=16", "methods.single.head_channels=8",
              "datasets.nyud.pad_size=[64,64]"]:
        argv += ["--set", o]
    assert main(argv) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*/record.json")]
    tp = next(r for r in recs if r["method"] == "taskprompter")
    assert tp["status"] == "done" and set(tp["metrics"]) == {"semseg", "normals"}
    assert tp["config"]["recipe"]["methods"]["taskprompter"]["chan_nheads"] == 4
    assert len(recs) == 3  # + the two single-task references on the same backbone
