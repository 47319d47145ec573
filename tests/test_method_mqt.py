"""MQTransformer (``mqt``, the released computation; ``mqt_spatial``, mtbench's windowed variant): shapes,
gradients, determinism, agreement with the released head's numbers, parameter parity with the released model,
data-parallel training with the dead modules, and the ``profile`` command that measures it."""
import argparse
import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from deterministic_weights import det
from methods.mqtransformer import batch_axis_attention, dead_parameter_names
from mtbench import engine
from mtbench.cli import profile as profile_cli
from mtbench.config import RunConfig, load_recipe
from mtbench.data.base import TASK_SETS, DatasetInfo
from mtbench.distributed import free_port
from mtbench.leaderboard import build_tables, to_markdown
from mtbench.registry import BACKBONES, DATASETS, METHODS

NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}
PASCAL = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}
NAMES = ("mqt", "mqt_spatial")
H, W = 30, 46  # not multiples of 4 or 32: exercises the backbone padding and the window padding
SMALL = {"embed_dim": 64, "num_heads": 2, "num_queries": 16}  # where the released widths only cost CPU time
NO_DROP = {"drop_path_encoder": 0.0, "drop_path_cross_task": 0.0, "drop_path_decoder": 0.0, "attn_drop_cross_task": 0.0}


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return BACKBONES.get("resnet18")(img_size=(H, W))


def build(backbone, channels=NYUD, name="mqt", **cfg):
    torch.manual_seed(0)
    return METHODS.get(name)(channels, backbone, cfg)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [NYUD, PASCAL], ids=["nyud", "pascal"])
def test_output_shapes_every_task_batch_1_and_2(resnet, channels, name):
    model = build(resnet, channels, name).eval()
    assert model.backbone is resnet
    for batch in (1, 2):
        with torch.no_grad():
            out = model(torch.randn(batch, 3, H, W))
        assert out["aux"] == {}
        shapes = {t: tuple(v.shape) for t, v in out["final"].items()}
        assert shapes == {t: (batch, c, H, W) for t, c in channels.items()}
        assert all(torch.isfinite(v).all() for v in out["final"].values())


@pytest.mark.parametrize("name", NAMES)
def test_loss_reaches_every_parameter_and_only_dead_modules_stay_without_grad(resnet, name):
    model = build(resnet, PASCAL, name, dead_modules=True, **NO_DROP).train()
    resnet.zero_grad(set_to_none=True)
    out = model(torch.randn(2, 3, H, W))
    sum(o.float().pow(2).mean() + o.mean() for o in out["final"].values()).backward()
    dead = dead_parameter_names(model)
    # released + dead_modules: patch_embed, rel_pos and the decoder's attn2 (1,313,728 parameters at Swin-L)
    assert {n.split(".")[0] if n.startswith("patch") else n.split(".")[4] for n in dead} == (
        {"patch_embed", "rel_pos"} | ({"attn2"} if name == "mqt" else set()))
    assert {n for n, p in model.named_parameters() if p.grad is None} == dead
    assert model.find_unused_parameters  # DDP must be told (see test_data_parallel_with_dead_modules)
    assert not build(resnet, PASCAL, name).find_unused_parameters
    # Every head parameter that trains gets a non-zero gradient (for mqt's batch-axis attention only the value
    # rows of in_proj: see the next test). (timm's resnet zero-inits each block's last BN, so some backbone
    # grads are exactly zero at random init: not checked for being non-zero.)
    zero = {n for n, p in model.named_parameters()
            if p.grad is not None and not n.startswith("backbone.") and not p.grad.abs().sum() > 0}
    assert zero == set()


def test_default_drop_paths_train_and_backpropagate(resnet):
    for name in NAMES:
        model = build(resnet, name=name, **SMALL).train()
        out = model(torch.randn(2, 3, H, W))
        sum(o.mean() for o in out["final"].values()).backward()
        assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("backbone."))


def test_released_attention_spans_groups_of_batch_attn_images(resnet):
    """Default (the released per-GPU batch of 1): an image's prediction is the same alone or in a batch, and the
    batch-axis attention's query/key weights get exactly zero gradient. ``batch_attn_images: null`` (the whole
    batch, the released call on any other per-GPU batch) mixes the images of a batch."""
    x = torch.randn(3, 3, H, W)
    for name, cfg, independent in [("mqt", {}, True), ("mqt_spatial", {}, True),
                                    ("mqt", {"batch_attn_images": None}, False)]:
        model = build(resnet, name=name, **cfg, **SMALL).eval()
        with torch.no_grad():
            alone, together = model(x[:1])["final"], model(x)["final"]
        same = all(torch.allclose(alone[t][0], together[t][0], atol=1e-5) for t in alone)
        assert same == independent, (name, cfg)
    d = SMALL["embed_dim"]
    for cfg, zero_qk in [({}, True), ({"batch_attn_images": None}, False)]:
        model = build(resnet, **cfg, **SMALL, **NO_DROP).train()
        sum(o.pow(2).mean() for o in model(x[:2])["final"].values()).backward()
        w = model.blocks[0].decoder[0].mhsa.in_proj_weight.grad
        assert (torch.count_nonzero(w[: 2 * d]) == 0) == zero_qk and torch.count_nonzero(w[2 * d:]) > 0


