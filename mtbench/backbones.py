"""Backbones: timm feature extractors behind one wrapper, registered by name.

Every backbone returns a list of NCHW feature maps, one per level, with ``.channels`` and ``.strides``
declared up front. For an input of H×W a level of stride s is ceil(H/s) × ceil(W/s), whatever H and W
are: backbones that need divisible sizes (HRNet, Swin: 32; ViT: 16) get the input zero-padded at the
bottom/right inside the wrapper and their features cropped back.

Weights never come from the hub (``pretrained=False`` always); ``checkpoint=`` takes a local file in
timm's, Microsoft's, mmsegmentation's, Google JAX's or HRNet's published layout, see
:mod:`mtbench.backbone_weights`. ``out_norms=True`` adds a LayerNorm on each output level, as the
mmsegmentation Swin of the MQTransformer/DeMT releases has (``norm0``..``norm3`` in its checkpoints).
"""
from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mtbench.backbone_weights import CheckpointMismatchError, UnsafeCheckpointError, load_checkpoint, read_checkpoint, swin_window
from mtbench.registry import register_backbone

log = logging.getLogger(__name__)

RANDOM_INIT = "random init"


@dataclass(frozen=True)
class _Spec:
    timm_name: str
    family: str  # "cnn" | "hrnet" | "swin" | "vit"
    out_indices: tuple[int, ...]
    pad_multiple: int = 1  # input H, W are padded up to a multiple of this
    uses_img_size: bool = False  # the model is built for a fixed img_size (pos-embed / windows)
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


SPECS: dict[str, _Spec] = {
    "resnet18": _Spec("resnet18", "cnn", (1, 2, 3, 4)),
    "resnet50": _Spec("resnet50", "cnn", (1, 2, 3, 4)),
    # Raw HRNet branches (feature_location=''), not the classification "incre" features. The branch
    # fusion upsamples by exact factors, so H, W must be multiples of 32.
    "hrnet_w18_small_v2": _Spec("hrnet_w18_small_v2", "hrnet", (1, 2, 3, 4), 32,
                                timm_kwargs={"feature_location": ""}),
    "hrnet_w48": _Spec("hrnet_w48", "hrnet", (1, 2, 3, 4), 32, timm_kwargs={"feature_location": ""}),
    # Swin: patch embed needs /4, three 2x2 patch mergings need /32. strict_img_size=False lets the
    # model take other input sizes than the one it was built for (masks are rebuilt per input size).
    "swin_t": _Spec("swin_tiny_patch4_window7_224", "swin", (0, 1, 2, 3), 32, True,
                    {"strict_img_size": False}, ("swin_tiny_patch4_window7_224",)),
    "swin_s": _Spec("swin_small_patch4_window7_224", "swin", (0, 1, 2, 3), 32, True,
                    {"strict_img_size": False}, ("swin_small_patch4_window7_224",)),
    "swin_b": _Spec("swin_base_patch4_window7_224", "swin", (0, 1, 2, 3), 32, True,
                    {"strict_img_size": False}, ("swin_base_patch4_window7_224",)),
    "swin_l": _Spec("swin_large_patch4_window7_224", "swin", (0, 1, 2, 3), 32, True,
                    {"strict_img_size": False}, ("swin_large_patch4_window7_224",)),
    # ViT: out_indices are block numbers; every level is the stride-16 token grid. Built for img_size
    # (pos-embed at that grid); dynamic_img_size interpolates it for other input sizes.
    "vit_b": _Spec("vit_base_patch16_384", "vit", (2, 5, 8, 11), 16, True,
                   {"dynamic_img_size": True}, ("vit_base_patch16_384",)),
    "vit_l": _Spec("vit_large_patch16_384", "vit", (5, 11, 17, 23), 16, True,
                   {"dynamic_img_size": True}, ("vit_large_patch16_384",)),
}


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


