"""MQTransformer (``mqt``): shapes, gradients, determinism, the released quirks, parameter parity with the
released model, and the ``profile`` command that measures it."""
import argparse
import json

import pytest
import torch

from methods.mqtransformer import DEFAULTS, dead_parameter_names
from mtbench.cli import profile as profile_cli
from mtbench.data.base import TASK_SETS, DatasetInfo
from mtbench.registry import BACKBONES, DATASETS, METHODS

NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}
PASCAL = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}
MODES = ("released", "spatial", "none")
H, W = 30, 46  # not multiples of 4 or 32: exercises the backbone padding and the window padding
NO_DROP = {"drop_path_encoder": 0.0, "drop_path_cross_task": 0.0, "drop_path_decoder": 0.0, "attn_drop_cross_task": 0.0}


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return BACKBONES.get("resnet18")(img_size=(H, W))


def build(backbone, channels=NYUD, **cfg):
    torch.manual_seed(0)
    return METHODS.get("mqt")(channels, backbone, cfg)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels", [NYUD, PASCAL], ids=["nyud", "pascal"])
def test_output_shapes_every_task_batch_1_and_2(resnet, channels, mode):
    model = build(resnet, channels, decoder_self_attn=mode).eval()
    assert model.backbone is resnet
    for batch in (1, 2):
        with torch.no_grad():
            out = model(torch.randn(batch, 3, H, W))
        assert out["aux"] == {}
        shapes = {t: tuple(v.shape) for t, v in out["final"].items()}
        assert shapes == {t: (batch, c, H, W) for t, c in channels.items()}
        assert all(torch.isfinite(v).all() for v in out["final"].values())


@pytest.mark.parametrize("mode", MODES)
def test_loss_reaches_every_parameter_and_only_dead_modules_stay_without_grad(resnet, mode):
    model = build(resnet, PASCAL, decoder_self_attn=mode, dead_modules=True, **NO_DROP).train()
    resnet.zero_grad(set_to_none=True)
    out = model(torch.randn(2, 3, H, W))
    sum(o.float().pow(2).mean() + o.mean() for o in out["final"].values()).backward()
    dead = dead_parameter_names(model)
    # released + dead_modules: patch_embed, rel_pos and the decoder's attn2 (1,313,728 parameters at Swin-L)
    assert {n.split(".")[0] if n.startswith("patch") else n.split(".")[4] for n in dead} == (
        {"patch_embed", "rel_pos"} | ({"attn2"} if mode != "spatial" else set()))
    assert {n for n, p in model.named_parameters() if p.grad is None} == dead
    # Every head parameter that trains gets a non-zero gradient. (timm's resnet zero-inits each block's
    # last BN, so some backbone grads are exactly zero at random init: not checked for being non-zero.)
    zero = {n for n, p in model.named_parameters()
            if p.grad is not None and not n.startswith("backbone.") and not p.grad.abs().sum() > 0}
    assert zero == set()


def test_default_drop_paths_train_and_backpropagate(resnet):
    model = build(resnet).train()
    out = model(torch.randn(2, 3, H, W))
    sum(o.mean() for o in out["final"].values()).backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("backbone."))


def test_released_self_attention_mixes_images_and_trains_no_query_key_at_batch_1(resnet):
    x = torch.randn(2, 3, H, W)
    for mode in MODES:
        model = build(resnet, decoder_self_attn=mode).eval()
        with torch.no_grad():
            alone, together = model(x[:1])["final"], model(x)["final"]
        same = all(torch.allclose(alone[t][0], together[t][0], atol=1e-5) for t in alone)
        assert same == (mode != "released"), mode  # released: an image's prediction depends on its batch
    model = build(resnet, decoder_self_attn="released", **NO_DROP).train()
    sum(o.pow(2).mean() for o in model(x[:1])["final"].values()).backward()
    w = model.blocks[0].decoder[0].mhsa.in_proj_weight.grad
    d = DEFAULTS["embed_dim"]
    assert torch.count_nonzero(w[: 2 * d]) == 0 and torch.count_nonzero(w[2 * d:]) > 0


@pytest.mark.parametrize("mode", MODES)
def test_eval_forward_is_deterministic_at_batch_1(resnet, mode):
    model = build(resnet, decoder_self_attn=mode, dead_modules=True).eval()
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        a, b = model(x)["final"], model(x)["final"]
    assert all(torch.equal(a[t], b[t]) for t in a)


def test_depth_and_queries_are_configurable(resnet):
    small = build(resnet, num_queries=16, encoder_layers=2, decoder_layers=2, num_blocks=2, embed_dim=64,
                  num_heads=2, head_channels=8, window_size=3).eval()
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
    with pytest.raises(ValueError, match="valid options: .*decoder_self_attn.*num_queries"):
        build(resnet, num_querys=32)
    with pytest.raises(ValueError, match="released, spatial, none"):
        build(resnet, decoder_self_attn="global")


@pytest.fixture(scope="module")
def swin_l_meta():
    with torch.device("meta"):
        return BACKBONES.get("swin_l")(img_size=(425, 560))


@pytest.mark.parametrize("cfg, head, total", [
    # the released model measured: head 7,129,901, total 202,128,065 (its Swin-L has 5,760 more parameters:
    # LayerNorms on the four outputs, which timm's feature extractor does not have)
    ({"decoder_self_attn": "released", "dead_modules": True}, 7_129_901, 202_128_065),
    ({"decoder_self_attn": "released"}, 5_816_173, 200_814_337),  # minus the 1,313,728 dead parameters
    ({}, 5_816_941, 200_814_337),  # default (spatial): attn2's three LayerNorms replace the MHA's biases, +768
])
def test_parameter_counts_at_the_paper_configuration(swin_l_meta, cfg, head, total):
    with torch.device("meta"):
        model = METHODS.get("mqt")(NYUD, swin_l_meta, cfg)
    bb = sum(p.numel() for p in model.backbone.parameters())
    n = sum(p.numel() for p in model.parameters())
    assert n - bb == head  # exact: the head is ours
    assert abs(n - bb - head) / head < 0.02 and abs(n - total) / total < 0.02


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
            "--set", "methods.mqt.decoder_self_attn=released", "--set", "methods.mqt.dead_modules=true"]
    assert profile_cli.run(_args(argv)) == 0
    rec = json.loads(next((tmp_path / "profiles").glob("mqt_nyud_*_meta.json")).read_text())
    assert rec["params"]["head"] == 7_129_901 and rec["task_channels"] == NYUD and "flops" not in rec
    assert "mqt" in capsys.readouterr().out
