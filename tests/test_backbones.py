"""Backbones: shapes at any input size, parameter counts, checkpoint loading, timm imported lazily.

Fast (tiny inputs; the large models are only built on the meta device). Run with HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import mtbench.backbones as mb  # noqa: E402
import mtbench.registry as registry  # noqa: E402
from deterministic_weights import det  # noqa: E402

SMALL = ["resnet18", "hrnet_w18_small_v2", "swin_t", "vit_b"]
EXPECTED = {  # name: (channels, strides)
    "resnet18": ([64, 128, 256, 512], [4, 8, 16, 32]),
    "resnet50": ([256, 512, 1024, 2048], [4, 8, 16, 32]),
    "hrnet_w18_small_v2": ([18, 36, 72, 144], [4, 8, 16, 32]),
    "hrnet_w48": ([48, 96, 192, 384], [4, 8, 16, 32]),
    "swin_t": ([96, 192, 384, 768], [4, 8, 16, 32]),
    "swin_s": ([96, 192, 384, 768], [4, 8, 16, 32]),
    "swin_b": ([128, 256, 512, 1024], [4, 8, 16, 32]),
    "swin_l": ([192, 384, 768, 1536], [4, 8, 16, 32]),
    "vit_b": ([768] * 4, [16] * 4),
    "vit_l": ([1024] * 4, [16] * 4),
}
# Parameter counts in millions, measured here. The figures in shared/notes/torch-timm-facts.md are for
# the classifier-less networks; they equal the extractors' except for HRNet (see test_hrnet_params).
PARAMS_M = {
    "resnet18": 11.2, "resnet50": 23.5, "swin_l": 195.0, "vit_l": 303.7,  # from the notes
    "swin_t": 27.5, "swin_s": 48.8, "swin_b": 86.7, "vit_b": 86.1,
    "hrnet_w18_small_v2": 3.86, "hrnet_w48": 65.3,  # raw-branch extractors
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny inputs gain nothing from intra-op threads, and on a shared 2-core machine OpenMP's
    spin-waiting made this file 5x slower (80 s vs 15 s) when other jobs were running."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
    _cached.cache_clear()  # don't hold ~1 GB of models for the rest of the session


@pytest.fixture(autouse=True)
def _registry_without_other_plugins(monkeypatch):
    """Look names up without importing every other plugin package (tasks, methods, data), so these
    tests only depend on the backbone module; mtbench.backbones registered itself on import."""
    monkeypatch.setattr(registry, "_loaded", True)


def _build(name, img_size, **kw):
    return registry.BACKBONES.get(name)(img_size, **kw)


@functools.lru_cache(maxsize=None)
def _cached(name, img_size=(64, 96)):
    """Random-init backbones shared by tests that only run them (building ViT-B costs ~1.5 s)."""
    torch.manual_seed(0)
    return registry.BACKBONES.get(name)(img_size).eval()


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", SMALL)
def test_small_backbones_shapes(name):
    bb = _cached(name)
    assert (bb.channels, bb.strides) == EXPECTED[name]
    assert bb.name == name and bb.weights_source == "random init"
    for hw in [(64, 96), (50, 70)]:  # divisible, and odd (ceil) with the same backbone
        for batch in (1, 2):
            with torch.no_grad():
                feats = bb(torch.randn(batch, 3, *hw))
            assert isinstance(feats, list) and len(feats) == len(bb.strides)
            for f, c, s in zip(feats, bb.channels, bb.strides):
                assert f.shape == (batch, c, math.ceil(hw[0] / s), math.ceil(hw[1] / s)), (hw, s, f.shape)
                assert f.is_contiguous() and torch.isfinite(f).all()


@pytest.mark.parametrize("name", ["swin_t", "vit_b"])
def test_built_for_odd_size(name):
    # img_size not a multiple of 32/16: built for the padded size, output at ceil(H/stride)
    bb = _cached(name, (50, 70))
    with torch.no_grad():
        feats = bb(torch.randn(1, 3, 50, 70))
    assert [tuple(f.shape[-2:]) for f in feats] == [(math.ceil(50 / s), math.ceil(70 / s)) for s in bb.strides]


def test_padding_does_not_change_divisible_inputs():
    bb = _cached("hrnet_w18_small_v2")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a = bb(x)
        b = [f.contiguous() for f in bb.body(x)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_gradients_flow():
    bb = _build("resnet18", (32, 32))
    x = torch.randn(2, 3, 40, 36, requires_grad=True)
    sum(f.mean() for f in bb(x)).backward()
    assert x.grad is not None and bb.body.conv1.weight.grad is not None


# ---------------------------------------------------------------------------------------- swin
def test_swin_window_padding_is_masked():
    """timm pads windows after the cyclic shift, so opposite borders attend to each other
    (pytorch-image-models#2438); the wrapper pads first, as the original Swin does."""
    from timm.models.swin_transformer import SwinTransformerBlock

    bb = _cached("swin_t")
    blk = next(m for m in bb.body.modules() if isinstance(m, SwinTransformerBlock) and any(m.shift_size))
    assert blk.window_size == (7, 7) and blk.shift_size == (3, 3)
    assert all(type(m).__name__ == "SwinBlockPadFirst" for m in bb.body.modules() if isinstance(m, SwinTransformerBlock))
    x = torch.randn(1, 12, 12, blk.norm1.normalized_shape[0])  # 12 > 7 and not a multiple of 7
    x2 = x.clone()
    x2[0, 11, 11] += 5.0  # bottom-right token
    timm_attn = types.MethodType(SwinTransformerBlock._attn, blk)
    with torch.no_grad():
        assert torch.equal(blk._attn(x)[0, 0, 0], blk._attn(x2)[0, 0, 0])  # top-left unaffected
        assert not torch.equal(timm_attn(x)[0, 0, 0], timm_attn(x2)[0, 0, 0])  # the bug, for reference
        y = torch.randn(1, 14, 14, x.shape[-1])  # multiple of the window: same as timm
        torch.testing.assert_close(blk._attn(y), timm_attn(y), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------- large / params
@pytest.mark.parametrize("name", ["resnet50", "hrnet_w48", "swin_s", "swin_b", "swin_l", "vit_l",
                                  "resnet18", "hrnet_w18_small_v2", "swin_t", "vit_b"])
def test_channels_strides_params_on_meta(name):
    img = (384, 384) if name.startswith("vit") else (224, 224)  # ViT pos-embed depends on img_size
    with torch.device("meta"):
        bb = _build(name, img)
    assert (bb.channels, bb.strides) == EXPECTED[name]
    d = mb.describe(bb)
    assert d["params"] == _n_params(bb)
    assert d["params"] / 1e6 == pytest.approx(PARAMS_M[name], rel=0.01)
    assert d["weights_source"] == "random init" and d["load_report"] == {}


def test_hrnet_params():
    """The notes' 75.4 M (hrnet_w48) / 13.5 M (w18_small_v2) are the classifier-less nets. The raw-branch
    extractor (feature_location='') also drops the classification-only incre_modules, downsamp_modules
    and final_layer: 65.3 M / 3.86 M."""
    import timm

    for name, full_m, raw_m in [("hrnet_w48", 75.4, 65.3), ("hrnet_w18_small_v2", 13.5, 3.86)]:
        with torch.device("meta"):
            full = timm.create_model(name, pretrained=False, num_classes=0)
            raw = _build(name, (64, 64))
        assert _n_params(full) / 1e6 == pytest.approx(full_m, rel=0.01)
        assert _n_params(raw) / 1e6 == pytest.approx(raw_m, rel=0.01)
        assert not any(k.split(".")[0] in ("incre_modules", "downsamp_modules", "final_layer")
                       for k in raw.body.state_dict())


def test_aliases_and_unknown_name():
    assert registry.BACKBONES.get("swin_large_patch4_window7_224") is registry.BACKBONES.get("swin_l")
    assert registry.BACKBONES.get("vit_base_patch16_384") is registry.BACKBONES.get("vit_b")
    with pytest.raises(registry.UnknownNameError) as err:
        registry.BACKBONES.get("nope")
    assert "resnet18" in str(err.value) and "swin_t" in str(err.value)
    with pytest.raises(ValueError, match="local file"):
        _build("resnet18", (32, 32), pretrained=True)


# ---------------------------------------------------------------------------------------- checkpoints
def test_mmseg_style_checkpoint_round_trip(tmp_path):
    src = _build("resnet18", (32, 32))
    sd = {"backbone." + k: v for k, v in src.body.state_dict().items()}
    sd["decode_head.conv_seg.weight"] = torch.zeros(19, 512, 1, 1)  # rest of a segmentor: ignored
    path = tmp_path / "mmseg.pth"
    torch.save({"meta": {"epoch": 3}, "state_dict": sd}, path)
    bb = _build("resnet18", (32, 32), checkpoint=str(path))
    for k, v in src.body.state_dict().items():
        assert torch.equal(bb.body.state_dict()[k], v), k
    rep = bb.load_report
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["missing_fraction"] == 0
    assert bb.weights_source == str(path.resolve()) == mb.describe(bb)["weights_source"]


def test_full_timm_checkpoint_in_module_container(tmp_path):
    """A published-style checkpoint (full classification model, DDP prefix, 'model' container) for
    Swin built at another size: keys remapped to the extractor (layers.0 -> layers_0), classifier and
    final norm dropped, relative-position tables resized by timm's converter."""
    import timm

    full = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    path = tmp_path / "swin.pth"
    torch.save({"model": {"module." + k: v for k, v in full.state_dict().items()}}, path)
    bb = _build("swin_t", (64, 96), checkpoint=str(path))
    rep = bb.load_report
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["shape_mismatch"] == []
    assert rep["dropped"] == 4  # head.fc.weight/bias, norm.weight/bias
    w = full.state_dict()["layers.2.blocks.3.mlp.fc1.weight"]
    assert torch.equal(bb.body.state_dict()["layers_2.blocks.3.mlp.fc1.weight"], w)


def test_safetensors_and_body_prefix(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    src = _build("hrnet_w18_small_v2", (64, 64))
    path = tmp_path / "hr.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))  # keys 'body.*'
    bb = _build("hrnet_w18_small_v2", (64, 64), checkpoint=str(path))
    assert all(torch.equal(bb.body.state_dict()[k], v) for k, v in src.body.state_dict().items())


def _digest(shapes):
    """sha1 of the sorted 'key:shape' lines: pins a written file's layout to the released model's state dict."""
    return hashlib.sha1("\n".join(sorted(f"{k}:{tuple(s)}" for k, s in shapes)).encode()).hexdigest()


SWIN_SMALL = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))  # timm kwargs of the small config


def _swin_blocks(prefix, window):
    """(stage, block, key prefix, channels, heads) of the small Swin, in a layout's stage naming."""
    for i, (d, h) in enumerate(zip(SWIN_SMALL["depths"], SWIN_SMALL["num_heads"])):
        for j in range(d):
            yield i, j, f"{prefix}.{i}.blocks.{j}.", 32 * 2 ** i, h


def mmseg_swin_keys(window):
    """The keys and shapes of an mmsegmentation/mmcv Swin checkpoint (what the MQTransformer and DeMT releases
    load): ``stages``, ``attn.w_msa``, ``ffn.layers``, ``patch_embed.projection``, unfold-ordered patch merging,
    and one LayerNorm per output (``norm0``..``norm3``)."""
    yield "patch_embed.projection.weight", (32, 3, 4, 4)
    yield "patch_embed.projection.bias", (32,)
    yield "patch_embed.norm.weight", (32,)
    yield "patch_embed.norm.bias", (32,)
    t = (2 * window - 1) ** 2
    for i, j, p, c, h in _swin_blocks("stages", window):
        yield from [(p + "norm1.weight", (c,)), (p + "norm1.bias", (c,)),
                    (p + "attn.w_msa.relative_position_bias_table", (t, h)),
                    (p + "attn.w_msa.relative_position_index", (window ** 2, window ** 2)),
                    (p + "attn.w_msa.qkv.weight", (3 * c, c)), (p + "attn.w_msa.qkv.bias", (3 * c,)),
                    (p + "attn.w_msa.proj.weight", (c, c)), (p + "attn.w_msa.proj.bias", (c,)),
                    (p + "norm2.weight", (c,)), (p + "norm2.bias", (c,)),
                    (p + "ffn.layers.0.0.weight", (4 * c, c)), (p + "ffn.layers.0.0.bias", (4 * c,)),
                    (p + "ffn.layers.1.weight", (c, 4 * c)), (p + "ffn.layers.1.bias", (c,))]
        if i < 3 and j == SWIN_SMALL["depths"][i] - 1:
            yield from [(f"stages.{i}.downsample.norm.weight", (4 * c,)), (f"stages.{i}.downsample.norm.bias", (4 * c,)),
                        (f"stages.{i}.downsample.reduction.weight", (2 * c, 4 * c))]
    for i in range(4):
        yield from [(f"norm{i}.weight", (32 * 2 ** i,)), (f"norm{i}.bias", (32 * 2 ** i,))]


def microsoft_swin_keys(window=7, img=224):
    """The keys and shapes of a Microsoft Swin-Transformer release checkpoint (``model`` container): ``layers``,
    patch merging at the end of a stage, shift masks as buffers, the final ``norm`` and the ``head``."""
    yield from [("patch_embed.proj.weight", (32, 3, 4, 4)), ("patch_embed.proj.bias", (32,)),
                ("patch_embed.norm.weight", (32,)), ("patch_embed.norm.bias", (32,))]
    for i, j, p, c, h in _swin_blocks("layers", window):
        yield from [(p + "norm1.weight", (c,)), (p + "norm1.bias", (c,)),
                    (p + "attn.relative_position_bias_table", ((2 * window - 1) ** 2, h)),
                    (p + "attn.relative_position_index", (window ** 2, window ** 2)),
                    (p + "attn.qkv.weight", (3 * c, c)), (p + "attn.qkv.bias", (3 * c,)),
                    (p + "attn.proj.weight", (c, c)), (p + "attn.proj.bias", (c,)),
                    (p + "norm2.weight", (c,)), (p + "norm2.bias", (c,)),
                    (p + "mlp.fc1.weight", (4 * c, c)), (p + "mlp.fc1.bias", (4 * c,)),
                    (p + "mlp.fc2.weight", (c, 4 * c)), (p + "mlp.fc2.bias", (c,))]
        res = img // 4 // 2 ** i
        if j % 2 and res > window:
            yield p + "attn_mask", ((res // window) ** 2, window ** 2, window ** 2)
        if i < 3 and j == SWIN_SMALL["depths"][i] - 1:
            yield from [(f"layers.{i}.downsample.norm.weight", (4 * c,)), (f"layers.{i}.downsample.norm.bias", (4 * c,)),
                        (f"layers.{i}.downsample.reduction.weight", (2 * c, 4 * c))]
    yield from [("norm.weight", (256,)), ("norm.bias", (256,)), ("head.weight", (1000, 256)), ("head.bias", (1000,))]


def _values(keys):
    """det() for weights; buffers (index tables, shift masks) are written as zeros: every loader rebuilds them."""
    return {k: torch.zeros(s, dtype=torch.long if k.endswith("index") else torch.float32)
            if k.endswith(("relative_position_index", "attn_mask")) else det(k, s) for k, s in keys}


# The released Swin backbones on det() weights (unmodified code, float32, eval), input randn(1, 3, S, S) from
# torch.Generator().manual_seed(0); per output level [sum, sum |.|, out[0, 0, 0, 0], out[0, -1, -1, -1]].
# - "mmseg_w7" / "mmseg_w12": yangyangxu0/MQTransformer eb9e5c4 src/model/backbones/swin.py (mmseg's Swin, as the
#   release loads it: strict) with window 7 at S=448 / window 12 at S=768, det() on its own state-dict keys.
# - "microsoft_w7": microsoft/Swin-Transformer f82860b models/swin_transformer.py (img 224, window 7) with det() on
#   its keys, converted by open-mmlab/mmsegmentation tools/model_converters/swin2mmseg.py convert_swin, loaded into
#   the release's mmseg Swin (norm0..3 stay at LayerNorm init), S=448.
# "digest": _digest of the released model's state dict (what its checkpoint files hold).
RELEASED_SWIN = {
    "mmseg_w7": {"digest": "c7a82da67c0e7da22b5cb3ade65dd3f089dcc814", "size": 448, "out": [
        [-7746.867, 323459.3, 0.04979552, -1.301231], [-4083.611, 161876.8, -0.9895268, 0.2787168],
        [-1064.69, 81190.03, 0.3948086, 1.132463], [-274.2213, 40214.7, 0.0371604, 0.8008257]]},
    "mmseg_w12": {"digest": "9f2a8788a623db06181978fb46dfe04e322d2f1f", "size": 768, "out": [
        [-23047.34, 949967.6, 2.382117, -1.306506], [-11817.38, 475908.4, 1.568828, -0.003963286],
        [-3133.626, 238977.3, 0.4638346, 0.9616712], [-796.1708, 118237.6, -0.08444642, -0.8280019]]},
    "microsoft_w7": {"digest": "49432971d1f583088b58b6a2ffc851b7b727217b", "size": 448, "out": [
        [0.0, 321670.2, -1.448296, 1.635517], [-0.0002441406, 160238.0, 1.123136, -0.8216242],
        [0.0001220703, 80650.39, -1.149295, 0.7798516], [0.0001220703, 39960.83, -1.08626, 0.9060392]]},
}


def _assert_released_outputs(bb, released):
    x = torch.randn(1, 3, released["size"], released["size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = bb.eval()(x)
    for f, (s, a, v0, v1) in zip(feats, released["out"]):
        got = [float(f.sum()), float(f.abs().sum()), float(f[0, 0, 0, 0]), float(f[0, -1, -1, -1])]
        assert got == pytest.approx([s, a, v0, v1], rel=1e-4, abs=2e-4 * a / f.numel() ** 0.5)


@pytest.mark.parametrize("window", [7, 12])
def test_mmseg_swin_checkpoint_equals_the_released_backbone(tmp_path, window):
    """An mmseg UperNet checkpoint as MQTransformer/DeMT load it ('state_dict', 'backbone.' keys, a decode head,
    'meta'): keys renamed, patch merging reordered, norm0..3 into out_norms, window taken from the file."""
    keys = list(mmseg_swin_keys(window))
    name = f"mmseg_w{window}"
    assert _digest(keys) == RELEASED_SWIN[name]["digest"]  # the exact layout of the released model
    sd = {"backbone." + k: v for k, v in _values(keys).items()}
    sd["decode_head.conv_seg.weight"] = torch.zeros(150, 512, 1, 1)
    path = tmp_path / f"upernet_swin_window{window}.pth"
    torch.save({"meta": {"mmseg_version": "0.11.0", "CLASSES": ("wall", "building"), "iter": 160000}, "state_dict": sd}, path)
    size = RELEASED_SWIN[name]["size"]
    bb = _build("swin_t", (size, size), checkpoint=str(path), out_norms=True, **SWIN_SMALL)
    rep = bb.load_report
    assert rep["format"].startswith("mmsegmentation Swin") and rep["missing"] == [] and rep["unexpected"] == []
    assert rep["shape_mismatch"] == [] and rep["resized"] == [] and rep["dropped"] == 1  # the decode head
    assert mb.describe(bb)["window_size"] == {"size": window, "source": "checkpoint"} and mb.describe(bb)["out_norms"]
    _assert_released_outputs(bb, RELEASED_SWIN[name])


def test_microsoft_swin_checkpoint_equals_the_released_backbone(tmp_path):
    keys = list(microsoft_swin_keys())
    assert _digest(keys) == RELEASED_SWIN["microsoft_w7"]["digest"]
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": _values(keys)}, path)
    bb = _build("swin_t", (448, 448), checkpoint=str(path), out_norms=True, **SWIN_SMALL)
    rep = bb.load_report
    assert rep["format"] == "Microsoft Swin" and rep["unexpected"] == [] and rep["shape_mismatch"] == []
    # the Microsoft file has no per-output norms: they keep LayerNorm's init, as in the released backbone
    assert sorted(rep["missing"]) == sorted(f"out_norms.{i}.{w}" for i in range(4) for w in ("weight", "bias"))
    _assert_released_outputs(bb, RELEASED_SWIN["microsoft_w7"])


def test_swin_window_from_the_recipe_resizes_the_tables(tmp_path):
    """A recipe that fixes the window (backbone_cfg window_size) keeps it; the file's tables are resized by
    timm's resize_rel_pos_bias_table and listed in the report."""
    path = tmp_path / "w12.pth"
    torch.save(_values(mmseg_swin_keys(12)), path)
    bb = _build("swin_t", (448, 448), checkpoint=str(path), out_norms=True, window_size=7, **SWIN_SMALL)
    assert mb.describe(bb)["window_size"] == {"size": 7, "source": "recipe"}
    rep = bb.load_report
    assert len(rep["resized"]) == 8 and all("relative_position_bias_table: (529," in r and "-> (169," in r
                                            for r in rep["resized"])
    assert rep["missing"] == [] and rep["shape_mismatch"] == []


def test_mmseg_norms_without_out_norms_are_reported_unexpected(tmp_path):
    path = tmp_path / "mmseg.pth"
    torch.save({"state_dict": {"backbone." + k: v for k, v in _values(mmseg_swin_keys(7)).items()}}, path)
    bb = _build("swin_t", (64, 64), checkpoint=str(path), **SWIN_SMALL)
    assert bb.out_norms is None and len(bb.load_report["unexpected"]) == 8
    assert all("set backbone_cfg out_norms: true" in u for u in bb.load_report["unexpected"])


def test_out_norms_count_and_state_dict_round_trip(tmp_path):
    """Swin-L's four output LayerNorms are the 5,760 parameters between timm's extractor and the released Swin-L
    (2·(192+384+768+1536)); a saved mtbench backbone (body.* + out_norms.*) loads back exactly."""
    with torch.device("meta"):
        plain, normed = _build("swin_l", (224, 224)), _build("swin_l", (224, 224), out_norms=True)
    assert _n_params(normed) - _n_params(plain) == 5_760 and _n_params(normed) == 194_998_164
    src = _build("swin_t", (64, 64), out_norms=True, **SWIN_SMALL)
    for p in src.out_norms.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "mine.pth"
    torch.save({"model": {"backbone." + k: v for k, v in src.state_dict().items()}}, path)
    bb = _build("swin_t", (64, 64), checkpoint=str(path), out_norms=True, **SWIN_SMALL)
    assert all(torch.equal(bb.state_dict()[k], v) for k, v in src.state_dict().items())
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert all(torch.equal(a, b) for a, b in zip(bb.eval()(x), src.eval()(x)))


# The official HRNet-Image-Classification model (HRNet/HRNet-Image-Classification f760c98, lib/models/cls_hrnet.py,
# config experiments/cls_hrnet_w18_small_v2_sgd_lr5e-2_wd1e-4_bs32_x100.yaml): _digest of its state dict without
# num_batches_tracked (826 tensors), i.e. the layout of hrnet_w18_small_model_v2.pth that MTI-Net, PAD-Net and ATRC load.
OFFICIAL_HRNET_W18_SMALL_V2 = "330c6822d54fd9882f8665b9469f9bd78ebf550f"


def test_official_hrnet_checkpoint(tmp_path):
    """HRNet-Image-Classification names (conv1, bn1, layer1, transition1, stage2..4 with fuse_layers, and the
    classification-only incre_modules, downsamp_modules, final_layer, classifier) are timm's names."""
    import timm

    full = timm.create_model("hrnet_w18_small_v2", pretrained=False)
    sd = {k: det(k, v.shape) if v.is_floating_point() else v for k, v in full.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    assert len(sd) == 826 and _digest((k, v.shape) for k, v in sd.items()) == OFFICIAL_HRNET_W18_SMALL_V2
    path = tmp_path / "hrnet_w18_small_model_v2.pth"
    torch.save(sd, path)
    bb = _build("hrnet_w18_small_v2", (64, 64), checkpoint=str(path))
    rep = bb.load_report
    assert rep["format"].startswith("HRNet-Image-Classification")
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["shape_mismatch"] == []
    assert rep["dropped"] == sum(k.startswith(("incre_modules", "downsamp_modules", "final_layer", "classifier")) for k in sd)
    body = bb.body.state_dict()
    for k in ("conv1.weight", "bn2.running_var", "layer1.0.downsample.0.weight", "transition1.1.0.0.weight",
              "stage2.0.fuse_layers.0.1.0.weight", "stage4.1.branches.3.1.conv2.weight"):
        assert torch.equal(body[next(b for b in body if b.endswith(k))], sd[k]), k


def _augreg_keys(d=64, heads=2, depth=2, grid=24):
    """The keys and shapes of a Google augreg ViT .npz (ImageNet-21k → 1k at 384: 24×24 grid + class token)."""
    yield from [("embedding/kernel", (16, 16, 3, d)), ("embedding/bias", (d,)), ("cls", (1, 1, d)),
                ("Transformer/posembed_input/pos_embedding", (1, 1 + grid * grid, d)),
                ("Transformer/encoder_norm/scale", (d,)), ("Transformer/encoder_norm/bias", (d,)),
                ("head/kernel", (d, 1000)), ("head/bias", (1000,))]
    for i in range(depth):
        p = f"Transformer/encoderblock_{i}/"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            yield from [(p + ln + "/scale", (d,)), (p + ln + "/bias", (d,))]
        for n in ("query", "key", "value"):
            yield from [(p + f"MultiHeadDotProductAttention_1/{n}/kernel", (d, heads, d // heads)),
                        (p + f"MultiHeadDotProductAttention_1/{n}/bias", (heads, d // heads))]
        yield from [(p + "MultiHeadDotProductAttention_1/out/kernel", (heads, d // heads, d)),
                    (p + "MultiHeadDotProductAttention_1/out/bias", (d,)),
                    (p + "MlpBlock_3/Dense_0/kernel", (d, 4 * d)), (p + "MlpBlock_3/Dense_0/bias", (4 * d,)),
                    (p + "MlpBlock_3/Dense_1/kernel", (4 * d, d)), (p + "MlpBlock_3/Dense_1/bias", (d,))]


# InvPT's released ViT (prismformore/Multi-Task-Transformer 870c6be, InvPT/models/transformers/vit.py: VisionTransformer
# built for 448×576, load_pretrained → _load_weights → resize_pos_embed; unmodified) on the _augreg_keys() file with
# det() values: [sum, sum |.|, first, last] of the loaded tensors.
RELEASED_VIT = {"pos_embed": [-52.48518, 4458.504, -0.00611243, -0.1712977],
                "cls_token": [1.029265, 4.868388, 0.03702591, 0.07090528],
                "patch_embed.proj.weight": [-1.271117, 353.5499, -0.00597142, -0.01017026],
                "blocks.1.attn.qkv.weight": [3.703154, 621.7718, -0.07055952, -0.08179691],
                "blocks.1.attn.qkv.bias": [-0.2223763, 14.42856, 0.09545357, 0.1564746],
                "blocks.0.attn.proj.weight": [0.3640062, 35.94654, -0.01311181, -0.006136925],
                "blocks.1.mlp.fc2.weight": [9.759665, 809.6182, 0.06841559, 0.1270666]}
VIT_SMALL = dict(depth=2, embed_dim=64, num_heads=2, out_indices=(0, 1))


def _assert_vit_as_released(bb):
    sd = {k[len("model."):]: v for k, v in bb.body.state_dict().items()}
    assert sd["pos_embed"].shape == (1, 1 + 28 * 36, 64)
    for k, (s, a, first, last) in RELEASED_VIT.items():
        t = sd[k]
        assert [float(t.sum()), float(t.abs().sum()), float(t.flatten()[0]), float(t.flatten()[-1])] == pytest.approx(
            [s, a, first, last], rel=1e-5, abs=1e-4), k


def test_vit_npz_checkpoint_as_invpt_loads_it(tmp_path):
    path = tmp_path / "L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_384.npz"
    np.savez(path, **{k: det(k, s).numpy() for k, s in _augreg_keys()})
    bb = _build("vit_b", (448, 576), checkpoint=str(path), **VIT_SMALL)
    rep = bb.load_report
    assert rep["format"].startswith("Google JAX .npz") and rep["missing"] == [] and rep["unexpected"] == []
    assert rep["resized"] == ["pos_embed: (1, 577, 64) -> (1, 1009, 64)"]
    _assert_vit_as_released(bb)
    with torch.no_grad():
        assert [tuple(f.shape) for f in bb(torch.randn(1, 3, 64, 96))] == [(1, 64, 4, 6)] * 2


def test_timm_vit_checkpoint_at_384(tmp_path):
    """timm's ViT weights at 384 (e.g. jx_vit_large_p16_384 .pth / .safetensors: timm key names, 24×24 grid):
    the position embedding is resized as InvPT/TaskPrompter's loader does, F.interpolate(bicubic,
    align_corners=False) on the grid, class token kept (timm's resample_abs_pos_embed, antialias off)."""
    import timm
    import torch.nn.functional as F

    full = timm.create_model("vit_base_patch16_384", pretrained=False, depth=2, embed_dim=64, num_heads=2)
    sd = {k: det(k, v.shape) for k, v in full.state_dict().items()}
    path = tmp_path / "jx_vit_base_p16_384.pth"
    torch.save(sd, path)
    bb = _build("vit_b", (448, 576), checkpoint=str(path), **VIT_SMALL)
    rep = bb.load_report
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["resized"] == ["pos_embed: (1, 577, 64) -> (1, 1009, 64)"]
    pe = sd["pos_embed"]
    grid = F.interpolate(pe[:, 1:].reshape(1, 24, 24, 64).permute(0, 3, 1, 2), size=(28, 36), mode="bicubic",
                         align_corners=False).permute(0, 2, 3, 1).reshape(1, -1, 64)
    torch.testing.assert_close(bb.body.state_dict()["model.pos_embed"], torch.cat([pe[:, :1], grid], 1))
    assert torch.equal(bb.body.state_dict()["model.blocks.1.attn.qkv.weight"], sd["blocks.1.attn.qkv.weight"])


def test_a_file_that_needs_unpickling_is_refused(tmp_path):
    """No full unpickle ever: the message says why and gives the conversion for a trusted file."""
    src = _build("resnet18", (32, 32))
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": src.body.state_dict(), "config": argparse_like()}, path)
    with pytest.raises(mb.UnsafeCheckpointError, match=r"refused.*\(e\.g\. test_backbones\.argparse_like\).*can run code"
                                                      r".*If you trust the file.*weights_only=False"):
        _build("resnet18", (32, 32), checkpoint=str(path))


class argparse_like:  # noqa: N801 - a stand-in for the Namespace / config objects training scripts pickle
    pass


def test_checkpoint_missing_most_keys(tmp_path):
    src = _build("resnet18", (32, 32))
    path = tmp_path / "partial.pth"
    torch.save({"conv1.weight": src.body.conv1.weight, "something.else": torch.zeros(3)}, path)
    with pytest.raises(mb.CheckpointMismatchError, match=r"uninitialised[\s\S]*missing, e\.g\.: .*layer[\s\S]*Fix"):
        _build("resnet18", (32, 32), checkpoint=str(path))


def test_checkpoint_missing_a_few_keys_is_reported(tmp_path, caplog):
    src = _build("resnet18", (32, 32))
    sd = src.body.state_dict()
    del sd["layer4.1.bn2.weight"]
    sd["extra.weight"] = torch.zeros(2)
    path = tmp_path / "almost.pt"
    torch.save(sd, path)
    with caplog.at_level(logging.WARNING, logger="mtbench.backbones"):
        bb = _build("resnet18", (32, 32), checkpoint=str(path))
    assert bb.load_report["missing"] == ["layer4.1.bn2.weight"]
    assert bb.load_report["unexpected"] == ["extra.weight"]
    assert 0 < bb.load_report["missing_fraction"] < 0.001
    assert "layer4.1.bn2.weight" in caplog.text


def test_checkpoint_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="local"):
        _build("resnet18", (32, 32), checkpoint=str(tmp_path / "resnet18.pth"))


# ---------------------------------------------------------------------------------------- imports
def test_importing_backbones_does_not_import_timm():
    # registering backbones is cheap: timm (3 s) is imported on the first build only
    code = "import sys, mtbench.backbones; print('timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
