"""Backbone weights from local checkpoint files, in the layouts the papers' code bases start from.

Files are read without running code: ``torch.load(weights_only=True)``, safetensors, or NumPy ``.npz``
with ``allow_pickle=False``; a file that needs full unpickling is refused with the command that converts
it. After unwrapping training containers (``state_dict``, ``model``, ...) and wrapper prefixes (DDP
``module.``, mmseg ``backbone.``, this project's ``body.``), the key layout is recognised:

- timm's own layout (full classification model, or mtbench's feature extractor);
- Swin, mmsegmentation/mmcv (``stages.N``, ``attn.w_msa``, ``ffn.layers``, ``patch_embed.projection``;
  the MQTransformer/DeMT/ATRC-fork releases): renamed to the Microsoft layout, and the patch-merging
  weights reordered from ``nn.Unfold``'s channel order to the concatenation order (the inverse of mmseg's
  ``tools/model_converters/swin2mmseg.py``);
- Swin, Microsoft (``layers.N.downsample`` at the end of a stage): timm's own converter;
- ViT, Google JAX ``.npz`` (augreg, big_vision; what InvPT/TaskPrompter download): timm's ``_load_weights``;
- HRNet, HRNet-Image-Classification ``.pth`` (what MTI-Net/PAD-Net/ATRC download): timm's key names are
  the official ones, nothing to rename.

mmseg Swin's per-output LayerNorms (``norm0``..``norm3``) go to the backbone's ``out_norms``. Then timm's
``checkpoint_filter_fn`` of the family adapts shapes: Swin relative-position tables of another window
(timm's ``resize_rel_pos_bias_table``), ViT position embeddings of another grid (``resample_abs_pos_embed``,
bicubic without antialiasing: what InvPT/TaskPrompter's own loader computes). The load report lists the
layout, every resized tensor, and the missing / unexpected / dropped keys.
"""
from __future__ import annotations

import logging
import math
import os
import pickle
import re
import sys
from typing import Any, Mapping, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)

# Top-level names of classifier parts: dropped from checkpoints, never reported as unexpected.
CLASSIFIER_PREFIXES = ("fc", "head", "classifier", "head_drop", "pre_logits", "fc_norm")
_WRAPPER_PREFIXES = ("module.", "backbone.")  # DDP, mmsegmentation/mmdet segmentors
_CONTAINER_KEYS = ("state_dict", "model", "module", "model_state", "model_state_dict", "net", "network",
                   "state_dict_ema", "model_ema")
_RESAMPLED = ("relative_position_bias_table", "pos_embed", "patch_embed.proj.weight")
_OUT_NORM = re.compile(r"^(?:norm|out_norms\.)(\d)\.(weight|bias)$")  # mmseg Swin norm0..3 / this wrapper


class CheckpointMismatchError(ValueError):
    """A checkpoint that leaves too much of the backbone uninitialised."""


class UnsafeCheckpointError(ValueError):
    """A file that can only be read by unpickling arbitrary Python objects (which can run code)."""


# ------------------------------------------------------------------------------------------ reading
def read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a .pth/.pt/.bin/.safetensors file, unwrapped from training containers."""
    if path.lower().endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))  # torch's message names the object
        reason = f"e.g. {found.group(1)}" if found else "objects torch's safe loader does not accept"
        out = os.path.splitext(path)[0] + ".state_dict.pth"
        raise UnsafeCheckpointError(
            f"{path}: refused: besides tensors the file holds Python objects that only a full unpickle can "
            f"rebuild ({reason}), and unpickling can run code from the file. If you trust the file, convert it "
            f"once to a plain state dict and pass the new file: python -c \"import torch; "
            f"c = torch.load('{path}', map_location='cpu', weights_only=False); "
            f"c = c.get('state_dict', c.get('model', c)) if isinstance(c, dict) else c.state_dict(); "
            f"torch.save({{k: v for k, v in c.items() if torch.is_tensor(v)}}, '{out}')\"") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); pass a .pth/.pt/.bin/.safetensors "
                         f"state dict, or a JAX .npz for ViT") from None
    return _unwrap(obj, path)


def _unwrap(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """Find the state dict inside common training-checkpoint containers."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path}: expected a state dict (or a dict holding one), got {type(obj).__name__}")
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors:
                return tensors
            raise ValueError(f"{path}: no tensors found (top-level keys: {sorted(map(str, obj))[:10]})")
        obj = inner
    raise ValueError(f"{path}: could not find a state dict inside the checkpoint")


