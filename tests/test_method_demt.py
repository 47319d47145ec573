"""DeMT (``demt``): the deformable operator against a hand-written bilinear reference, the model contract, the
released attentions' batch semantics, parameter counts at the published configurations, agreement with the
released head's numbers, and the flop formula for torchvision's op. Small inputs; HF_HUB_OFFLINE=1."""
from __future__ import annotations

import itertools
import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import mtbench.registry as registry  # noqa: E402
from methods._demt_deform import ChannelDeformConv, OffsetNet, kernel_positions  # noqa: E402
from methods.demt import DEFAULTS, DeMTHead, build_demt, resolve_cfg  # noqa: E402
from mtbench.backbones import create_backbone  # noqa: E402
from test_method_invpt import _fill, _stats  # noqa: E402  (the RNG-free weights the release ran with)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread

NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}
PASCAL = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}
HW = (30, 46)  # not multiples of 4 or 32
SMALL = {"embed_dim": 32}


# ------------------------------------------------------------------ the deformable convolution, by definition
def bilinear(img: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of a zero-padded (H, W) map at (y, x): Σ over pixels of
    max(0, 1-|y-Y|)·max(0, 1-|x-X|)·img[Y, X]. Differentiable in img, y and x."""
    rows = torch.arange(img.shape[0], dtype=img.dtype)
    cols = torch.arange(img.shape[1], dtype=img.dtype)
    wy = (1 - (y - rows).abs()).clamp(min=0)
    wx = (1 - (x - cols).abs()).clamp(min=0)
    return (wy[:, None] * wx[None, :] * img).sum()


def deform_conv_reference(x, offset, weight, bias, stride=1, padding=0, dilation=1):
    """out[n, o, i, j] = bias[o] + Σ_{c, ki, kj} W[o, c, ki, kj] · x[n, c] sampled at
    (i·s − p + ki·d + Δy, j·s − p + kj·d + Δx), where (Δy, Δx) = offset[n, 2(g·K + k)], offset[n, 2(g·K + k) + 1],
    k = ki·kw + kj, K = kh·kw, g = the offset group of channel c (channels split evenly into groups)."""
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    h_out = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    w_out = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    groups = offset.shape[1] // (2 * kh * kw)
    per_group = c_in // groups
    out = []
    for b, i, j in itertools.product(range(n), range(h_out), range(w_out)):
        cols = torch.zeros(c_in, kh, kw, dtype=x.dtype)
        samples = []
        for c, ki, kj in itertools.product(range(c_in), range(kh), range(kw)):
            k = (c // per_group) * kh * kw + ki * kw + kj
            y = i * stride - padding + ki * dilation + offset[b, 2 * k, i, j]
            xx = j * stride - padding + kj * dilation + offset[b, 2 * k + 1, i, j]
            samples.append(bilinear(x[b, c], y, xx))
        cols = torch.stack(samples).view(c_in, kh, kw)
        out.append((weight * cols).sum(dim=(1, 2, 3)) + (bias if bias is not None else 0))
    return torch.stack(out).view(n, h_out, w_out, c_out).permute(0, 3, 1, 2)


def _case(c_in, c_out, k, groups, h=5, w=6, n=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g, dtype=dtype)
    offset = torch.rand(n, 2 * groups * k * k, h, w, generator=g, dtype=dtype) * 8 - 4  # many fall off the map
    offset[:, :, 0, 0] = torch.tensor([-1.0, 0.5, 2.0, -3.0] * groups * k * k, dtype=dtype)[: offset.shape[1]]  # edges
    weight = torch.randn(c_out, c_in, k, k, generator=g, dtype=dtype)
    bias = torch.randn(c_out, generator=g, dtype=dtype)
    return x, offset, weight, bias


@pytest.mark.parametrize("c_in, c_out, k, groups, stride, padding, dilation", [
    (4, 4, 1, 4, 1, 0, 1),   # DeMT's: 1×1 kernel, one offset group per channel
    (4, 3, 3, 2, 1, 1, 1),   # general: 3×3, 2 offset groups, padding
    (2, 3, 3, 1, 2, 2, 2),   # stride and dilation
])
def test_deform_conv2d_equals_the_bilinear_definition(c_in, c_out, k, groups, stride, padding, dilation):
    from torchvision.ops import deform_conv2d

    x, offset, weight, bias = _case(c_in, c_out, k, groups)
    h_out = (x.shape[2] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    w_out = (x.shape[3] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    offset = offset[:, :, :h_out, :w_out].contiguous()
    ours = deform_conv2d(x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation)
    ref = deform_conv_reference(x, offset, weight, bias, stride, padding, dilation)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-12, rtol=1e-10)


def test_deform_conv2d_gradients_equal_the_reference():
    """Input, offset and weight gradients of the DeMT configuration (offsets away from integer grid lines,
    where the bilinear hat is not differentiable)."""
    from torchvision.ops import deform_conv2d

    x, offset, weight, bias = _case(3, 3, 1, 3, h=4, w=5, n=1, seed=1)
    offset = (offset.floor() + 0.25 + 0.5 * torch.rand_like(offset)).requires_grad_()
    x.requires_grad_()
    weight.requires_grad_()
    probe = torch.randn(1, 3, 4, 5, dtype=x.dtype)
    grads = []
    for fn in (lambda: deform_conv2d(x, offset, weight, bias), lambda: deform_conv_reference(x, offset, weight, bias)):
        (fn() * probe).sum().backward()
        grads.append([t.grad.clone() for t in (x, offset, weight)])
        for t in (x, offset, weight):
            t.grad = None
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-8)


def test_channel_deform_conv_samples_each_channel_at_its_own_offset():
    """With an identity 1×1 weight, output channel c is input channel c bilinearly sampled at its own
    (Δy, Δx) = offset channels (2c, 2c+1), the offsets being what OffsetNet predicts."""
    torch.manual_seed(0)
    conv = ChannelDeformConv(3).double()
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3, dtype=torch.float64).view(3, 3, 1, 1))
        conv.bias.zero_()
        conv.get_offset.opt.weight.mul_(0.05)  # offsets of a few pixels, so most samples land on the map
    x = torch.randn(1, 3, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        out, off = conv(x), conv.get_offset(x)
    assert off.shape == (1, 6, 5, 7)
    for c, i, j in itertools.product(range(3), range(5), range(7)):
        expected = bilinear(x[0, c], i + off[0, 2 * c, i, j], j + off[0, 2 * c + 1, i, j])
        assert out[0, c, i, j].item() == pytest.approx(expected.item(), abs=1e-10)


def test_kernel_positions_are_one_based_rows_and_columns_plus_the_3x3_grid():
    p = kernel_positions(4, 5)
    assert p.shape == (1, 18, 4, 5)
    for k, i, j in itertools.product(range(9), range(4), range(5)):
        assert p[0, k, i, j] == i + 1 + (k // 3 - 1)  # rows: -1,-1,-1,0,0,0,1,1,1 around the 1-based row
        assert p[0, 9 + k, i, j] == j + 1 + (k % 3 - 1)  # cols: -1,0,1,-1,0,1,-1,0,1


def test_offsets_are_computed_in_float32_under_autocast():
    torch.manual_seed(0)
    net = OffsetNet(8)
    x = torch.randn(1, 8, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        off = net(x)
    assert off.dtype == torch.float32
    assert torch.equal(off, net(x))


# -------------------------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    bb = create_backbone("resnet18", HW)
    for m in bb.modules():  # timm zero-inits each block's last BN; give every layer a gradient
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
    return bb


def build(backbone, channels=NYUD, **cfg):
    torch.manual_seed(0)
    return build_demt(channels, backbone, {**SMALL, **cfg})


@pytest.mark.parametrize("channels", [NYUD, PASCAL], ids=["nyud", "pascal"])
@pytest.mark.parametrize("images", [1, None])
def test_output_shapes_batch_1_and_2(resnet, channels, images):
    model = build(resnet, channels, batch_attn_images=images).eval()
    assert model.backbone is resnet
    for batch in (1, 2):
        with torch.no_grad():
            out = model(torch.randn(batch, 3, *HW))
        assert out["aux"] == {}
        assert {t: tuple(v.shape) for t, v in out["final"].items()} == {t: (batch, c, *HW) for t, c in channels.items()}
        assert all(torch.isfinite(v).all() for v in out["final"].values())


def test_every_parameter_trains_but_the_interaction_query_key_at_one_image_per_group(resnet):
    """One image per attention group (the released per-GPU batch): the task-interaction attention sees one
    key, its softmax is 1, so its query/key projections get exactly zero gradient; all else gets one."""
    for images in (1, None):
        model = build(resnet, PASCAL, batch_attn_images=images).train()
        model.zero_grad(set_to_none=True)
        out = model(torch.randn(2, 3, *HW))
        sum(o.pow(2).mean() + o.mean() for o in out["final"].values()).backward()
        dim = SMALL["embed_dim"]
        w, b = model.head.task_fusion.in_proj_weight.grad, model.head.task_fusion.in_proj_bias.grad
        assert (torch.count_nonzero(w[: 2 * dim]) + torch.count_nonzero(b[: 2 * dim]) == 0) == (images == 1)
        zero = set()
        for n, p in model.named_parameters():
            g = p.grad[2 * dim:] if p.grad is not None and n.startswith("head.task_fusion.in_proj") else p.grad
            if g is None or not g.abs().sum() > 0:
                zero.add(n)
        assert zero == set(), images


def test_attention_groups_follow_the_released_batch_semantics(resnet):
    x = torch.randn(4, 3, *HW)
    with torch.no_grad():
        one = build(resnet, batch_attn_images=1).eval()
        alone = [one(x[i:i + 1])["final"] for i in range(4)]
        together = one(x)["final"]
        whole = build(resnet, batch_attn_images=None).eval()
        pairs = [whole(x[i:i + 2])["final"] for i in (0, 2)]
        three = whole(x[:3])["final"]
        grouped = build(resnet, batch_attn_images=2).eval()
        by_two, by_two_3 = grouped(x)["final"], grouped(x[:3])["final"]
        full = whole(x)["final"]
    for t in NYUD:
        # one image per group: an image's prediction does not depend on its batch-mates
        assert torch.allclose(torch.cat([a[t] for a in alone]), together[t], atol=1e-5)
        # groups of 2 = the released code run on each pair; 3 images = a pair and a single
        assert torch.allclose(torch.cat([p[t] for p in pairs]), by_two[t], atol=1e-5)
        assert torch.allclose(torch.cat([pairs[0][t], alone[2][t]]), by_two_3[t], atol=1e-5)
        # the whole batch (released code on one device): images see each other
        assert not torch.allclose(full[t][:2], pairs[0][t], atol=1e-3)
        assert not torch.allclose(three[t][:1], alone[0][t], atol=1e-3)


def test_eval_forward_is_deterministic(resnet):
    model = build(resnet).eval()
    x = torch.randn(2, 3, *HW)
    with torch.no_grad():
        a, b = model(x)["final"], model(x)["final"]
    assert all(torch.equal(a[t], b[t]) for t in a)


def test_initialisation_as_released(resnet):
    model = build(resnet)
    logits = model.head.final_logits["semseg"]
    assert torch.count_nonzero(logits.bias) == 0 and 0.008 < logits.weight.std() < 0.012
    offset = model.head.defor_mixers[0].blocks[0][3].fn[0].get_offset
    assert torch.count_nonzero(offset.p_conv.weight) == 0 and torch.count_nonzero(offset.p_conv.bias) > 0
    assert model.head.bottleneck["depth"][0].out_channels == sum(resnet.channels) // 8  # released in_channels // 8


def test_options_and_their_errors(resnet):
    model = build(resnet, mixer_depth=2, head_channels=8, num_heads=2)
    assert len(model.head.defor_mixers[0].blocks) == 2 and model.head.bottleneck["edge"][0].out_channels == 8
    with pytest.raises(ValueError, match="valid options: .*batch_attn_images.*embed_dim"):
        build(resnet, embed_dims=64)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        build(resnet, embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="batch_attn_images must be a positive integer or null"):
        build(resnet, batch_attn_images=0)
    assert resolve_cfg({}) == DEFAULTS


def test_a_single_stride_backbone_is_rejected_with_the_fix():
    vit = create_backbone("vit_b", (32, 32), embed_dim=32, depth=4, num_heads=2, out_indices=(0, 1, 2, 3))
    with pytest.raises(ValueError, match=r"multi-scale feature pyramid.*'vit_b' gives strides \[16, 16, 16, 16\]"
                                         r".*Swin or HRNet"):
        build_demt(NYUD, vit, {})


def test_registered(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", True)  # don't import the other (in-progress) plugins
    import methods.demt  # noqa: F401  (registers on import)

    assert registry.METHODS.get("demt") is build_demt


# ---------------------------------------------------------------- parameter counts at the published setting
# The released model (yangyangxu0/DeMT b638e14: builder.get_backbone('Swin-*', pretrained=False) and
# get_head('DemtHead', '0,1,2,3', ...)), counted unmodified on CPU. The released mmseg Swin has a LayerNorm on
# each of its 4 outputs (norm0..norm3: 2·ΣC parameters) that timm's feature extractor does not have.
RELEASED_COUNTS = {  # (backbone, tasks): (released backbone, its output norms, released head)
    ("swin_t", "nyud"): (27_520_698, 2_880, 4_549_561),    # total 32,070,259 (README: 32.07M)
    ("swin_t", "pascal"): (27_520_698, 2_880, 5_508_204),
    ("swin_s", "nyud"): (48_838_602, 2_880, 4_549_561),    # total 53,388,163 (README: 53.03M)
    ("swin_s", "pascal"): (48_838_602, 2_880, 5_508_204),
    ("swin_b", "nyud"): (86_745_016, 3_840, 5_228_581),    # total 91,973,597 (README: 90.9M)
    ("swin_b", "pascal"): (86_745_016, 3_840, 6_324_924),
    # builder 'HRNet18-S' (no config ships with it; README row "HRNet-18 4.76M"): total 6,748,218
    ("hrnet_w18_small_v2", "nyud"): (3_860_720, 0, 2_887_498),
}
SIZE = {"nyud": (425, 560), "pascal": (512, 512)}


def _meta_backbone(name, size):
    """Swin with mmseg's per-output LayerNorms when mtbench.backbones offers them (backbone_cfg
    ``out_norms: true``); otherwise timm's extractor and the count of those norms, added explicitly."""
    with torch.device("meta"):
        if not name.startswith("swin"):
            return create_backbone(name, size), 0
        try:
            return create_backbone(name, size, out_norms=True), 0
        except TypeError:  # the option is not there: timm rejects the keyword
            bb = create_backbone(name, size)
            return bb, 2 * sum(bb.channels)


