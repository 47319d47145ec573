"""`bench.py` end to end on tiny fixtures written in the real NYUDv2 / PASCALContext formats."""
import json

from fixtures_real import write_nyud, write_pascal

from mtbench.cli import main

TINY = ["iterations=4", "batch_size=2", "checkpoint_every=100", "num_workers=0",
        "eval.edge_thresholds=3", "eval.edge_workers=1",
        "methods.baseline.head_channels=8", "methods.single.head_channels=8"]


def _argv(dataset, root, results, tasks, pad):
    argv = ["--methods", "baseline", "--dataset", dataset, "--data-dir", str(root), "--tasks", tasks,
            "--results", str(results), "--recipe", "smoke"]
    for o in TINY + [f"datasets.{dataset}.pad_size=[{pad[0]},{pad[1]}]"]:
        argv += ["--set", o]
    return argv


def test_nyud_fixture_runs_end_to_end(tmp_path):
    root = write_nyud(tmp_path / "data")
    assert main(_argv("nyud", root, tmp_path / "res", "semseg,depth,normals,edge", (64, 64))) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*/record.json")]
    base = next(r for r in recs if r["method"] == "baseline")
    assert base["status"] == "done" and base["dataset_info"]["image_size"] == [64, 64]
    assert set(base["metrics"]) == {"semseg", "depth", "normals", "edge"}
    # predictions were cropped back to the native 40x56 before saving
    from PIL import Image
    png = next((tmp_path / "res" / "runs" / base["run_id"] / "predictions" / "edge").glob("*.png"))
    assert Image.open(png).size == (56, 40)


def test_pascal_fixture_runs_end_to_end(tmp_path):
    root = write_pascal(tmp_path / "data")
    assert main(_argv("pascal", root, tmp_path / "res", "semseg,human_parts,sal", (64, 64))) == 0
    assert (tmp_path / "res" / "leaderboards" / "leaderboard.md").is_file()


def test_missing_data_dir_shows_the_layout(tmp_path, capsys):
    rc = main(["--methods", "baseline", "--dataset", "nyud", "--data-dir", str(tmp_path / "nope"),
               "--results", str(tmp_path / "res"), "--set", "iterations=1"])
    out = capsys.readouterr().out
    assert rc != 0
    assert "gt_sets" in out  # the expected layout is shown