def _strip(sd: dict[str, torch.Tensor], prefixes: Sequence[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove wrapper prefixes; keys outside a prefix that others share (an mmseg decode head) are dropped."""
    dropped: list[str] = []
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if any(k.startswith(p) for k in sd):
                dropped += [k for k in sd if not k.startswith(p)]
                sd = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
                changed = True
    return sd, dropped


# ------------------------------------------------------------------------------------------ Swin layouts
def swin_window(sd: Mapping[str, torch.Tensor]) -> int | None:
    """The (square) window a Swin checkpoint was trained with, from its first relative-position table."""
    table = next((v for k, v in sd.items() if k.endswith("relative_position_bias_table")), None)
    if table is None:
        return None
    side = math.isqrt(table.shape[0])
    return (side + 1) // 2 if side * side == table.shape[0] and side % 2 else None


def is_mmseg_swin(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("stages.") and ".attn.w_msa." in k for k in sd)


def mmseg_swin_to_microsoft(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmseg/mmcv Swin keys → the Microsoft release's (the inverse of mmseg's swin2mmseg converter).

    mmseg's patch merging gathers each 2×2 neighbourhood with ``nn.Unfold`` (channel index c·4 + kh·2 + kw);
    Microsoft/timm concatenate the four neighbours (index q·C + c with q = (0,0), (1,0), (0,1), (1,1) for
    (kh, kw)). The merging LayerNorm and the reduction's input axis are permuted back accordingly.
    """
    out = {}
    for k, v in sd.items():
        if k.startswith("stages."):
            k = "layers." + k[len("stages."):]
            k = (k.replace(".attn.w_msa.", ".attn.").replace(".ffn.layers.0.0.", ".mlp.fc1.")
                 .replace(".ffn.layers.1.", ".mlp.fc2."))
            if ".downsample.reduction." in k:
                o, i = v.shape
                v = v.reshape(o, i // 4, 4).transpose(1, 2)[:, [0, 2, 1, 3]].reshape(o, i)
            elif ".downsample.norm." in k:
                v = v.reshape(-1, 4).t()[[0, 2, 1, 3]].reshape(-1)
        elif k.startswith("patch_embed.projection."):
            k = "patch_embed.proj." + k[len("patch_embed.projection."):]
        out[k] = v
    return out


# ------------------------------------------------------------------------------------------ ViT .npz
def _npz_state_dict(bb: Any, path: str) -> dict[str, torch.Tensor]:
    """timm's ``_load_weights`` into the full ViT built at the file's own grid, so that resizing to the
    backbone's grid happens once, in timm's ``checkpoint_filter_fn`` (as for .pth files)."""
    import numpy as np
    from timm.models.vision_transformer import _load_weights

    try:
        with np.load(path, allow_pickle=False) as w:
            key = next((k for k in w.files if k.endswith("pos_embedding")), None)
            n = w[key].shape[-2] if key else None
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable NumPy .npz archive ({err})") from None
    kw = {}
    if n is not None:
        g = math.isqrt(n) if math.isqrt(n) ** 2 == n else math.isqrt(n - 1)
        patch = _full_model(bb).patch_embed.patch_size
        kw["img_size"] = (g * patch[0], g * patch[1])
    full = _full_model(bb, device="cpu", **kw)
    try:
        _load_weights(full, path)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: not a ViT checkpoint in the Google JAX layout timm reads ({err})") from None
    return full.state_dict()


# ------------------------------------------------------------------------------------------ loading
def _full_model(bb: Any, device: str | torch.device = "meta", **override: Any) -> nn.Module:
    """The classification model the extractor was cut from: its key names and shapes are what timm's
    checkpoint converters (``checkpoint_filter_fn``) and published checkpoints use."""
    import timm

    kw = {k: v for k, v in bb._timm_kwargs.items() if k not in ("out_indices", "feature_location")}
    with torch.device(device):
        return timm.create_model(bb.timm_name, pretrained=False, **{**kw, **override})


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


def _filter(sd: dict[str, torch.Tensor], full: nn.Module, family: str, path: str) -> dict[str, torch.Tensor]:
    filter_fn = getattr(sys.modules.get(type(full).__module__), "checkpoint_filter_fn", None)
    if filter_fn is None:
        return sd
    # InvPT/TaskPrompter resize position embeddings with F.interpolate(bicubic, align_corners=False)
    extra = {"interpolation": "bicubic", "antialias": False} if family == "vit" else {}
    try:
        return filter_fn(sd, full, **extra)
    except Exception as err:  # a layout the converter does not understand: the report lists what is left
        log.warning("%s: timm's %s.checkpoint_filter_fn failed (%s: %s); loading keys as they are",
                    path, type(full).__module__, type(err).__name__, err)
        return sd


def load_checkpoint(bb: Any, checkpoint: str | os.PathLike, max_missing_fraction: float = 0.05,
                    state_dict: dict[str, torch.Tensor] | None = None) -> dict:
    """Load a local checkpoint into backbone ``bb`` (strict=False); return and store the load report.

    ``state_dict`` is the file's content when the caller has read it already (Swin reads it first to
    take the window size from it). Raises CheckpointMismatchError when more than
    ``max_missing_fraction`` of the backbone's weights (by element count) stay uninitialised.
    """
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"checkpoint '{path}' does not exist. Pretrained weights cannot be downloaded here (no hub or "
            f"network access): pass the path of a local .pth/.pt/.bin/.safetensors/.npz file.")
    if path.lower().endswith(".npz"):
        if bb.family != "vit":
            raise ValueError(f"{path}: .npz checkpoints are only supported for ViT (JAX/big_vision weights); "
                             f"'{bb.name}' needs a .pth/.pt/.bin/.safetensors file")
        sd, layout = _npz_state_dict(bb, path), "Google JAX .npz (timm _load_weights)"
    else:
        sd, layout = state_dict if state_dict is not None else read_checkpoint(path), "timm"
    sd, dropped = _strip(sd, _WRAPPER_PREFIXES)
    norms = {}
    for k in [k for k in sd if _OUT_NORM.match(k)]:
        i, what = _OUT_NORM.match(k).groups()
        norms[f"{i}.{what}"] = sd.pop(k)
    sd, more = _strip(sd, ("body.",))
    dropped += more
    if bb.family == "swin" and is_mmseg_swin(sd):
        sd, layout = mmseg_swin_to_microsoft(sd), "mmsegmentation Swin (converted to the Microsoft layout)"
    elif bb.family == "swin" and "layers.0.downsample.reduction.weight" in sd:
        layout = "Microsoft Swin"
    elif bb.family == "hrnet" and "incre_modules.0.0.conv1.weight" in sd:
        layout = "HRNet-Image-Classification (timm's key names)"

    full = _full_model(bb)
    full_sd = full.state_dict()
    target = bb.body.state_dict()
    full_to_feat = _feature_key_map(list(full_sd), list(target))
    feat_to_full = {v: k for k, v in full_to_feat.items()}
    sd = {feat_to_full.get(k, k): v for k, v in sd.items()}  # everything in the full model's naming
    before = {k: tuple(v.shape) for k, v in sd.items()}
    sd = _filter(sd, full, bb.family, path)
    resized = [f"{k}: {before[k]} -> {tuple(v.shape)}" for k, v in sd.items()  # what timm's filters resample
               if k.endswith(_RESAMPLED) and k in before and before[k] != tuple(v.shape)]

    to_load: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for k, v in sd.items():
        t = full_to_feat.get(k)
        if t is None:
            (dropped if k in full_sd or k.split(".")[0] in CLASSIFIER_PREFIXES else unexpected).append(k)
        elif tuple(v.shape) != tuple(target[t].shape):
            mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[t].shape)}")
        else:
            to_load["body." + t] = v
    norm_target = {k[len("out_norms."):]: v for k, v in bb.state_dict().items() if k.startswith("out_norms.")}
    for k, v in norms.items():
        if k in norm_target and v.shape == norm_target[k].shape:
            to_load["out_norms." + k] = v
        else:
            unexpected.append(f"norm{k}" + ("" if norm_target else " (no out_norms: set backbone_cfg out_norms: true)"))

    counted = {k: v for k, v in bb.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [k[len("body."):] if k.startswith("body.") else k for k in counted if k not in to_load]
    missing_numel = sum(v.numel() for k, v in counted.items() if k not in to_load)
    frac = missing_numel / max(sum(v.numel() for v in counted.values()), 1)
    report = {
        "path": os.path.abspath(path), "format": layout, "loaded": len(to_load), "missing": missing,
        "unexpected": unexpected, "shape_mismatch": mismatched, "resized": resized, "dropped": len(dropped),
        "dropped_examples": dropped[:8], "missing_fraction": round(frac, 6),
    }
    if frac > max_missing_fraction:
        raise CheckpointMismatchError(
            f"checkpoint '{path}' ({layout}) leaves {frac:.1%} of backbone '{bb.name}' (timm '{bb.timm_name}') "
            f"uninitialised ({len(missing)} of {len(counted)} tensors; limit {max_missing_fraction:.0%}).\n"
            f"  missing, e.g.: {_examples(missing)}\n  unexpected in the checkpoint, e.g.: "
            f"{_examples(unexpected) or '(none)'}\n"
            + (f"  shape mismatches, e.g.: {_examples(mismatched, 4)}\n" if mismatched else "")
            + f"Fix: use a checkpoint of '{bb.timm_name}' in timm's, Microsoft's or mmsegmentation's key layout "
            f"(optionally wrapped in 'state_dict'/'model' and prefixed 'module.'/'backbone.'), or pass "
            f"max_missing_fraction=<higher> if the gap is intended.")
    result = bb.load_state_dict(to_load, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    bb.weights_source, bb.load_report = report["path"], report
    log.info("%s (%s): loaded %d tensors into '%s' (%d dropped: classifier/unused parts; %d resized)",
             path, layout, len(to_load), bb.name, len(dropped), len(resized))
    if missing or unexpected or mismatched:
        log.warning("%s: %d missing (%.2f%% of weights), %d unexpected, %d shape-mismatched keys for '%s'. "
                    "missing: %s; unexpected: %s; mismatched: %s", path, len(missing), 100 * frac,
                    len(unexpected), len(mismatched), bb.name, _examples(missing), _examples(unexpected),
                    _examples(mismatched, 4))
    return report
