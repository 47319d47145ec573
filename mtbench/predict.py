"""A finished run's model on a folder of images of any size.

Each image is normalised as in evaluation (ImageNet statistics) and fitted to the input size the model was
trained at: an image that fits is padded, centred, with 0 after normalisation (the validation pipeline); a larger
one is first resized, keeping its aspect ratio, to fit. The logits are cropped back and resized (bilinear) to the
image's own size before each task's post-processing, so every output has the size of its input.

Writes ``OUT/<task>/<name>.png|.npy`` as the evaluators read them (``mtbench.prediction_io``) and
``OUT/pictures/<task>/<name>.png`` with the report's colour maps (``mtbench.report.colours``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mtbench import checkpoint, prediction_io
from mtbench.atomic import atomic_write
from mtbench.config import RunConfig
from mtbench.data.transforms import normalize
from mtbench.records import RECORD_NAME

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
PICTURES = "pictures"


@dataclass
class Predictor:
    model: torch.nn.Module
    tasks: dict[str, Any]
    info: Any
    cfg: RunConfig
    device: torch.device

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.info.image_size)  # type: ignore[return-value]

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """(h, w, 3) uint8 RGB → each task's prediction at (h, w), on the evaluator's scale."""
        h, w = rgb.shape[:2]
        H, W = self.size
        scale = min(1.0, H / h, W / w)
        x = torch.from_numpy(normalize(rgb.astype(np.float32))).permute(2, 0, 1)[None]
        if scale < 1.0:  # larger than the model's input: shrink to fit, aspect kept
            sh, sw = min(H, max(1, round(h * scale))), min(W, max(1, round(w * scale)))
            x = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False, antialias=True)
        else:
            sh, sw = h, w
        top, left = (H - sh) // 2, (W - sw) // 2
        padded = torch.zeros(1, 3, H, W)
        padded[..., top:top + sh, left:left + sw] = x
        logits = self.model(padded.to(self.device))["final"]
        out = {}
        for t, task in self.tasks.items():
            lg = logits[t].float()[..., top:top + sh, left:left + sw]
            if (sh, sw) != (h, w):
                lg = F.interpolate(lg, size=(h, w), mode="bilinear", align_corners=False)
            out[t] = task.postprocess(lg)[0].cpu().numpy()
        return out


def load_run(run_dir: Path, device: torch.device) -> Predictor:
    """The model of a finished run, from its record and ``checkpoints/final.pt`` (read with weights_only)."""
    from mtbench.engine import build_model
    from mtbench.registry import DATASETS

    run_dir = Path(run_dir)
    path = run_dir / RECORD_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {RECORD_NAME} in {run_dir}: pass a run directory, <results>/runs/<run_id>")
    try:
        record = json.loads(path.read_text())
        cfg = RunConfig.from_dict(record["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a run record mtbench can read ({type(e).__name__}: {e})") from None
    if record.get("status") != "done":
        raise ValueError(f"run {record.get('run_id', run_dir.name)} did not finish (status "
                         f"{record.get('status')!r}): it has no final model to predict with")
    builder = DATASETS.get(cfg.dataset)
    info = builder.static_info(cfg.tasks, cfg.dataset_cfg)
    # the weights come from final.pt: the backbone's published file is not needed (nor read) here
    model, tasks, _ = build_model(replace(cfg, backbone_weights=None), info)
    state = checkpoint.load_weights(run_dir / "checkpoints", "cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{run_dir / 'checkpoints'} does not fit the model the record describes ({len(missing)} "
                         f"missing, {len(unexpected)} unexpected tensors, e.g. {(missing or unexpected)[0]}); was the "
                         f"method's code changed since the run?")
    model.to(device).eval()
    return Predictor(model, tasks, info, cfg, device)


def list_images(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: no such directory")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise FileNotFoundError(f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return images


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise OSError(f"{path}: not a readable image ({e})") from None


def predict_folder(predictor: Predictor, images: list[Path], out: Path,
                   on_image: Callable[[Path], None] | None = None) -> dict[str, int]:
    """Predict every image; returns files written per task."""
    from mtbench.report.colours import colourise

    counts = {t: 0 for t in predictor.tasks}
    for path in images:
        preds = predictor(read_rgb(path))
        for t, pred in preds.items():
            kind = predictor.tasks[t].prediction_kind
            if not kind:
                continue
            prediction_io.write(kind, pred, Path(out) / t / path.stem)
            rgb = colourise(kind, pred, dataset=predictor.cfg.dataset, task=t,
                            num_classes=int(predictor.info.num_classes.get(t, 0) or 0))
            atomic_write(Path(out) / PICTURES / t / f"{path.stem}.png",
                         lambda f, a=rgb: Image.fromarray(a).save(f, format="PNG"))
            counts[t] += 1
        if on_image:
            on_image(path)
    return counts