def _as_hw(img_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(img_size, int):
        return (img_size, img_size)
    h, w = img_size
    return (int(h), int(w))


# --------------------------------------------------------------------------------------------------
# Swin: pad *before* the cyclic shift (fix for timm's window padding)
# --------------------------------------------------------------------------------------------------
def _swin_attn_pad_then_shift(self, x: torch.Tensor) -> torch.Tensor:
    """SwinTransformerBlock._attn with the official Swin (segmentation/detection) order: pad, then shift.

    timm rolls the map first and pads it to a multiple of the window afterwards, while its shift mask
    assumes the padding came first; when a stage's resolution is larger than the window (7) but not a
    multiple of it, tokens from opposite image borders then attend to each other
    (huggingface/pytorch-image-models#2438). That is the normal case for dense prediction (e.g. a
    448×576 input gives 112×144 at stage 1), so the wrapper swaps in this version. It is identical to
    timm's when H and W are multiples of the window.
    """
    from timm.models.swin_transformer import window_partition, window_reverse

    B, H, W, C = x.shape
    wh, ww = self.window_size
    pad_h, pad_w = (wh - H % wh) % wh, (ww - W % ww) % ww
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    has_shift = any(self.shift_size)
    attn_mask = None
    if has_shift:
        x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        attn_mask = self.attn_mask
        n_windows = (Hp // wh) * (Wp // ww)
        if attn_mask is None or attn_mask.shape[0] != n_windows or attn_mask.device != x.device:
            attn_mask = self.get_attn_mask(x)  # regions of the padded map, as in the original Swin
    windows = window_partition(x, self.window_size).view(-1, wh * ww, C)
    windows = self.attn(windows, mask=attn_mask)
    x = window_reverse(windows.view(-1, wh, ww, C), self.window_size, Hp, Wp)
    if has_shift:
        x = torch.roll(x, shifts=self.shift_size, dims=(1, 2))
    return x[:, :H, :W, :].contiguous()


_SWIN_BLOCK_CLS: type | None = None


def _swin_block_class() -> type:
    """timm's SwinTransformerBlock with :func:`_swin_attn_pad_then_shift` as ``_attn`` (made on first use,
    so importing this module does not import timm; a named module attribute, so whole-model pickles load)."""
    global _SWIN_BLOCK_CLS
    if _SWIN_BLOCK_CLS is None:
        from timm.models.swin_transformer import SwinTransformerBlock

        cls = type("SwinBlockPadFirst", (SwinTransformerBlock,), {
            "_attn": _swin_attn_pad_then_shift, "__module__": __name__, "__doc__": _swin_attn_pad_then_shift.__doc__})
        _SWIN_BLOCK_CLS = cls
    return _SWIN_BLOCK_CLS


def __getattr__(name: str) -> Any:  # PEP 562: lets pickle find the lazily made class
    if name == "SwinBlockPadFirst":
        return _swin_block_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _patch_swin_blocks(model: nn.Module) -> int:
    from timm.models.swin_transformer import SwinTransformerBlock

    cls = _swin_block_class()
    n = 0
    for mod in model.modules():
        if type(mod) is SwinTransformerBlock:
            mod.__class__ = cls
            n += 1
    return n


# --------------------------------------------------------------------------------------------------
# The wrapper
# --------------------------------------------------------------------------------------------------
class Backbone(nn.Module):
    """A timm feature extractor returning NCHW maps at ``strides``, for any input size.

    Inputs whose H or W is not a multiple of ``pad_multiple`` are padded at the bottom/right with zeros
    and every level is cropped back to ceil(H/stride) × ceil(W/stride). Zero rather than reflect:
    inputs are mean/std-normalised, so zero is the dataset-mean colour that each conv's own border
    padding already assumes; reflection would mirror real edges and objects into the pad, which large
    receptive fields (HRNet's cross-branch fusion, Swin/ViT attention) carry into the kept border
    features; and reflect fails outright when the pad exceeds the image (tiny inputs). ``pad_mode``
    ("constant", "reflect", "replicate") overrides it. ``out_norms``: a LayerNorm over the channels of
    each level (mmseg Swin's ``norm0``..``norm3``), applied before the crop (it is per pixel).
    """

    def __init__(self, body: nn.Module, name: str, spec: _Spec, img_size: tuple[int, int],
                 timm_kwargs: dict[str, Any], pad_mode: str = "constant", out_norms: bool = False):
        super().__init__()
        self.body = body
        self.name = name
        self.timm_name = spec.timm_name
        self.family = spec.family
        self.img_size = img_size
        self.pad_multiple = spec.pad_multiple
        self.pad_mode = pad_mode
        info = body.feature_info
        self.channels: list[int] = [int(c) for c in info.channels()]
        self.strides: list[int] = [int(s) for s in info.reduction()]
        self.nhwc = str(getattr(body, "output_fmt", "NCHW")).upper().endswith("NHWC")
        self.out_norms = nn.ModuleList(nn.LayerNorm(c) for c in self.channels) if out_norms else None
        self.weights_source: str = RANDOM_INIT
        self.load_report: dict[str, Any] = {}
        self._timm_kwargs = dict(timm_kwargs)  # to rebuild the full (non-features) model for loading

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        H, W = x.shape[-2:]
        m = self.pad_multiple
        pad_h, pad_w = _ceil_to(H, m) - H, _ceil_to(W, m) - W
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=self.pad_mode)
        feats = self.body(x)
        out = []
        for i, (f, s) in enumerate(zip(feats, self.strides)):
            if self.out_norms is not None:
                f = self.out_norms[i](f) if self.nhwc else self.out_norms[i](f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            if self.nhwc:
                f = f.permute(0, 3, 1, 2)
            out.append(f[:, :, : math.ceil(H / s), : math.ceil(W / s)].contiguous())
        return out

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, timm={self.timm_name!r}, channels={self.channels}, "
                f"strides={self.strides}, out_norms={self.out_norms is not None}, weights={self.weights_source!r}")


def describe(backbone: Backbone) -> dict[str, Any]:
    """What a run record needs to know about a backbone."""
    return {
        "name": backbone.name,
        "timm_name": backbone.timm_name,
        "channels": list(backbone.channels),
        "strides": list(backbone.strides),
        "params": sum(p.numel() for p in backbone.parameters()),
        "img_size": list(backbone.img_size),
        "out_norms": backbone.out_norms is not None,
        **({"window_size": backbone.window_size} if backbone.family == "swin" else {}),
        "weights_source": backbone.weights_source,
        "load_report": dict(backbone.load_report),
    }


def create_backbone(name: str, img_size: int | Sequence[int], checkpoint: str | os.PathLike | None = None,
                    *, pad_mode: str = "constant", max_missing_fraction: float = 0.05, out_norms: bool = False,
                    **kwargs: Any) -> Backbone:
    """Build backbone ``name`` (a key of SPECS) for inputs of ``img_size`` = (H, W).

    ``kwargs`` go to ``timm.create_model`` (e.g. ``drop_path_rate``, ``window_size``). ``img_size``
    fixes ViT's position-embedding grid and Swin's window sizes; both still accept other input sizes.
    Swin's window comes from ``window_size`` when given (the recipe), else from the checkpoint's
    relative-position tables, else timm's default (7); a checkpoint of another window is resized.
    """
    spec = SPECS[name]
    import timm

    img_size = _as_hw(img_size)
    tkw: dict[str, Any] = dict(spec.timm_kwargs)
    tkw["out_indices"] = spec.out_indices
    if spec.uses_img_size:
        tkw["img_size"] = (_ceil_to(img_size[0], spec.pad_multiple), _ceil_to(img_size[1], spec.pad_multiple))
    if kwargs.pop("pretrained", False):
        raise ValueError("pretrained=True would download weights; pass checkpoint=<local file> instead")
    tkw.update(kwargs)
    state, window_source = None, "recipe" if "window_size" in kwargs else "timm default"
    path = None if checkpoint is None else os.fspath(checkpoint)
    if spec.family == "swin" and path and os.path.isfile(path) and "window_size" not in kwargs \
            and not path.lower().endswith(".npz"):
        state = read_checkpoint(path)
        if swin_window(state):
            tkw["window_size"], window_source = swin_window(state), "checkpoint"
    body = timm.create_model(spec.timm_name, features_only=True, pretrained=False, **tkw)
    bb = Backbone(body, name, spec, img_size, tkw, pad_mode=pad_mode, out_norms=out_norms)
    if spec.family == "swin":
        _patch_swin_blocks(body)
        default = int(re.search(r"window(\d+)", spec.timm_name).group(1))  # timm's variants name their window
        bb.window_size = {"size": int(tkw.get("window_size", default)), "source": window_source}
    if path is not None:
        load_checkpoint(bb, path, max_missing_fraction=max_missing_fraction, state_dict=state)
    return bb


def _make_builder(name: str) -> Callable[..., Backbone]:
    def build(img_size: tuple[int, int], checkpoint: str | None = None, **kwargs: Any) -> Backbone:
        kwargs.pop("segnet_filters", None)  # the segnet backbone's option (methods/_segnet.py), not timm's
        return create_backbone(name, img_size, checkpoint, **kwargs)

    spec = SPECS[name]
    build.__name__ = f"build_{name}"
    build.__qualname__ = build.__name__
    build.__doc__ = (f"Backbone '{name}' = timm '{spec.timm_name}' (features_only, out_indices="
                     f"{spec.out_indices}); see create_backbone.")
    return build


for _name, _spec in SPECS.items():
    _builder = _make_builder(_name)
    register_backbone(_name)(_builder)
    for _alias in _spec.aliases:
        register_backbone(_alias)(_builder)


__all__ = ["Backbone", "CheckpointMismatchError", "SPECS", "UnsafeCheckpointError", "create_backbone", "describe",
           "load_checkpoint"]
