"""Edge evaluation protocols: the boundary scores exactly as each released evaluation computed them.

The multi-task papers do not all score boundaries alike, and the differences move odsF by points:

``seism``   SEISM (github.com/jponttuset/seism) with ``read_one_cont_png``, as ATRC, InvPT,
            TaskPrompter and MQTransformer (which builds on ATRC and quotes InvPT's numbers in its
            tables) evaluate NYUD-v2 and PASCAL-Context; see InvPT/README.md in
            prismformore/Multi-Task-Transformer and prismformore/Boundary-Detection-Evaluation-Tools
            (``eval_edge_nyud.py`` passes ``@read_one_cont_png``, MATLAB R2015b). Structured-edge NMS
            (``edgesNmsMex(E, O, 1, 5, 1.01)``), the 101 thresholds of ``parameters/HED.txt``, edge
            where the NMS output is strictly greater than the threshold, thinning; ground truth is
            read as a label map whose boundaries are ``thin(seg2bmap(.))`` (``edgesEvalImg``); ODS is
            the plain maximum over thresholds (``general_ods``); AP keeps the first of repeated
            recalls (MATLAB's ``unique`` since R2013a, ``general_ap``); an empty map has P = 1; OIS
            takes each image's best threshold by its F as written to the results file (``%f``).
``mtinet``  MTI-Net's public evaluation (SimonVandenhende/Multi-Task-Learning-PyTorch,
            ``evaluation/eval_edge.py`` + ``evaluation/seism/read_one_png.m``): SEISM without NMS,
            99 thresholds 0.01 ... 0.99, edge where prob >= threshold; otherwise as ``seism``.
``bsds``    The BSDS500 benchmark (``boundaryBench``, ``collect_eval_bdry``): no NMS, n uniform
            thresholds (99 by default), prob >= max(eps, threshold), annotators' boundary maps as
            given; ODS interpolated between thresholds (``maxF``); AP keeps the last of repeated
            recalls, which is what the MATLAB output of the SBD bench in haruishi43/py-edge-eval
            (``data/SBD_bench/outdir``) corresponds to; an empty map has P = 0.
``sbd``     The SBD benchmark (Hariharan et al. 2011) on one class: ``bsds`` with the class
            boundaries ``GTcls.Boundaries{c}`` and kill_internal applied to the thinned map.

kill_internal (SEISM's ``kill_internal_bdries``, used for SBD): predicted pixels inside the class's
own segment and farther than maxDist x diagonal from its boundary are dropped, so that contours of
object parts do not count as false positives. SEISM drops them from the binary map before thinning
and measures the distance to ``seg2bmap(mask)``; the SBD benchmark drops them after thinning and
measures the distance to the class boundary map (this reproduces the SBD bench's sumP exactly).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from mtbench.metrics.boundary_thin import thin



@dataclass(frozen=True)
class EdgeProtocol:
    name: str
    reproduces: str
    nms: bool
    thresholds: str | int  # "hed" (SEISM's HED.txt), "mtinet" (0.01..0.99), or n uniform thresholds
    strict: bool  # edge where prob > thr (SEISM's read_one_cont_png); else prob >= max(eps, thr)
    interpolated_ods: bool  # BSDS maxF between thresholds; else the best threshold itself
    ap_last_tie: bool  # AP keeps the last of repeated recall values; else the first
    seism_empty: bool  # SEISM's P/R for empty maps (P = 1 without predictions); else BSDS's (0)
    gt_from_labels: bool  # ground truth is a label map, boundaries = thin(seg2bmap(.))
    kill_thinned: bool  # kill_internal on the thinned map (SBD benchmark); else before thinning
    printed_image_f: bool  # OIS picks each image's threshold by F as SEISM writes it ('%f', 6 decimals)


PROTOCOLS: dict[str, EdgeProtocol] = {
    "seism": EdgeProtocol("seism", "SEISM read_one_cont_png (ATRC, InvPT, TaskPrompter, MQTransformer)",
                          nms=True, thresholds="hed", strict=True, interpolated_ods=False,
                          ap_last_tie=False, seism_empty=True, gt_from_labels=True, kill_thinned=False,
                          printed_image_f=True),
    "mtinet": EdgeProtocol("mtinet", "MTI-Net's released SEISM script (read_one_png, no NMS)",
                           nms=False, thresholds="mtinet", strict=False, interpolated_ods=False,
                           ap_last_tie=False, seism_empty=True, gt_from_labels=True, kill_thinned=False,
                           printed_image_f=True),
    "bsds": EdgeProtocol("bsds", "BSDS500 benchmark (boundaryBench)", nms=False, thresholds=99, strict=False,
                         interpolated_ods=True, ap_last_tie=True, seism_empty=False, gt_from_labels=False,
                         kill_thinned=True, printed_image_f=False),
    "sbd": EdgeProtocol("sbd", "SBD class-wise benchmark (Hariharan et al.)", nms=False, thresholds=99,
                        strict=False, interpolated_ods=True, ap_last_tie=True, seism_empty=False,
                        gt_from_labels=False, kill_thinned=True, printed_image_f=False),
}
DEFAULT_PROTOCOL = "seism"  # what the NYUD/PASCAL tables of InvPT and MQTransformer used


def get_protocol(protocol: str | EdgeProtocol) -> EdgeProtocol:
    if isinstance(protocol, EdgeProtocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown edge protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def mtinet_thresholds() -> np.ndarray:
    """MTI-Net writes ``'%.2f' % v`` for v in np.arange(0.01, 1.00, 0.01): 0.01 ... 0.99."""
    return np.round(np.arange(1, 100) * 0.01, 2)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """BSDS/SEISM ``seg2bmap``: pixels whose label differs from the right, lower or lower-right
    neighbour (last row: right only; last column: lower only; corner never)."""
    seg = np.asarray(seg)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg != e) | (seg != s) | (seg != se)
    b[-1, :] = seg[-1, :] != e[-1, :]
    b[:, -1] = seg[:, -1] != s[:, -1]
    b[-1, -1] = False
    return b


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """Ground-truth boundaries as SEISM's ``edgesEvalImg`` derives them from a label map."""
    return thin(seg2bmap(labels))


def kill_mask(segment: np.ndarray, boundary: np.ndarray, max_dist: float) -> np.ndarray:
    """``kill_internal_bdries``: pixels of ``segment`` farther than maxDist x diagonal from ``boundary``."""
    h, w = segment.shape
    buffer = max_dist * np.sqrt(h * h + w * w)
    if not boundary.any():
        return np.asarray(segment, dtype=bool).copy()
    return (distance_transform_edt(~np.asarray(boundary, dtype=bool)) > buffer) & np.asarray(segment, dtype=bool)
