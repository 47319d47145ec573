"""Reference numbers of the released TaskPrompter for tests/test_method_taskprompter.py, methods/README.md.

Not a test and never imported by one: it runs the *released* code, unmodified, outside mtbench. How it was run:

    git -C <mirror of prismformore/Multi-Task-Transformer> archive 870c6be TaskPrompter | tar -x -C /tmp/tp
    pip install --target /tmp/tp/pylib einops==0.8.2 easydict==1.14
    RELEASE=/tmp/tp/TaskPrompter PYLIB=/tmp/tp/pylib .venv/bin/python tests/data/taskprompter_release/reference.py {params,flops,parity,unused}

(torch 2.14.1, timm 1.0.31, CPU.) The release's `_create_task_prompter` goes through timm 0.4's
`build_model_with_cfg(default_cfg=...)`, which timm 1.0 rejects; with pretrained=False that call only constructs
the class, so this script constructs `TaskPrompter` directly with the kwargs `taskprompter_vit_*_patch16_384` pass.
"""
import json
import os
import sys

sys.path[:0] = [os.environ.get("PYLIB", "/tmp/tp/pylib"), os.environ.get("RELEASE", "/tmp/tp/TaskPrompter"),
                os.path.join(os.path.dirname(__file__), "..", "..")]
import torch  # noqa: E402
from easydict import EasyDict as edict  # noqa: E402
from models.taskprompter_wrapper import TaskPrompterWrapper  # noqa: E402  (released, unmodified)
from models.transformers.taskprompter import ConvHead, TaskPrompter  # noqa: E402  (released, unmodified)

from deterministic_weights import det  # noqa: E402  (tests/deterministic_weights.py)

NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}  # utils/config.py NUM_OUTPUT, release task order
PASCAL = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}
VIT = {"L": dict(select_list=range(6, 24, 6), patch_size=16, embed_dim=1024, depth=24, num_heads=16),
       "B": dict(select_list=range(3, 12, 3), patch_size=16, embed_dim=768, depth=12, num_heads=12),
       "tiny": dict(select_list=range(3, 12, 3), patch_size=16, embed_dim=64, depth=12, num_heads=2)}
CONFIGS = {  # configs/{nyud,pascal}/*_taskprompter.yml; utils/config.py TRAIN.SCALE
    "nyud_vitL": (NYUD, "L", (448, 576), dict(embed_dim=768, final_embed_dim=768, chan_nheads=16, use_ctr=False)),
    "pascal_vitL": (PASCAL, "L", (512, 512), dict(embed_dim=300, final_embed_dim=350, chan_nheads=1, use_ctr=True)),
    "pascal_vitB": (PASCAL, "B", (512, 512), dict(embed_dim=780, final_embed_dim=1024, chan_nheads=16, use_ctr=True)),
}
PARITY = {  # the test's CASES
    "nyud": (NYUD, dict(embed_dim=32, final_embed_dim=48, chan_nheads=4, use_ctr=False, prompt_len=2)),
    "pascal": (PASCAL, dict(embed_dim=40, final_embed_dim=24, chan_nheads=1, use_ctr=True, prompt_len=1)),
}
HW = (64, 128)


def build(tasks, vit, img_size, embed_dim, final_embed_dim, chan_nheads, use_ctr, prompt_len=1, drop_path_rate=0.15):
    """utils/common_config.get_model: get_backbone (drop_path_rate 0.15, img_size TRAIN.SCALE) + ConvHead per task."""
    p = edict(embed_dim=embed_dim, final_embed_dim=final_embed_dim, prompt_len=prompt_len, chan_nheads=chan_nheads,
              use_ctr=use_ctr)
    p.TASKS = edict(NAMES=list(tasks), NUM_OUTPUT=dict(tasks))
    backbone = TaskPrompter(p=p, chan_nheads=chan_nheads, drop_path_rate=drop_path_rate, img_size=img_size, **VIT[vit])
    heads = torch.nn.ModuleDict({t: ConvHead(final_embed_dim, c) for t, c in tasks.items()})
    return TaskPrompterWrapper(p, backbone, heads)


def n(module):
    return sum(q.numel() for q in module.parameters())


def params():
    for name, (tasks, vit, size, cfg) in CONFIGS.items():
        m = build(tasks, vit, size, **cfg)  # on CPU: the constructor calls .item()
        bb = m.backbone
        vit_part = n(bb.patch_embed) + bb.pos_embed.numel() + n(bb.norm) + sum(
            n(b) - n(b.attn.token_trans) - n(b.attn.token_trans1) for b in bb.blocks)
        print(name, {"total": n(m), "vit_part": vit_part, "last_token_trans1": n(bb.blocks[-1].attn.token_trans1),
                     **{k: n(getattr(bb, k)) for k in ("fea_decode_spa", "fea_decode_chan", "fea_fuse", "ctr_attn_conv")
                        if hasattr(bb, k)}, "heads": n(m.heads)})


def flops():
    from torch.utils.flop_counter import FlopCounterMode

    for name, (tasks, vit, size, cfg) in CONFIGS.items():
        m = build(tasks, vit, size, **cfg).eval().to("meta").requires_grad_(False)
        with FlopCounterMode(display=False) as c:  # not under no_grad: the module tracker trips on expanded prompts
            m(torch.empty(1, 3, *size, device="meta"))
        print(name, "multiply-adds", c.get_total_flops() // 2)


def image():
    return torch.sin(torch.arange(2 * 3 * HW[0] * HW[1], dtype=torch.float64) * 0.731).mul(1.5).view(2, 3, *HW).float()


def cos_mean(x):
    x = x.double().flatten()
    return (x * torch.cos(torch.arange(x.numel(), dtype=torch.float64) * 0.01)).mean()


def stats(x):
    x = x.double().flatten()
    return [x.mean().item(), x.pow(2).mean().item(), cos_mean(x).item()]


def parity():
    out = {}
    for case, (tasks, cfg) in PARITY.items():
        m = build(tasks, "tiny", HW, drop_path_rate=0.0, **cfg)
        with torch.no_grad():
            for k, t in m.state_dict().items():
                if t.is_floating_point():
                    t.copy_(det(k, t.shape))
        res = {}
        for mode in ("eval", "train"):
            m.train(mode == "train").zero_grad()
            y = m(image())
            res[mode] = {t: stats(v) for t, v in y.items()}
        sum(cos_mean(v) for v in y.values()).backward()  # train mode's outputs
        res["grad"] = {"task_prompts": stats(m.backbone.task_prompts.grad),
                       "token_trans0": stats(m.backbone.blocks[0].attn.token_trans.weight.grad),
                       "qkv0": stats(m.backbone.blocks[0].attn.qkv.weight.grad)}
        out[case] = res
    print(json.dumps(out, indent=1))


def unused():
    for case, (tasks, cfg) in PARITY.items():
        m = build(tasks, "tiny", HW, drop_path_rate=0.0, **cfg).train()
        sum(v.pow(2).mean() for v in m(image()).values()).backward()
        print(case, "no gradient:", [k for k, q in m.named_parameters() if q.grad is None or not q.grad.abs().sum() > 0])


if __name__ == "__main__":
    for what in sys.argv[1:] or ["params", "flops", "parity", "unused"]:
        {"params": params, "flops": flops, "parity": parity, "unused": unused}[what]()
