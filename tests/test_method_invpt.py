"""InvPT: output contract, gradient flow, determinism, padding, the paper's parameter count, and agreement
with the released decoder's numbers. Small inputs (64×128, resnet18 / a 4-block ViT); run with HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import functools
import os

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import mtbench.registry as registry  # noqa: E402
from methods.invpt import UNUSED_PREFIXES, InvPTDecoder, build_invpt, skip_plan  # noqa: E402
from mtbench.backbones import create_backbone  # noqa: E402

NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}
PASCAL = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}
SMALL = {"embed_dim": 32, "pred_dim": 32}  # stage dims 64 / 32 / 16 instead of 576 / 288 / 144
HW = (64, 128)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


def _resnet18(hw=HW):
    bb = create_backbone("resnet18", hw)
    # timm zero-inits each residual block's last BN, which zeroes the gradient of the block's other
    # layers at init; give them a gradient so the test below can demand one everywhere.
    for m in bb.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
    return bb


def _tiny_vit(hw=HW):
    """A 4-block ViT (64 channels) with the vit_l level layout: 4 levels, all at stride 16."""
    return create_backbone("vit_b", hw, embed_dim=64, depth=4, num_heads=2, out_indices=(0, 1, 2, 3))


@functools.lru_cache(maxsize=None)
def _model(tasks: str, backbone: str = "resnet18", keep_unused: bool = False):
    torch.manual_seed(0)
    bb = _resnet18() if backbone == "resnet18" else _tiny_vit()
    return build_invpt(NYUD if tasks == "nyud" else PASCAL, bb, {**SMALL, "keep_unused": keep_unused})


def _check_outputs(out, task_channels, batch, hw):
    assert set(out) == {"final", "aux"} and set(out["aux"]) == {"inter"}
    for group in (out["final"], out["aux"]["inter"]):
        assert set(group) == set(task_channels)
        for t, c in task_channels.items():
            assert group[t].shape == (batch, c, *hw), (t, group[t].shape)
            assert torch.isfinite(group[t]).all()


@pytest.mark.parametrize("tasks", ["nyud", "pascal"])
@pytest.mark.parametrize("batch", [1, 2])
def test_output_shapes(tasks, batch):
    model = _model(tasks).train()  # batch 1 in train mode: BN still has > 1 value per channel
    with torch.no_grad():
        out = model(torch.randn(batch, 3, *HW))
    _check_outputs(out, NYUD if tasks == "nyud" else PASCAL, batch, HW)


def test_vit_backbone_shapes_and_plan():
    model = _model("nyud", "vit").eval()
    assert model.decoder.vit_norm is not None  # the release's final ViT LayerNorm on the decoder input
    assert (model.decoder.input_level, model.decoder.skip_levels) == (3, [2, 1, 0])
    with torch.no_grad():
        _check_outputs(model(torch.randn(2, 3, *HW)), NYUD, 2, HW)


def test_skip_plan():
    assert skip_plan([16] * 4) == (3, [2, 1, 0])  # ViT: the release's index mapping (blocks 18, 12, 6)
    assert skip_plan([4, 8, 16, 32]) == (3, [3, 2, 1])  # CNN/Swin: the level of each stage's own stride
    with pytest.raises(ValueError, match="4 feature levels"):
        skip_plan([16] * 3)


def test_any_input_size_is_padded_to_64():
    """A 50×70 input gives 50×70 outputs, equal to running the zero-padded 64×128 image and cropping."""
    model = _model("nyud").eval()
    x = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        out = model(x)
        padded = model(F.pad(x, (0, 58, 0, 14)))
    _check_outputs(out, NYUD, 1, (50, 70))
    for kind in ("final", "inter"):
        a = out["final"] if kind == "final" else out["aux"]["inter"]
        b = padded["final"] if kind == "final" else padded["aux"]["inter"]
        for t in NYUD:
            assert torch.allclose(a[t], b[t][..., :50, :70], atol=1e-5), (kind, t)


def _grad_check(model, keep_unused):
    model.train().zero_grad(set_to_none=True)
    out = model(torch.randn(2, 3, *HW))
    loss = sum((o.float() ** 2).mean() for group in (out["final"], *out["aux"].values()) for o in group.values())
    loss.backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    unused = {n for n, _ in model.named_parameters() if n.startswith(UNUSED_PREFIXES)}
    assert bool(unused) == keep_unused
    assert no_grad == unused, sorted(no_grad ^ unused)[:10]


@pytest.mark.parametrize("backbone", ["resnet18", "vit"])
def test_every_parameter_trains(backbone):
    """Default build: the loss reaches every parameter (backbone included); nothing is built unused."""
    _grad_check(_model("pascal", backbone), keep_unused=False)


def test_parity_modules_never_get_gradients():
    """keep_unused=True adds exactly the four release modules whose output is discarded or never made."""
    model = _model("nyud", "vit", keep_unused=True)
    _grad_check(model, keep_unused=True)
    names = [n for n, _ in model.named_parameters()]
    assert all(any(n.startswith(prefix) for n in names) for prefix in UNUSED_PREFIXES)


def test_deterministic_eval():
    model = _model("pascal").eval()
    x = torch.randn(2, 3, *HW)
    with torch.no_grad():
        a, b = model(x), model(x)
    for kind in ("final", "aux"):
        ga = a[kind] if kind == "final" else a[kind]["inter"]
        gb = b[kind] if kind == "final" else b[kind]["inter"]
        for t in ga:
            assert torch.equal(ga[t], gb[t]), (kind, t)


# Released figures (shared/notes/reference-models.md): ViT-L 304,133,120 (incl. its final LayerNorm, which
# timm's feature extractor drops and the decoder here holds), decoder + heads 97,959,768, 6,639,562 unused.
RELEASED_TOTAL, RELEASED_UNUSED = 402_092_888, 6_639_562


def test_param_count_paper_config():
    """ViT-L/16, NYUD tasks, 448×576, built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        bb = create_backbone("vit_l", (448, 576))
        full = build_invpt(NYUD, bb, {"keep_unused": True})
        lean = build_invpt(NYUD, bb, {})
    n_bb = sum(p.numel() for p in bb.parameters())
    n_full = sum(p.numel() for p in full.parameters())
    n_lean = sum(p.numel() for p in lean.parameters())
    assert abs(n_full - RELEASED_TOTAL) / RELEASED_TOTAL < 0.02
    assert n_full - n_bb == RELEASED_TOTAL - 304_133_120 + 2048  # decoder exact (+ ViT's final LayerNorm)
    assert n_full - n_lean == RELEASED_UNUSED
    assert n_lean == n_full - RELEASED_UNUSED  # 395,453,326 with this timm ViT-L


