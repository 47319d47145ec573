"""``eval-boundary`` on SBD-format ground truth: a fixture written here in the exact SBD layout
(``GTcls`` / ``GTinst`` structs, sparse boundary cells, uint8 maps, via scipy.io.savemat), and the
SBD bench of haruishi43/py-edge-eval (tests/data/sbd_bench) end to end against MATLAB."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image
from skimage.morphology import thin as skimage_thin

from mtbench.cli.eval_boundary import add_arguments, run

REPO = Path(__file__).resolve().parents[1]
SBD_BENCH = Path(__file__).parent / "data" / "sbd_bench"
H, W = 60, 80  # diagonal 100 px: --max-dist 0.05 is a 5 px tolerance and kill buffer
PERSON, DOG = 15, 12


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(list(argv)))


def _outline(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[[r0, r1], c0:c1 + 1] = True
    m[r0:r1 + 1, [c0, c1]] = True
    return m


def _box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[r0:r1 + 1, c0:c1 + 1] = True
    return m


def _cell(maps: list[np.ndarray]) -> np.ndarray:
    cell = np.empty((len(maps), 1), dtype=object)
    for k, m in enumerate(maps):
        cell[k, 0] = scipy.sparse.csc_matrix(m)
    return cell


PERSON_A, PERSON_B, DOG_BOX = (10, 29, 20, 49), (40, 52, 5, 15), (40, 55, 60, 75)
CLUTTER = (20, slice(28, 42))  # 14 px inside person A, >= 8 px from its outline: killed at 5 px


def write_fixture(root: Path) -> None:
    """Two persons and a dog; predictions: person A's outline (0.9) plus clutter inside it (0.6)."""
    (root / "cls").mkdir(parents=True)
    (root / "inst").mkdir()
    seg = np.zeros((H, W), np.uint8)
    inst = np.zeros((H, W), np.uint8)
    for k, (box, cls) in enumerate(((PERSON_A, PERSON), (PERSON_B, PERSON), (DOG_BOX, DOG)), start=1):
        seg[_box(*box)] = cls
        inst[_box(*box)] = k
    cls_bounds = [np.zeros((H, W), bool) for _ in range(20)]
    cls_bounds[PERSON - 1] = _outline(*PERSON_A) | _outline(*PERSON_B)
    cls_bounds[DOG - 1] = _outline(*DOG_BOX)
    gt_cls = {"Boundaries": _cell(cls_bounds), "Segmentation": seg,
              "CategoriesPresent": np.array([[DOG], [PERSON]], np.uint8)}
    gt_inst = {"Segmentation": inst, "Boundaries": _cell([_outline(*PERSON_A), _outline(*PERSON_B), _outline(*DOG_BOX)]),
               "Categories": np.array([[PERSON], [PERSON], [DOG]], np.uint8)}
    scipy.io.savemat(root / "cls" / "img.mat", {"GTcls": gt_cls})
    scipy.io.savemat(root / "inst" / "img.mat", {"GTinst": gt_inst})
    pred = np.zeros((H, W), np.uint8)
    pred[_outline(*PERSON_A)] = 230
    pred[CLUTTER] = 153
    for kind in ("png", "npy", "mat"):
        (root / kind).mkdir()
    Image.fromarray(pred).save(root / "png" / "img.png")
    np.save(root / "npy" / "img.npy", pred / 255.0)
    scipy.io.savemat(root / "mat" / "img.mat", {"edge": pred})


# Outline pixels of person A (20 x 30 box) and B (13 x 11), clutter pixels. Thinning the predicted
# outline of A cuts its four corners (each joins its two neighbours, which also touch diagonally).
N_A, N_B, N_CLUTTER = 2 * 30 + 2 * 18, 2 * 11 + 2 * 11, 14
N_A_THIN = N_A - 4


@pytest.fixture
def sbd(tmp_path):
    write_fixture(tmp_path)
    return tmp_path


def _result(sbd: Path, out: str, *extra: str, pred: str = "png", gt: str = "cls") -> dict:
    assert _cli("--pred", str(sbd / pred), "--gt", str(sbd / gt), "--dataset", "sbd", "--class", str(PERSON),
                "--max-dist", "0.05", "--workers", "1", "--out", str(sbd / out), *extra) == 0
    return json.loads((sbd / out).read_text())