@pytest.mark.parametrize("backbone, tasks", list(RELEASED_COUNTS))
def test_parameter_counts_equal_the_released_model(backbone, tasks):
    released_bb, released_norms, released_head = RELEASED_COUNTS[(backbone, tasks)]
    bb, norms_not_built = _meta_backbone(backbone, SIZE[tasks])
    with torch.device("meta"):
        model = build_demt(NYUD if tasks == "nyud" else PASCAL, bb, {})
    n_bb = sum(p.numel() for p in model.backbone.parameters())
    n_head = sum(p.numel() for p in model.head.parameters())
    assert n_head == released_head
    assert norms_not_built in (0, released_norms)
    assert n_bb + norms_not_built == released_bb
    assert sum(p.numel() for p in model.parameters()) + norms_not_built == released_bb + released_head


# ------------------------------------------------------------------------------- agreement with the release
# Statistics (mean, mean square, cos-weighted mean) of the released DemtHead's outputs: yangyangxu0/DeMT at
# commit b638e140b0bf4c37e119f2dd8b9945386103a9fc, src/model/heads/demt_head.py with base.py and utils_heads.py,
# run unmodified on CPU (torch 2.14.1, torchvision 0.29.1, timm 1.0.31, einops 0.8.2). NYUD tasks,
# idx_to_planes {16, 24, 32, 40}, output 50×78, the features below. Its weights were those _fill gives this
# head (the released keys renamed bottleneck.<t>.conv/.bn → .0/.1; its unused `offset` buffers left out).
# The release was written for torch 1.7, whose MultiheadAttention read keys/values of shape (B, T·HW, C)
# against queries (B, HW, C) as (B·T, HW, C) (view(-1, bsz·heads, head_dim)); torch ≥ 1.9 raises there, so that
# run wrapped F.multi_head_attention_forward to reshape key/value the same way before projecting them.
RELEASED = {
    # eval mode, batch 2 in one call (= batch_attn_images None or 2)
    "eval_batch2": {
        "semseg": [-0.014738922591813303, 0.1283631772397655, 0.0003283574806884955],
        "depth": [-0.22032935664164596, 0.10951146227644114, -0.0021889737948718405],
        "normals": [0.09825509850458504, 0.04228633302255437, 0.0006211824299511419],
        "edge": [0.011993374901319792, 0.017580038091297222, 0.0016681838517717742],
    },
    # eval mode, each image in its own call (= batch_attn_images 1, the released recipe's 1 image per GPU)
    "eval_each_alone": {
        "semseg": [-0.014752795567484264, 0.12905201324833457, 0.00032941416961562064],
        "depth": [-0.21800034642331226, 0.1077267055368106, -0.0021498156863125387],
        "normals": [0.10755533632284932, 0.0403307467418247, 0.0017953646545223305],
        "edge": [0.010139898019280433, 0.015838811850871486, 0.0011985257043379796],
    },
    # train mode (BatchNorm batch statistics), batch 2 in one call
    "train_batch2": {
        "semseg": [-0.003610827718925586, 0.0754072503265644, 0.0009786916093204798],
        "depth": [-0.04921905815724107, 0.061017659845095724, 0.0017744277075039997],
        "normals": [-0.03740056036456172, 0.05005232832528166, -0.0025428224462010264],
        "edge": [0.051867006906769604, 0.07546180996502275, -0.002428677477032347],
    },
}
RELEASED_GRADS = {  # of the train-mode loss Σ_t mean(out_t · cos(0.1·index)), batch 2
    "defor_mixers.0.blocks.0.3.fn.0.get_offset.p_conv.weight": [-7.62010448046134e-06, 4.343580027371691e-09,
                                                               -4.04000786138613e-08],
    "defor_mixers.0.blocks.0.3.fn.0.get_offset.opt.weight": [-3.311850114658036e-06, 1.9255762556233858e-08,
                                                            1.37491717367269e-06],
    "defor_mixers.1.blocks.0.3.fn.0.weight": [8.648803871856223e-07, 1.1734521131395007e-08, 8.3218999803481e-08],
    "linear1.0.weight": [1.1623083448089996e-12, 1.0850703975976431e-05, 6.082846141592082e-07],
    "task_fusion.in_proj_weight": [-2.3796767321157108e-09, 4.219944910749809e-08, -2.9566906834610863e-07],
    "task_querys.2.in_proj_weight": [-8.43302418682292e-08, 3.919572491623892e-10, 6.4673312984091255e-09],
}
RELEASED_INSIDE_FRACTION = 0.748  # of the release's deformable samples that land on the map with these weights
PLANES, OUT = [16, 24, 32, 40], (50, 78)


