"""Backbones: shapes at any input size, parameter counts, checkpoint loading, timm imported lazily.

Fast (tiny inputs; the large models are only built on the meta device). Run with HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import functools
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


def test_hrnet_classification_checkpoint(tmp_path):
    """The HRNet-Image-Classification release (what MTI-Net/ATRC start from) is a plain state dict of the
    whole classifier: conv1/stage*/transition* plus incre_modules, downsamp_modules, final_layer and
    classifier. The raw-branch extractor takes the former; the classification-only modules are dropped."""
    import timm

    full = timm.create_model("hrnet_w18_small_v2", pretrained=False)
    path = tmp_path / "hrnet_w18_small_model_v2.pth"
    torch.save(full.state_dict(), path)
    bb = _build("hrnet_w18_small_v2", (64, 64), checkpoint=str(path))
    rep = bb.load_report
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["shape_mismatch"] == []
    assert rep["dropped"] > 0 and any(k.startswith(("incre_modules", "classifier", "final_layer"))
                                      for k in rep["dropped_examples"])
    w = full.state_dict()["stage3.0.branches.2.0.conv1.weight"]
    body = bb.body.state_dict()
    key = next(k for k in body if k.endswith("stage3.0.branches.2.0.conv1.weight"))
    assert torch.equal(body[key], w)


def test_safetensors_and_body_prefix(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    src = _build("hrnet_w18_small_v2", (64, 64))
    path = tmp_path / "hr.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))  # keys 'body.*'
    bb = _build("hrnet_w18_small_v2", (64, 64), checkpoint=str(path))
    assert all(torch.equal(bb.body.state_dict()[k], v) for k, v in src.body.state_dict().items())


def _to_npz(vit, path):
    """Write a timm ViT in the Google JAX (.npz) layout that timm's _load_weights reads."""
    d, nh = vit.embed_dim, vit.blocks[0].attn.num_heads
    w = {"embedding/kernel": vit.patch_embed.proj.weight.permute(2, 3, 1, 0),
         "embedding/bias": vit.patch_embed.proj.bias, "cls": vit.cls_token,
         "Transformer/posembed_input/pos_embedding": vit.pos_embed,
         "Transformer/encoder_norm/scale": vit.norm.weight, "Transformer/encoder_norm/bias": vit.norm.bias}
    for i, blk in enumerate(vit.blocks):
        p = f"Transformer/encoderblock_{i}/"
        w[p + "LayerNorm_0/scale"], w[p + "LayerNorm_0/bias"] = blk.norm1.weight, blk.norm1.bias
        w[p + "LayerNorm_2/scale"], w[p + "LayerNorm_2/bias"] = blk.norm2.weight, blk.norm2.bias
        for j, n in enumerate(("query", "key", "value")):
            w[p + f"MultiHeadDotProductAttention_1/{n}/kernel"] = blk.attn.qkv.weight[j * d:(j + 1) * d].T.reshape(d, nh, -1)
            w[p + f"MultiHeadDotProductAttention_1/{n}/bias"] = blk.attn.qkv.bias[j * d:(j + 1) * d].reshape(nh, -1)
        w[p + "MultiHeadDotProductAttention_1/out/kernel"] = blk.attn.proj.weight.reshape(d, nh, -1).permute(1, 2, 0)
        w[p + "MultiHeadDotProductAttention_1/out/bias"] = blk.attn.proj.bias
        for r, fc in enumerate((blk.mlp.fc1, blk.mlp.fc2)):
            w[p + f"MlpBlock_3/Dense_{r}/kernel"], w[p + f"MlpBlock_3/Dense_{r}/bias"] = fc.weight.T, fc.bias
    np.savez(path, **{k: v.detach().numpy() for k, v in w.items()})


def test_vit_npz_checkpoint(tmp_path):
    import timm

    small = dict(depth=2, out_indices=(0, 1))  # a 2-block vit_b keeps this fast
    full = timm.create_model("vit_base_patch16_384", pretrained=False, depth=2)  # 384: 24x24 pos-embed
    path = tmp_path / "vit.npz"
    _to_npz(full, str(path))
    bb = _build("vit_b", (64, 96), checkpoint=str(path), **small)
    rep = bb.load_report
    assert rep["missing"] == [] and rep["unexpected"] == []
    got = bb.body.state_dict()
    for k in ("blocks.1.attn.qkv.weight", "blocks.1.attn.proj.weight", "blocks.0.mlp.fc2.weight", "patch_embed.proj.weight"):
        torch.testing.assert_close(got["model." + k], full.state_dict()[k])
    assert got["model.pos_embed"].shape == (1, 1 + 4 * 6, 768)  # resampled to the 64x96 grid
    with torch.no_grad():
        assert [tuple(f.shape) for f in bb(torch.randn(1, 3, 64, 96))] == [(1, 768, 4, 6)] * 2


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
