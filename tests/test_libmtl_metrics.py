"""The LibMTL-convention tasks (semseg_libmtl, depth_libmtl, normals_libmtl) and Δm over all metrics, on values
worked out by hand from LibMTL examples/nyu/utils.py and Nash-MTL experiments/nyuv2/utils.py."""
import math

import pytest
import torch

from mtbench.data.base import IGNORE
from mtbench.leaderboard import build_tables, to_frame, to_markdown
from mtbench.registry import TASKS


def test_segmentation_pooled_confusion():
    ev = TASKS.get("semseg_libmtl").evaluator(_info(3), {})
    # gt [[0,0,1],[1,2,ignore]], pred [[0,1,1],[1,2,0]]: TP 1,2,1  FP 0,1,0  FN 1,0,0 (the ignored pixel is dropped)
    ev.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 0, 1]]))
    ev.update(torch.tensor([[1, 2, 0]]), torch.tensor([[1, 2, IGNORE]]))
    out = ev.compute()
    assert out["mIoU"] == pytest.approx(100 * (1 / 2 + 2 / 3 + 1) / 3)
    assert out["pixAcc"] == pytest.approx(80.0)  # 4 of 5 labelled pixels
    assert set(out) == {"mIoU", "pixAcc"}
    # a 4th class absent from targets and predictions: 0/0, left out of the mean (LibMTL: NaN)
    ev4 = TASKS.get("semseg_libmtl").evaluator(_info(4), {})
    ev4.update(torch.tensor([[0, 1, 1, 1, 2, 0]]), torch.tensor([[0, 0, 1, 1, 2, IGNORE]]))
    assert ev4.compute()["mIoU"] == pytest.approx(out["mIoU"])


def test_depth_abs_rel_pooled_over_pixels_not_batches():
    task = TASKS.get("depth_libmtl")
    ev = task.evaluator(None, {})
    # pred 1,2 | 3,5 against gt 2,0 | 1,4 (0 = invalid): errors 1, -, 2, 1; relative 1/2, -, 2/1, 1/4
    ev.update(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 0.0]]))
    ev.update(torch.tensor([[3.0, 5.0]]), torch.tensor([[1.0, 4.0]]))
    out = ev.compute()
    assert out == pytest.approx({"abs_err": 4 / 3, "rel_err": 2.75 / 3})  # MTAN's per-batch mean would be 1.25
    loss = task.loss(torch.tensor([[[[3.0, 5.0, 7.0]]]]), torch.tensor([[[1.0, 4.0, 0.0]]]))
    assert float(loss) == pytest.approx(1.5)  # (2 + 1) / 2 valid pixels


def test_normals_angles_and_loss():
    task = TASKS.get("normals_libmtl")
    s10, c10 = math.sin(math.radians(10)), math.cos(math.radians(10))
    pred = torch.tensor([[0, 0, 2.0], [1, 0, 1], [0, 1, 0], [s10, 0, c10], [1, 0, 0]]).T.reshape(1, 3, 1, 5)
    gt = torch.tensor([[0, 0, 1.0], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0.5, -0.5, 0]]).T.reshape(1, 3, 1, 5)
    ev = task.evaluator(None, {})
    ev.update(task.postprocess(pred), gt)
    out = ev.compute()
    # the 5th target's components sum to 0: invalid under LibMTL's mask. Angles 0, 45, 90, 10 degrees.
    assert out["mean"] == pytest.approx(36.25, abs=1e-5)  # float32 inputs
    assert out["median"] == pytest.approx(27.5, abs=1e-3)
    assert (out["a11.25"], out["a22.5"], out["a30"]) == pytest.approx((50.0, 50.0, 50.0))
    assert set(out) == {"mean", "median", "a11.25", "a22.5", "a30"}
    loss = task.loss(pred, gt)
    assert float(loss) == pytest.approx(1 - (1 + math.sqrt(0.5) + 0 + c10) / 4, abs=1e-6)


def _info(classes):
    from mtbench.data.base import DatasetInfo

    return DatasetInfo(name="x", tasks=("semseg_libmtl",), num_classes={"semseg_libmtl": classes})


def _rec(method, tasks, metrics, ref=False, seed=0):
    hib = {"semseg_libmtl": {"mIoU": True, "pixAcc": True}, "depth_libmtl": {"abs_err": False, "rel_err": False}}
    return {
        "run_id": f"{method}_{'+'.join(tasks)}_s{seed}", "status": "done", "method": method,
        "dataset": "cityscapes_mtan", "tasks": list(tasks), "backbone": "segnet", "seed": seed,
        "recipe_name": "cityscapes_mtan", "setting_key": "K", "single_task_reference": ref,
        "metrics": {t: metrics[t] for t in tasks},
        "primary_metrics": {"semseg_libmtl": "mIoU", "depth_libmtl": "abs_err"},
        "higher_is_better": {t: hib[t] for t in tasks},
        "delta_m": {"convention": "all", "metrics": {t: list(hib[t]) for t in tasks}},
        "trivial": {"semseg_libmtl": {"mIoU": 10.0, "pixAcc": 30.0}, "depth_libmtl": {"abs_err": 1.0, "rel_err": 0.4}},
        "params": {"total": 1_000_000}, "flops": {"gflops": 2.0},
    }


def test_delta_m_over_all_metrics_with_the_primary_beside():
    ref = {"semseg_libmtl": {"mIoU": 40.0, "pixAcc": 60.0}, "depth_libmtl": {"abs_err": 0.5, "rel_err": 0.2}}
    new = {"semseg_libmtl": {"mIoU": 44.0, "pixAcc": 57.0}, "depth_libmtl": {"abs_err": 0.45, "rel_err": 0.22}}
    tasks = ("semseg_libmtl", "depth_libmtl")
    recs = [_rec("single", (t,), ref, ref=True) for t in tasks] + [_rec("mtan", tasks, new)]
    (table,) = build_tables(recs)
    rows = {r["method"]: r for r in table.rows}
    # +10 % mIoU, −5 % pixAcc, +10 % abs_err (lower), −10 % rel_err (lower): flat mean 1.25 %;
    # Nash-MTL's delta_fn gives −1.25 (their sign: lower is better)
    assert rows["mtan"]["delta_m"][0] == pytest.approx(1.25)
    assert rows["mtan"]["delta_m_primary"][0] == pytest.approx(10.0)  # mIoU and abs_err only
    # trivial: (10−40)/40, (30−60)/60, −(1−0.5)/0.5, −(0.4−0.2)/0.2 → −75 %, −50 %, −100 %, −100 %
    assert rows["trivial (constant)"]["delta_m"][0] == pytest.approx(-81.25)
    assert "Δm over all 4 metrics" in table.title and table.convention == "all"
    md = to_markdown(table)
    assert "semseg_libmtl pixAcc ↑" in md and "depth_libmtl rel_err ↓" in md and "Δm primary % ↑" in md
    assert to_frame(table).loc[1, "delta_m_primary"] == pytest.approx(10.0)


def test_primary_tables_say_so_in_the_title():
    rec = _rec("single", ("depth_libmtl",), {"depth_libmtl": {"abs_err": 0.5, "rel_err": 0.2}}, ref=True)
    del rec["delta_m"]  # a record written before the convention existed
    (table,) = build_tables([rec])
    assert table.title.endswith("Δm over the primary metrics") and table.convention == "primary"
