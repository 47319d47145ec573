"""Backbones: timm feature extractors behind one wrapper, registered by name.

Every backbone returns a list of NCHW feature maps, one per level, with ``.channels`` and ``.strides``
declared up front. For an input of H×W a level of stride s is ceil(H/s) × ceil(W/s), whatever H and W
are: backbones that need divisible sizes (HRNet, Swin: 32; ViT: 16) get the input zero-padded at the
bottom/right inside the wrapper and their features cropped back.

Weights never come from the hub (``pretrained=False`` always); ``checkpoint=`` takes a local file, see
:func:`load_checkpoint`.
"""
from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mtbench.registry import register_backbone

log = logging.getLogger(__name__)

RANDOM_INIT = "random init"
# Top-level names of classifier parts: dropped from checkpoints, never reported as unexpected.
CLASSIFIER_PREFIXES = ("fc", "head", "classifier", "head_drop", "pre_logits", "fc_norm")
# Wrappers put around a backbone's keys by DDP, mmsegmentation/mmdet, and this module (``body.``).
_KEY_PREFIXES = ("module.", "backbone.", "body.")
_CONTAINER_KEYS = ("state_dict", "model", "module", "model_state", "model_state_dict", "net", "network",
                   "state_dict_ema", "model_ema")


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


class CheckpointMismatchError(ValueError):
    """A checkpoint that leaves too much of the backbone uninitialised."""


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
    ("constant", "reflect", "replicate") overrides it.
    """

    def __init__(self, body: nn.Module, name: str, spec: _Spec, img_size: tuple[int, int],
                 timm_kwargs: dict[str, Any], pad_mode: str = "constant"):
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
        for f, s in zip(feats, self.strides):
            if self.nhwc:
                f = f.permute(0, 3, 1, 2)
            out.append(f[:, :, : math.ceil(H / s), : math.ceil(W / s)].contiguous())
        return out

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, timm={self.timm_name!r}, channels={self.channels}, "
                f"strides={self.strides}, weights={self.weights_source!r}")


def describe(backbone: Backbone) -> dict[str, Any]:
    """What a run record needs to know about a backbone."""
    return {
        "name": backbone.name,
        "timm_name": backbone.timm_name,
        "channels": list(backbone.channels),
        "strides": list(backbone.strides),
        "params": sum(p.numel() for p in backbone.parameters()),
        "img_size": list(backbone.img_size),
        "weights_source": backbone.weights_source,
        "load_report": dict(backbone.load_report),
    }


def create_backbone(name: str, img_size: int | Sequence[int], checkpoint: str | os.PathLike | None = None,
                    *, pad_mode: str = "constant", max_missing_fraction: float = 0.05,
                    **kwargs: Any) -> Backbone:
    """Build backbone ``name`` (a key of SPECS) for inputs of ``img_size`` = (H, W).

    ``kwargs`` go to ``timm.create_model`` (e.g. ``drop_path_rate``, ``out_indices``). ``img_size``
    fixes ViT's position-embedding grid and Swin's window sizes; both still accept other input sizes.
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
    body = timm.create_model(spec.timm_name, features_only=True, pretrained=False, **tkw)
    if spec.family == "swin":
        _patch_swin_blocks(body)
    bb = Backbone(body, name, spec, img_size, tkw, pad_mode=pad_mode)
    if checkpoint is not None:
        load_checkpoint(bb, checkpoint, max_missing_fraction=max_missing_fraction)
    return bb


def _make_builder(name: str) -> Callable[..., Backbone]:
    def build(img_size: tuple[int, int], checkpoint: str | None = None, **kwargs: Any) -> Backbone:
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


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------
def _full_model(bb: Backbone, device: str | torch.device = "meta") -> nn.Module:
    """The classification model the extractor was cut from: its key names and shapes are what timm's
    checkpoint converters (``checkpoint_filter_fn``) and published checkpoints use."""
    import timm

    kw = {k: v for k, v in bb._timm_kwargs.items() if k not in ("out_indices", "feature_location")}
    with torch.device(device):
        return timm.create_model(bb.timm_name, pretrained=False, **kw)