def test_batch_axis_attention_groups_equal_separate_calls():
    torch.manual_seed(0)
    mhsa = nn.MultiheadAttention(8, 2).eval()
    x = torch.randn(5, 6, 8)  # 5 images, 6 pixels
    with torch.no_grad():
        for g in (1, 2, 5, None):  # 2 does not divide 5: groups (0,1) (2,3) (4)
            parts = x.split(g or 5)
            want = torch.cat([mhsa(p, p, p)[0] for p in parts])
            torch.testing.assert_close(batch_axis_attention(mhsa, x, g), want, rtol=0, atol=1e-6)


class _Features(nn.Module):
    """A stand-in backbone returning fixed feature maps (the released head's test inputs)."""

    def __init__(self, feats):
        super().__init__()
        self.feats, self.channels = feats, [f.shape[1] for f in feats]

    def forward(self, images):
        return [f[: images.shape[0]] if images.shape[0] <= f.shape[0] else f for f in self.feats]


def _released_name(ours: str) -> str:
    """mtbench name -> released MQFormerHead state-dict key (methods/README.md, "Names vs. released keys")."""
    k = ours.replace("blocks.", "parts_query_encoder_decoder_blocks.", 1) if ours.startswith("blocks.") else ours
    k = k.replace(".encoder.0.", ".encoder1.").replace(".decoder.0.", ".decoder1.")
    if k.startswith("bottleneck."):
        k = k.replace(".0.", ".conv.").replace(".1.", ".bn.")
    return k


# Released MQFormerHead (yangyangxu0/MQTransformer eb9e5c4, src/model/heads/mqformer_head.py, base.py,
# utils_heads.py; unmodified, float32, eval mode) with every tensor set to det(released key, shape), NYUD tasks,
# idx_to_planes {0: 8, 1: 16, 2: 24, 3: 32}, features randn(2, C, h, w) from torch.Generator().manual_seed(0) at
# (12, 15), (6, 8), (3, 4), (2, 2), inp_shape (48, 60). Per task and image: [sum, sum |.|, out[0, 0, 5, 7],
# out[0, -1, 40, 50]]. "joint": both images in one forward (the released per-GPU batch 2); "alone": one each.
RELEASED_PARAMS = 4_262_701
RELEASED = {
    "joint": {"semseg": [[2367.188, 12533.66, 0.0750449, -0.02618737], [1402.51, 11954.4, 0.07073256, -0.05941537]],
              "depth": [[-509.3201, 509.3201, -0.2383747, -0.1190211], [-362.2934, 373.4249, -0.00635268, -0.1568872]],
              "normals": [[-819.9708, 1512.531, -0.10776, 0.1150928], [-953.8848, 1558.083, -0.1100853, 0.1035164]],
              "edge": [[302.5117, 313.7751, 0.1647406, 0.1228732], [244.2812, 246.5748, 0.02564022, 0.1394912]]},
    "alone": {"semseg": [[2300.616, 12401.45, 0.08457958, -0.007702757], [1508.937, 12224.04, 0.07088528, -0.06535859]],
              "depth": [[-548.6263, 548.6263, -0.2635411, -0.1385947], [-331.7153, 343.7096, -0.01229498, -0.1402463]],
              "normals": [[-801.0916, 1496.492, -0.120815, 0.1254042], [-978.2184, 1571.831, -0.1117647, 0.09933323]],
              "edge": [[304.1092, 313.7488, 0.1628632, 0.1154887], [237.6236, 243.2907, 0.0279032, 0.140754]]},
}


@pytest.mark.parametrize("cfg, which", [({}, "alone"), ({"batch_attn_images": 2}, "joint"),
                                        ({"batch_attn_images": None}, "joint")])
