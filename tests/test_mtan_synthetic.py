"""The synthetic stand-ins of nyuv2_mtan / cityscapes_mtan: same tasks, resolution, classes, image range, Δm
convention; and a tiny grid through the CLI."""
from __future__ import annotations

import json

import numpy as np
import torch

from mtbench.data import scenes, synthetic, synthetic_mtan
from mtbench.registry import DATASETS


def test_stand_ins_mirror_the_real_settings(tmp_path):
    from mtbench.data import cityscapes_mtan, nyuv2_mtan

    cfg = {"n_train": 2, "n_val": 1, "cache_dir": str(tmp_path)}
    for name, real in (("synthetic_nyuv2_mtan", nyuv2_mtan), ("synthetic_cityscapes_mtan", cityscapes_mtan)):
        build = DATASETS.get(name)
        ds = build("train", build.default_tasks, cfg)
        info, real_info = ds.info, real.dataset_info(real.TASKS)
        assert build.default_tasks == real.TASKS and info.image_size == real_info.image_size
        assert info.num_classes == real_info.num_classes and info.delta_m == "all"
        s = ds[0]
        assert s["image"].shape == (3, *info.image_size) and 0 <= s["image"].min() and s["image"].max() <= 1
        assert s["semseg_libmtl"].dtype == torch.int64 and int(s["semseg_libmtl"].max()) < info.num_classes[
            "semseg_libmtl"]
    # NYUv2-like: the four walls are four classes; Cityscapes-like: inverse depth
    arrays = synthetic.load_or_render("val", 1, 128, 256, 0, tmp_path)
    sem, inst = arrays["semseg"][0], arrays["instance"][0]
    lab = synthetic_mtan.labels("synthetic_nyuv2_mtan", sem, inst)
    wall = scenes.CLASS_NAMES.index("wall")
    for k, i in enumerate((-3, -4, -5, -6)):
        assert (lab[inst == i] == (wall if k == 0 else 10 + k - 1)).all()
    assert (lab[sem != wall] == sem[sem != wall]).all()
    city = DATASETS.get("synthetic_cityscapes_mtan")("val", ("depth_libmtl",), cfg)[0]
    np.testing.assert_allclose(city["depth_libmtl"].numpy(), 1.0 / arrays["depth"][0], rtol=1e-5)


def test_stand_in_grid_runs_on_the_cpu(tmp_path):
    from mtbench.cli import main

    argv = ["--dataset", "synthetic_cityscapes_mtan", "--methods", "mtan", "--results", str(tmp_path / "res")]
    for o in ["iterations=1", "batch_size=2", "backbone_cfg.segnet_filters=[4,8,8,8,8]",
              "datasets.synthetic_cityscapes_mtan.n_train=2", "datasets.synthetic_cityscapes_mtan.n_val=1",
              f"datasets.synthetic_cityscapes_mtan.cache_dir={tmp_path / 'cache'}"]:
        argv += ["--set", o]
    assert main(argv) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*/record.json")]
    assert sorted((r["method"], r["backbone"]) for r in recs) == [("mtan", "segnet"), ("single", "segnet"),
                                                                   ("single", "segnet")]
    assert all(r["recipe_name"] == "smoke_cityscapes_mtan" for r in recs)
    assert "Δm over all 4 metrics" in (tmp_path / "res" / "leaderboards" / "leaderboard.md").read_text()