def _read_file(path: str, bb: Backbone) -> Any:
    lower = path.lower()
    if lower.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as err:  # pragma: no cover - safetensors is installed here
            raise ImportError(f"{path}: reading .safetensors needs the 'safetensors' package") from err
        return load_file(path, device="cpu")
    if lower.endswith(".npz"):
        if bb.family != "vit":
            raise ValueError(f"{path}: .npz checkpoints are only supported for ViT (JAX/big_vision "
                             f"weights); '{bb.name}' needs a .pth/.pt/.bin/.safetensors file")
        from timm.models.vision_transformer import _load_weights

        full = _full_model(bb, device="cpu")
        _load_weights(full, path)  # timm's converter for Google JAX/augreg .npz files
        return full.state_dict()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickles with non-tensor objects (mmcv configs, numpy scalars, ...)
        log.warning("%s: weights_only load failed (%s); loading it as a full pickle, which runs code "
                    "from the file - only do this with files you trust", path, type(err).__name__)
        return torch.load(path, map_location="cpu", weights_only=False)


def _unwrap(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """Find the state dict inside common training-checkpoint containers."""
    for _ in range(4):
        if isinstance(obj, nn.Module):
            obj = obj.state_dict()
        if not isinstance(obj, Mapping):
            raise TypeError(f"{path}: expected a state dict (or a dict holding one), got {type(obj).__name__}")
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        for key in _CONTAINER_KEYS:
            if isinstance(obj.get(key), (Mapping, nn.Module)):
                obj = obj[key]
                break
        else:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors:
                return tensors
            raise ValueError(f"{path}: no tensors found (top-level keys: {sorted(map(str, obj))[:10]})")
    raise ValueError(f"{path}: could not find a state dict inside the checkpoint")


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove DDP ``module.``, mmseg ``backbone.`` and this wrapper's ``body.`` prefixes. Keys outside
    the prefix (an mmseg decode head, ...) are returned as dropped."""
    dropped: list[str] = []
    changed = True
    while changed:
        changed = False
        for p in _KEY_PREFIXES:
            if any(k.startswith(p) for k in sd):
                dropped += [k for k in sd if not k.startswith(p)]
                sd = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
                changed = True
    return sd, dropped


def _feature_key_map(full_keys: Sequence[str], feat_keys: Sequence[str]) -> dict[str, str]:
    """Full-model key -> feature-extractor key. timm's FeatureListNet flattens top-level Sequentials
    (``layers.0.blocks...`` -> ``layers_0.blocks...``), FeatureGetterNet nests the model (``model.``)."""
    feat = set(feat_keys)
    out = {}
    for k in full_keys:
        flat = k.replace(".", "_", 1)
        for cand in (k, "model." + k, flat, "model." + flat):
            if cand in feat:
                out[k] = cand
                break
    return out


def _examples(keys: Sequence[str], n: int = 8) -> str:
    keys = list(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_checkpoint(bb: Backbone, checkpoint: str | os.PathLike, max_missing_fraction: float = 0.05) -> dict:
    """Load a local checkpoint into ``bb`` (strict=False) and return / store the load report.

    Accepts .pth/.pt/.bin (torch.load, weights_only when possible), .safetensors, and .npz (JAX ViT,
    via timm's converter); state dicts inside ``state_dict``/``model``/``module`` containers; keys with
    ``module.``/``backbone.``/``body.`` prefixes; keys in the full timm model's layout (what published
    checkpoints use) or in the feature extractor's. timm's own converter for the model family runs
    (e.g. Swin relative-position tables and ViT position embeddings are resized to ``img_size``).
    Classifier keys and parts the extractor pruned are dropped. Raises CheckpointMismatchError when
    more than ``max_missing_fraction`` of the backbone's weights (by element count) stay uninitialised.
    """
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"checkpoint '{path}' does not exist. Pretrained weights cannot be downloaded here (no hub or "
            f"network access): pass the path of a local .pth/.pt/.bin/.safetensors/.npz file.")
    sd = _unwrap(_read_file(path, bb), path)
    sd, dropped = _strip_prefixes(sd)

    full = _full_model(bb)
    full_sd = full.state_dict()
    target = bb.body.state_dict()
    full_to_feat = _feature_key_map(list(full_sd), list(target))
    feat_to_full = {v: k for k, v in full_to_feat.items()}
    # 1) everything in full-model naming, 2) timm's converter for this family, 3) extractor naming.
    sd = {feat_to_full.get(k, k): v for k, v in sd.items()}
    filter_fn = getattr(sys.modules.get(type(full).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            sd = filter_fn(sd, full)
        except Exception as err:  # a checkpoint the converter does not understand: report below
            log.warning("%s: timm's %s.checkpoint_filter_fn failed (%s: %s); loading keys as they are",
                        path, type(full).__module__, type(err).__name__, err)

    to_load: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for k, v in sd.items():
        t = full_to_feat.get(k)
        if t is None:
            if k in full_sd or k.split(".")[0] in CLASSIFIER_PREFIXES:
                dropped.append(k)  # classifier, or a part the feature extractor does not use
            else:
                unexpected.append(k)
            continue
        if tuple(v.shape) != tuple(target[t].shape):
            mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[t].shape)}")
            continue
        to_load[t] = v

    def _counted(k: str) -> bool:
        return not k.endswith("num_batches_tracked")

    missing = [k for k in target if k not in to_load and _counted(k)]
    total = sum(v.numel() for k, v in target.items() if _counted(k))
    missing_numel = sum(target[k].numel() for k in missing)
    frac = missing_numel / max(total, 1)
    report = {
        "path": os.path.abspath(path),
        "loaded": len(to_load),
        "missing": missing,
        "unexpected": unexpected,
        "shape_mismatch": mismatched,
        "dropped": len(dropped),
        "dropped_examples": dropped[:8],
        "missing_fraction": round(frac, 6),
    }
    if frac > max_missing_fraction:
        raise CheckpointMismatchError(
            f"checkpoint '{path}' leaves {frac:.1%} of backbone '{bb.name}' (timm '{bb.timm_name}') "
            f"uninitialised ({len(missing)} of {len([k for k in target if _counted(k)])} tensors; limit "
            f"{max_missing_fraction:.0%}).\n  missing, e.g.: {_examples(missing)}\n"
            f"  unexpected in the checkpoint, e.g.: {_examples(unexpected) or '(none)'}\n"
            + (f"  shape mismatches, e.g.: {_examples(mismatched, 4)}\n" if mismatched else "")
            + f"Fix: use a checkpoint of '{bb.timm_name}' in timm's key layout (optionally wrapped in "
            f"'state_dict'/'model' and prefixed 'module.'/'backbone.'), convert its keys to that layout, or "
            f"pass max_missing_fraction=<higher> if the gap is intended.")
    result = bb.body.load_state_dict(to_load, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    bb.weights_source = report["path"]
    bb.load_report = report
    log.info("%s: loaded %d tensors into '%s' (%d dropped: classifier/unused parts)",
             path, len(to_load), bb.name, len(dropped))
    if missing or unexpected or mismatched:
        log.warning("%s: %d missing (%.2f%% of weights), %d unexpected, %d shape-mismatched keys for '%s'. "
                    "missing: %s; unexpected: %s; mismatched: %s", path, len(missing), 100 * frac,
                    len(unexpected), len(mismatched), bb.name, _examples(missing), _examples(unexpected),
                    _examples(mismatched, 4))
    return report


__all__ = ["Backbone", "CheckpointMismatchError", "SPECS", "create_backbone", "describe", "load_checkpoint"]