def _features(batch=2):
    out = []
    for lvl, c in enumerate(PLANES):
        s = 4 * 2 ** lvl
        h, w = math.ceil(OUT[0] / s), math.ceil(OUT[1] / s)
        n = batch * c * h * w
        out.append(torch.sin(torch.arange(n, dtype=torch.float64) * 2.39 + lvl).mul(2).view(batch, c, h, w).float())
    return out


def _released_head(images):
    head = DeMTHead(PLANES, NYUD, resolve_cfg({"batch_attn_images": images}))
    _fill(head)
    assert sum(p.numel() for p in head.parameters()) == 2_670_939  # the released head at these widths
    return head


def _assert_close(got, ref, what, tol=1e-5):
    """Mean square to ``tol`` relative; mean and cos-weighted mean to ``tol`` of the RMS (they are sums with
    cancellation, so float32 rounding in matmuls of another shape moves them by more than ``tol`` of themselves)."""
    rms = ref[1] ** 0.5
    assert got[1] == pytest.approx(ref[1], rel=tol), what
    assert got[0] == pytest.approx(ref[0], abs=tol * rms) and got[2] == pytest.approx(ref[2], abs=tol * rms), what


@pytest.mark.parametrize("case, images, train", [("eval_batch2", None, False), ("eval_batch2", 2, False),
                                                 ("eval_each_alone", 1, False), ("train_batch2", None, True)])