def test_matches_the_released_head(cfg, which):
    """Default mqt on a batch of 2 = the released head run on each image alone (its recipe's per-GPU batch);
    batch_attn_images 2 / null = the released head given both images in one forward."""
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, c, h, w, generator=g) for c, (h, w) in zip((8, 16, 24, 32), [(12, 15), (6, 8), (3, 4), (2, 2)])]
    model = METHODS.get("mqt")(NYUD, _Features(feats), {"dead_modules": True, **cfg}).eval()
    head = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    assert sum(v.numel() for k, v in head.items() if "running" not in k and "num_batches" not in k) == RELEASED_PARAMS
    model.load_state_dict({k: v if k.endswith("num_batches_tracked") else
                           det(_released_name(k), v.shape + (1,) if k.endswith("reason.linear.weight") else v.shape).view(v.shape)
                           for k, v in head.items()}, strict=False)
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 48, 60))["final"]
    for t, per_image in RELEASED[which].items():
        for i, (s, a, v0, v1) in enumerate(per_image):
            o = out[t][i:i + 1]
            got = [float(o.sum()), float(o.abs().sum()), float(o[0, 0, 5, 7]), float(o[0, -1, 40, 50])]
            assert got == pytest.approx([s, a, v0, v1], rel=2e-4, abs=2e-6), (t, i)


@pytest.mark.parametrize("name", NAMES)
def test_eval_forward_is_deterministic_at_batch_1(resnet, name):
    model = build(resnet, name=name, dead_modules=True).eval()
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        a, b = model(x)["final"], model(x)["final"]
    assert all(torch.equal(a[t], b[t]) for t in a)


def test_depth_and_queries_are_configurable(resnet):
    small = build(resnet, name="mqt_spatial", num_queries=16, encoder_layers=2, decoder_layers=2, num_blocks=2,
                  embed_dim=64, num_heads=2, head_channels=8, window_size=3).eval()
    with torch.no_grad():
        out = small(torch.randn(2, 3, H, W))["final"]
    assert out["semseg"].shape == (2, 40, H, W)
    assert len(small.blocks) == 2 and len(small.blocks[1].encoder) == 2 and len(small.blocks[0].decoder) == 2
    assert small.blocks[0].rpn_tokens[0].shape == (1, 16, 64) and small.blocks[0].rpn_kpos[0].shape == (1, 16, 1, 32)


def test_initialisation_as_released(resnet):
    model = build(resnet)
    logits = model.final_logits["semseg"]
    assert torch.count_nonzero(logits.bias) == 0 and 0.008 < logits.weight.std() < 0.012
    tok = model.blocks[0].rpn_tokens[0]
    assert 0.017 < tok.std() < 0.023 and tok.abs().max() <= 2.0


def test_bad_options_are_rejected_with_the_valid_ones(resnet):
    with pytest.raises(ValueError, match="valid options: .*batch_attn_images.*num_queries"):
        build(resnet, num_querys=32)
    with pytest.raises(ValueError, match="chosen by the method name: mqt = released"):
        build(resnet, decoder_self_attn="spatial")
    with pytest.raises(ValueError, match="window_size"):  # an mqt_spatial option, not an mqt one
        build(resnet, window_size=8)
    with pytest.raises(ValueError, match="batch_attn_images must be a positive integer or null"):
        build(resnet, batch_attn_images=0)


@pytest.fixture(scope="module")
def swin_l_meta():
    with torch.device("meta"):
        return BACKBONES.get("swin_l")(img_size=(425, 560), out_norms=True)


@pytest.mark.parametrize("name, cfg, head, total", [
    # the released model measured (shared/notes/reference-models.md): head 7,129,901, total 202,128,065,
    # with the released (mmseg) Swin-L's LayerNorms on its four outputs (backbone_cfg out_norms: true)
    ("mqt", {"dead_modules": True}, 7_129_901, 202_128_065),
    ("mqt", {}, 5_816_173, 200_814_337),  # minus the 1,313,728 parameters that never get a gradient
    ("mqt_spatial", {}, 5_816_941, 200_815_105),  # attn2's three LayerNorms replace the MHA's biases: +768
])
def test_parameter_counts_at_the_paper_configuration(swin_l_meta, name, cfg, head, total):
    with torch.device("meta"):
        model = METHODS.get(name)(NYUD, swin_l_meta, cfg)
    bb = sum(p.numel() for p in model.backbone.parameters())
    assert bb == 194_998_164  # the released Swin-L (reference note), its output norms included
    assert sum(p.numel() for p in model.parameters()) - bb == head
    assert sum(p.numel() for p in model.parameters()) == total