def test_flops_paper_config():
    """torch's flop counter on the meta device: the release measures 601.9 G multiply-adds at 448×576; the
    parity build runs the discarded skip conv too, the default build saves its 5.35 G."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        bb = create_backbone("vit_l", (448, 576))
        macs = {}
        for keep in (True, False):
            model = build_invpt(NYUD, bb, {"keep_unused": keep}).eval()
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(torch.empty(1, 3, 448, 576))
            macs[keep] = counter.get_total_flops() / 2e9
    assert macs[True] == pytest.approx(601.9, abs=0.1)
    assert macs[True] - macs[False] == pytest.approx(5.35, abs=0.01)


# ------------------------------------------------------------------------- agreement with the release
# Statistics (mean, mean square, cos-weighted mean) of the released TransformerDecoder's outputs
# (prismformore/Multi-Task-Transformer code/models/transformers at 7e0f149, run unmodified on CPU with einops) with
# the weights and inputs below, loaded through a name mapping; embed_dim 32, PRED_OUT_NUM_CONSTANT 32,
# 4 ViT levels of 48 channels at 128×192, eval mode. The final-LayerNorm'd last level was fed to it.
RELEASED = {  # task: (final features at 1/4, intermediate logits at 1/32)
    "semseg": ([0.15515806, 0.097222102, -0.00019057541], [-0.015425011, 0.10452727, 0.005658504]),
    "depth": ([0.14569723, 0.09724567, 0.00024355762], [-0.43208693, 0.18688081, -0.41617147]),
    "normals": ([0.1380131, 0.096866163, 0.00025904941], [-0.23853755, 0.066928633, -0.17703152]),
    "edge": ([0.13739433, 0.078568845, 0.00030198187], [0.50194991, 0.2521321, 0.4835666]),
}


def _fill(module):
    """RNG-free weights scaled like PyTorch's default init (uniform ±1/sqrt(fan_in))."""
    with torch.no_grad():
        for i, (name, t) in enumerate(sorted(module.state_dict().items())):
            if not t.is_floating_point():
                continue
            v = torch.sin(torch.arange(t.numel(), dtype=torch.float64) * 1.37 + i)
            if t.dim() > 1:
                v = v * (3 * t.shape[0] / t.numel()) ** 0.5
            elif name.endswith(("running_var", "weight")):
                v = 1 + 0.2 * v
            else:
                v = 0.1 * v
            t.copy_(v.view(t.shape).to(t.dtype))


def _stats(x):
    x = x.double().flatten()
    w = torch.cos(torch.arange(x.numel(), dtype=torch.float64) * 0.01)
    return [x.mean().item(), x.pow(2).mean().item(), (x * w).mean().item()]


def test_decoder_matches_released_numbers():
    """Catches any change in the decoder's math (message passing, scale, norms, fusion) against the release:
    dropping the attention messages moves these statistics by ~1%, a per-head attention scale by ~3e-5."""
    C, H, W = 48, 128, 192
    dec = InvPTDecoder(NYUD, [C] * 4, [16] * 4, 32, 32, 2, 4.0, keep_unused=True).eval()
    _fill(dec)
    n = 2 * C * (H // 16) * (W // 16)
    feats = [torch.sin(torch.arange(n, dtype=torch.float64) * 2.39 + lvl).mul(2).view(2, C, H // 16, W // 16).float()
             for lvl in range(4)]
    with torch.no_grad():
        out, inter = dec(feats, (H // 32, W // 32))
    for t, (ref_final, ref_inter) in RELEASED.items():
        assert _stats(out[t]) == pytest.approx(ref_final, rel=1e-5, abs=1e-8), t
        assert _stats(inter[t]) == pytest.approx(ref_inter, rel=1e-5, abs=1e-8), t


# ------------------------------------------------------------------------------------ configuration
def test_unknown_cfg_key_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown cfg key\(s\) \['embed_dims'\].*embed_dim.*keep_unused"):
        build_invpt(NYUD, _resnet18(), {"embed_dims": 64})


def test_bad_dims_are_explained():
    with pytest.raises(ValueError, match="divisible by 4 \\* num_heads"):
        build_invpt(NYUD, _resnet18(), {"embed_dim": 30, "pred_dim": 0})


def test_registered(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", True)  # don't import the other (in-progress) plugins
    assert registry.METHODS.get("invpt") is build_invpt