def test_head_matches_released_numbers(case, images, train):
    """Catches any change in the head's math against the release: e.g. 0-based positions for the offsets, the
    row/column halves swapped, a missing residual, or attending over one image's tasks where the release
    attends over the batch (eval_batch2 vs eval_each_alone differ by ~1e-3)."""
    head = _released_head(images).train(train)
    with torch.set_grad_enabled(train):
        out = head(_features(), OUT)
    for t, ref in RELEASED[case].items():
        assert out[t].shape == (2, NYUD[t], *OUT)
        _assert_close(_stats(out[t]), ref, t)
    if train:
        loss = sum((v * torch.cos(torch.arange(v.numel()).view(v.shape) * 0.1)).mean() for v in out.values())
        loss.backward()
        params = dict(head.named_parameters())
        for name, ref in RELEASED_GRADS.items():
            _assert_close(_stats(params[name].grad), ref, name)


def test_parity_case_exercises_the_bilinear_sampling():
    """With these weights about 3/4 of the deformable samples fall on the map (not all zero-padding)."""
    head = _released_head(1).eval()
    feats = _features()
    with torch.no_grad():
        x = head.linear1(torch.cat([torch.nn.functional.interpolate(f, size=feats[0].shape[2:], mode="bilinear")
                                    for f in feats], 1).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        mix = head.defor_mixers[0].blocks[0]
        y = mix[2](mix[1](mix[0](x)))
        off = mix[3].fn[0].get_offset(y)
    h, w = y.shape[2:]
    py = torch.arange(h).view(1, 1, h, 1) + off[:, 0::2]
    px = torch.arange(w).view(1, 1, 1, w) + off[:, 1::2]
    inside = ((py > -1) & (py < h) & (px > -1) & (px < w)).double().mean().item()
    assert inside == pytest.approx(RELEASED_INSIDE_FRACTION, abs=1e-3)


# ---------------------------------------------------------------------------------------------------- FLOPs
def test_flop_counter_counts_the_deformable_conv_as_a_convolution():
    from torch.utils.flop_counter import FlopCounterMode

    conv = ChannelDeformConv(8)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        conv(torch.randn(2, 8, 5, 6))
    pixels = 2 * 5 * 6
    p_conv, opt = 8 * 18 * 9, (18 // 2) * 9 * 16  # 3×3 convs: 8 → 18 and 18 → 16 in 2 groups
    deform = 8 * 8  # 1×1 over all channels
    assert counter.get_total_flops() == 2 * pixels * (p_conv + opt + deform)


# -------------------------------------------------------------------------------------------- end to end
def test_nyud_fixture_runs_end_to_end(tmp_path):
    """bench.py on a tiny folder in the real NYUDv2 format: demt and its single-task references train,
    evaluate and write records."""
    import json

    from fixtures_real import write_nyud

    from mtbench.cli import main

    root = write_nyud(tmp_path / "data")
    argv = ["--methods", "demt", "--dataset", "nyud", "--data-dir", str(root), "--tasks", "semseg,depth,normals,edge",
            "--results", str(tmp_path / "res"), "--recipe", "smoke"]
    for o in ["iterations=3", "batch_size=2", "checkpoint_every=100", "num_workers=0", "eval.edge_thresholds=3",
              "eval.edge_workers=1", "methods.demt.embed_dim=16", "methods.demt.head_channels=8",
              "methods.single.head_channels=8", "datasets.nyud.pad_size=[64,64]"]:
        argv += ["--set", o]
    assert main(argv) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*/record.json")]
    demt = next(r for r in recs if r["method"] == "demt")
    assert demt["status"] == "done" and set(demt["metrics"]) == set(NYUD)
    assert demt["config"]["recipe"]["methods"]["demt"] == {"embed_dim": 16, "head_channels": 8}