def test_class_ground_truth_and_kill_internal(sbd):
    # sbd protocol: GT = GTcls.Boundaries{15} = both person outlines. Up to threshold 0.6 the
    # clutter is predicted too; kill_internal drops it, as it lies inside person A, 8 px from
    # its outline. Recall counts person A's outline only.
    assert skimage_thin(_outline(*PERSON_A)).sum() == N_A_THIN
    res = _result(sbd, "kill.json")
    assert res["kill_internal"] and res["max_dist"] == 0.05 and len(res["thr"]) == 99
    assert res["R"][0] == pytest.approx(N_A_THIN / (N_A + N_B)) and res["P"][0] == 1.0
    res = _result(sbd, "nokill.json", "--no-kill-internal")
    assert not res["kill_internal"] and res["P"][0] == pytest.approx(N_A_THIN / (N_A_THIN + N_CLUTTER))
    assert res["P"][60] == 1.0  # threshold 0.61: the clutter (0.6) is gone


def test_prediction_formats_agree(sbd):
    ref = _result(sbd, "png.json")
    for kind in ("npy", "mat"):
        res = _result(sbd, f"{kind}.json", pred=kind)
        assert (res["ods_f"], res["ois_f"], res["ap"], res["R"], res["P"]) == (
            ref["ods_f"], ref["ois_f"], ref["ap"], ref["R"], ref["P"])


def test_instance_ground_truth(sbd):
    res = _result(sbd, "inst.json", gt="inst")  # GTinst: the union of the class's instance outlines
    assert res["R"][0] == pytest.approx(N_A_THIN / (N_A + N_B)) and res["P"][0] == 1.0


def test_seism_protocol_on_sbd_labels(sbd):
    # SEISM reads the class map (thin(seg2bmap)) and kills before thinning: the clutter goes too.
    kill = _result(sbd, "seism.json", "--edge-protocol", "seism", "--no-nms")
    keep = _result(sbd, "seism_nokill.json", "--edge-protocol", "seism", "--no-nms", "--no-kill-internal")
    assert kill["edge_protocol"] == "seism" and len(kill["thr"]) == 101
    assert kill["P"][1] > keep["P"][1]


def test_missing_class_is_one_line(sbd, capsys):
    assert _cli("--pred", str(sbd / "png"), "--gt", str(sbd / "cls"), "--dataset", "sbd", "--workers", "1") == 2
    err = capsys.readouterr().err.strip()
    assert "--class" in err and len(err.splitlines()) == 1


def test_bench_cli_prints_protocol_thresholds_and_max_dist(sbd):
    proc = subprocess.run([sys.executable, str(REPO / "bench.py"), "eval-boundary", "--pred", str(sbd / "mat"),
                           "--gt", str(sbd / "cls"), "--dataset", "sbd", "--class", str(PERSON), "--max-dist", "0.05",
                           "--workers", "1"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "protocol sbd" in proc.stdout and "99 thresholds" in proc.stdout and "maxDist 0.05" in proc.stdout
    help_text = subprocess.run([sys.executable, str(REPO / "bench.py"), "eval-boundary", "--help"],
                               capture_output=True, text=True, cwd=REPO, timeout=300).stdout
    for option in ("--edge-protocol", "--class", "--max-dist", "--kill-internal"):
        assert option in help_text


def test_sbd_bench_end_to_end(tmp_path):
    """MATLAB's SBD benchmark output: kill_internal and thinning reproduce its sumP exactly; the
    exact matching differs from CSA's by a pixel at a few thresholds (see boundary_match)."""
    assert _cli("--pred", str(SBD_BENCH / "pred"), "--gt", str(SBD_BENCH / "cls"), "--dataset", "sbd", "--class", "15",
                "--workers", "1", "--out", str(tmp_path / "res.json")) == 0
    res = json.loads((tmp_path / "res.json").read_text())
    ref = np.loadtxt(SBD_BENCH / "outdir" / "eval_bdry.txt")
    assert abs(res["ods_f"] - ref[3]) < 5e-4 and abs(res["ois_f"] - ref[6]) < 5e-4 and abs(res["ap"] - ref[7]) < 5e-4