def test_the_record_note_reaches_the_leaderboard(resnet):
    """Each variant says in its record (via the engine) and under the leaderboard table what it computes."""
    notes = {name: build(resnet, name=name).record_notes for name in NAMES}
    assert "groups of 1 image in training and evaluation" in notes["mqt"][0]
    assert "validation batch 1 per GPU" in notes["mqt"][0] and "8x8 windows" in notes["mqt_spatial"][0]
    rec = {"status": "done", "dataset": "synthetic", "tasks": ["semseg"], "backbone": "resnet18", "seed": 0,
           "recipe_name": "smoke", "setting_key": "K", "single_task_reference": False, "primary_metrics": {"semseg": "mIoU"},
           "higher_is_better": {"semseg": {"mIoU": True}}, "trivial": {}, "params": {"total": 1}, "flops": None}
    recs = [{**rec, "run_id": n, "method": n, "method_notes": notes[n], "metrics": {"semseg": {"mIoU": 1.0}}} for n in NAMES]
    md = to_markdown(build_tables(recs)[0])
    assert f"- mqt: {notes['mqt'][0]}" in md and f"- mqt_spatial: {notes['mqt_spatial'][0]}" in md


def _ddp_worker(rank, world, port, run_dir, overrides):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = RunConfig("mqt", "synthetic", ("semseg", "depth"), "resnet18", 0, load_recipe("smoke", overrides))
        rec = engine.run(cfg, run_dir=Path(run_dir))
        if rank == 0:
            (Path(run_dir) / "rec.json").write_text(json.dumps(
                {k: rec[k] for k in ("status", "distributed", "method_notes", "iterations")}))
    finally:
        dist.destroy_process_group()


def test_data_parallel_with_dead_modules(tmp_path, tiny_overrides):
    """dead_modules: the released unused modules never feed the loss, so DDP must be told (issue 13.3)."""
    overrides = tiny_overrides + ["iterations=2", "checkpoint_every=100", f"datasets.synthetic.cache_dir={tmp_path / 'cache'}",
                                  "methods.mqt.dead_modules=true", "methods.mqt.embed_dim=32",
                                  "methods.mqt.num_queries=8", "methods.mqt.num_heads=2"]
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path / "run"), overrides), nprocs=2)
    rec = json.loads((tmp_path / "run" / "rec.json").read_text())
    assert rec["status"] == "done" and rec["iterations"] == 2
    assert rec["distributed"]["world_size"] == 2 and rec["distributed"]["find_unused_parameters"] is True
    assert "groups of 1 image" in rec["method_notes"][0]


def _args(argv):
    parser = argparse.ArgumentParser()
    profile_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_profile_prints_a_table_and_writes_one_json_per_method(tmp_path, capsys):
    argv = ["--methods", "baseline,mqt", "--results", str(tmp_path), "--steps", "1", "--device", "cpu",
            "--set", "datasets.synthetic.height=32", "--set", "datasets.synthetic.width=48",
            "--set", "methods.baseline.head_channels=16"]
    assert profile_cli.run(_args(argv)) == 0
    out = capsys.readouterr().out
    assert "GFLOPs" in out and "baseline" in out and "mqt" in out
    files = sorted((tmp_path / "profiles").glob("*.json"))
    assert [f.name.split("_")[0] for f in files] == ["baseline", "mqt"]
    rec = json.loads(files[1].read_text())
    assert rec["image_size"] == [32, 48] and rec["task_channels"]["semseg"] > 1
    assert rec["params"]["total"] == rec["params"]["backbone"] + rec["params"]["head"] > 0
    assert rec["flops"]["gflops"] == pytest.approx(2 * rec["flops"]["gmacs"]) and rec["flops"]["gmacs"] > 0
    for phase in ("train", "eval"):
        assert rec[phase]["images_per_s"] > 0 and rec[phase]["peak_memory"]["mb"] > 0


def test_profile_meta_only_uses_the_datasets_static_info(tmp_path, monkeypatch, capsys):
    """A stand-in for the NYUD builder (being written elsewhere): only ``static_info`` is used."""
    def fake_nyud(split, tasks, cfg=None):
        raise AssertionError("profiling must not read data")

    fake_nyud.default_tasks = TASK_SETS["nyud"]
    fake_nyud.static_info = lambda tasks, cfg=None: DatasetInfo(
        name="nyud", tasks=tuple(tasks), num_classes={"semseg": 40}, image_size=(425, 560))
    real_get = DATASETS.get
    monkeypatch.setattr(DATASETS, "get", lambda name: fake_nyud if name == "nyud" else real_get(name))
    argv = ["--methods", "mqt", "--dataset", "nyud", "--backbone", "swin_l", "--meta-only", "--results", str(tmp_path),
            "--set", "methods.mqt.dead_modules=true"]
    assert profile_cli.run(_args(argv)) == 0
    rec = json.loads(next((tmp_path / "profiles").glob("mqt_nyud_*_meta.json")).read_text())
    assert rec["params"]["head"] == 7_129_901 and rec["task_channels"] == NYUD and "flops" not in rec
    assert "mqt" in capsys.readouterr().out
