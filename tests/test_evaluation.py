"""Evaluation plumbing: padding is cropped away before scoring; id subsets restrict scoring."""
import pytest
import torch

from mtbench.data.base import DatasetInfo
from mtbench.evaluation import evaluate, native_crop
from mtbench.registry import TASKS

INFO = DatasetInfo(name="t", tasks=("semseg",), num_classes={"semseg": 2}, image_size=(4, 4))


def _batch(ids, target, meta_extra=None):
    metas = [{"id": i, "size": (2, 2), "offset": (1, 1), **(meta_extra or {})} for i in ids]
    return {"image": torch.zeros(len(ids), 3, 4, 4), "semseg": target, "meta": metas}


def _predict_class1(images):
    logits = torch.zeros(images.shape[0], 2, 4, 4)
    logits[:, 1] = 1.0
    return {"semseg": logits}


def test_native_crop_uses_offset_and_size():
    x = torch.arange(16).view(4, 4)
    assert native_crop(x, {"size": (2, 3), "offset": (1, 0)}).tolist() == [[4, 5, 6], [8, 9, 10]]


def test_padding_is_not_scored_and_subsets_restrict_images():
    # Native 2x2 block at offset (1,1); the padding ring is labelled 0 (not 255) on purpose: if it were
    # scored, class 0 would get false negatives. Image a: native all 1; image b: native all 0.
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3] = 1
    tasks = {"semseg": TASKS.get("semseg")}
    res = evaluate(_predict_class1, [_batch(["a", "b"], target)], tasks, INFO, {}, torch.device("cpu"))
    # class 1: TP 4 (a), FP 4 (b) -> IoU 50 %; class 0: TP 0, FN 4 -> IoU 0 -> mIoU 25 %
    assert res["semseg"]["mIoU"] == pytest.approx(25.0)
    res = evaluate(_predict_class1, [_batch(["a", "b"], target)], tasks, INFO, {}, torch.device("cpu"),
                   eval_ids={"semseg": frozenset({"a"})})
    # only image a: class 1 IoU 100 %, class 0 absent -> 0 -> mIoU 50 %
    assert res["semseg"]["mIoU"] == pytest.approx(50.0)
