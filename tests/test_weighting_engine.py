"""Weighting strategies in the engine and the grid: where the aggregate goes, rep mode, resume, records, run ids,
bad input, the CLI grid and its leaderboard rows."""
import json
import sys
from pathlib import Path

import pytest
import torch

from mtbench import engine
from mtbench.cli import main
from mtbench.config import ConfigError, RunConfig, load_recipe
from mtbench.launch import GridSpec, expand_grid
from mtbench.leaderboard import build_tables
from mtbench.registry import WEIGHTINGS
from mtbench.train_log import read_log
from mtbench.weighting import Combiner, StrategyFailure, strategy_options

sys.path.insert(0, str(Path(__file__).parent))
from weighting_model import TinyMTL  # noqa: E402  (registers the _test_wmtl method)

TASKS = ("semseg", "depth", "normals", "edge")
CHANNELS = {"semseg": 3, "depth": 1, "normals": 3, "edge": 1}
SMALL = ["iterations=6", "batch_size=2", "checkpoint_every=2", "num_workers=0", "datasets.synthetic.n_train=6",
         "datasets.synthetic.n_val=2", "datasets.synthetic.height=32", "datasets.synthetic.width=48",
         "eval.edge_thresholds=3", "eval.edge_workers=1", "methods.single.head_channels=8"]


def _combiner(name, tasks, model, **options):
    opts = strategy_options(name, {"weighting": {name: options}})
    return Combiner(name, opts, list(tasks), model, model.backbone, {"n_train": 4, "batch_size": 2})


def _losses(model, tasks, x):
    out = model(x)["final"]
    return {t: (out[t] - 0.3 * (i + 1)).pow(2).mean() * (i + 1) for i, t in enumerate(tasks)}


def test_run_ids_stay_as_they_were_and_change_only_with_what_changes_a_run():
    base = load_recipe("smoke")
    cfg = RunConfig("baseline", "synthetic", TASKS, "resnet18", 0, base)
    papers = load_recipe("smoke", ["loss_weights.edge=50", "loss_weights.normals=10.0"])
    assert RunConfig("baseline", "synthetic", TASKS, "resnet18", 0, papers).run_id == cfg.run_id
    edge25 = load_recipe("smoke", ["loss_weights.edge=25"])
    mt25, ref25 = (RunConfig(m, "synthetic", t, "resnet18", 0, edge25) for m, t in
                   (("baseline", TASKS), ("single", ("semseg",))))
    assert mt25.run_id != cfg.run_id
    assert ref25.run_id == RunConfig("single", "synthetic", ("semseg",), "resnet18", 0, base).run_id
    assert ref25.setting_key == mt25.setting_key != cfg.setting_key  # one table: the refs Δm needs
    cagrad = RunConfig("baseline", "synthetic", TASKS, "resnet18", 0, base, weighting="cagrad")
    assert cagrad.run_id.startswith("baseline-cagrad_synthetic_") and cagrad.setting_key == cfg.setting_key
    same = load_recipe("smoke", ["weighting.cagrad.c=0.4", "weighting.uw={}"])
    assert RunConfig("baseline", "synthetic", TASKS, "resnet18", 0, same, weighting="cagrad").run_id == cagrad.run_id
    other = load_recipe("smoke", ["weighting.cagrad.c=0.5"])
    assert RunConfig("baseline", "synthetic", TASKS, "resnet18", 0, other, weighting="cagrad").run_id != cagrad.run_id
    assert RunConfig("baseline", "synthetic", TASKS, "resnet18", 0, other).run_id == cfg.run_id  # not its strategy


def test_shared_parameters_get_the_aggregate_and_task_parameters_their_own_gradient():
    torch.manual_seed(0)
    model, x = TinyMTL(CHANNELS), torch.randn(2, 3, 8, 8)
    params = list(model.parameters())
    per_task = {t: torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
                for t, loss in _losses(model, TASKS, x).items()}
    combiner = _combiner("mgda", TASKS, model)
    weights = combiner.backward(_losses(model, TASKS, x))
    shared, own = combiner._partition
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in shared) == sorted(n for n, _ in model.named_parameters()
                                                         if n.startswith(("backbone.", "mixer.")))
    assert sorted(names[id(p)] for p in own) == sorted(n for n, _ in model.named_parameters() if n.startswith("heads."))
    for i, p in enumerate(params):
        if names[id(p)].startswith("heads."):
            task = names[id(p)].split(".")[1]
            torch.testing.assert_close(p.grad, per_task[task][i])
    from torchjd.aggregation import MGDA

    index = [i for i, p in enumerate(params) if p in set(shared)]
    J = torch.stack([torch.cat([(per_task[t][i] if per_task[t][i] is not None else torch.zeros_like(params[i]))
                                .reshape(-1) for i in index]) for t in TASKS])
    expected = MGDA()(J)
    torch.testing.assert_close(torch.cat([params[i].grad.reshape(-1) for i in index]), expected, atol=1e-6, rtol=1e-5)
    assert weights.shape == (4,) and torch.isfinite(weights).all()


def test_rep_aggregates_at_the_backbone_output_mgda_closed_form():
    torch.manual_seed(6)  # a draw whose two feature gradients conflict enough for α inside (0, 1)
    tasks = ("normals", "edge")  # both heads read the backbone output directly
    model, x = TinyMTL({t: CHANNELS[t] for t in tasks}), torch.randn(2, 3, 8, 8)
    combiner = _combiner("mgda", tasks, model, rep=True, epsilon=1e-7)
    feats = []
    handle = model.backbone.register_forward_hook(lambda m, i, o: feats.append(o))
    losses = _losses(model, tasks, x)
    handle.remove()
    g1, g2 = (torch.autograd.grad(losses[t], feats[0], retain_graph=True)[0] for t in tasks)
    a = float(((g2 - g1) * g2).sum() / (g1 - g2).pow(2).sum())  # Sener & Koltun's two-task α, inside [0, 1] here
    assert 0 < a < 1
    bb = list(model.backbone.parameters())
    expected_bb = torch.autograd.grad(feats[0], bb, a * g1 + (1 - a) * g2, retain_graph=True)
    expected_heads = {t: torch.autograd.grad(losses[t], list(model.heads[t].parameters()), retain_graph=True)
                      for t in tasks}
    model.zero_grad(set_to_none=True)
    weights = combiner.backward(_losses(model, tasks, x))
    torch.testing.assert_close(weights, torch.tensor([a, 1 - a]), atol=1e-4, rtol=0)
    for p, e in zip(bb, expected_bb):
        torch.testing.assert_close(p.grad, e, atol=1e-4 * float(e.abs().max()), rtol=1e-3)
    for t in tasks:
        for p, e in zip(model.heads[t].parameters(), expected_heads[t]):
            torch.testing.assert_close(p.grad, e)
    assert combiner.describe()["aggregated_at"].startswith("representation")


def test_non_finite_weights_fail_with_the_reason_never_silently():
    model, x = TinyMTL(CHANNELS), torch.randn(2, 3, 8, 8)
    for name in ("pcgrad", "uw"):
        losses = _losses(model, TASKS, x)
        losses["depth"] = losses["depth"] * float("nan")
        with pytest.raises(StrategyFailure, match=name):
            _combiner(name, TASKS, model).backward(losses)


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("name", ["famo"])  # the others' state: test_strategy_state_round_trips_...
def test_a_stateful_strategy_resumes_bit_exactly(tmp_path, name):
    recipe = load_recipe("smoke", SMALL + ["iterations=4", f"datasets.synthetic.cache_dir={tmp_path / 'cache'}"])
    cfg = RunConfig("_test_wmtl", "synthetic", TASKS, "resnet18", 0, recipe, weighting=name)
    dir_a, dir_b = tmp_path / "a" / cfg.run_id, tmp_path / "b" / cfg.run_id
    rec_a = engine.run(cfg, dir_a)

    def crash_at_3(it, save):  # checkpoint_every=2: the run resumes at 2 with the strategy's state of then
        if it == 3:
            raise Crash("simulated crash")

    with pytest.raises(Crash):
        engine.run(cfg, dir_b, on_iteration=crash_at_3)
    rec_b = engine.run(cfg, dir_b)
    assert rec_b["resumed_from"] == 2
    wa, wb = (torch.load(d / "checkpoints" / "final.pt", weights_only=True)["model"] for d in (dir_a, dir_b))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    log_a, log_b = read_log(dir_a / "train_log.jsonl"), read_log(dir_b / "train_log.jsonl")
    assert [r["task_weights"] for r in log_a] == [r["task_weights"] for r in log_b]
    assert len(log_a) == 4 and set(log_a[0]["task_weights"]) == set(TASKS)
    assert len({json.dumps(r["task_weights"]) for r in log_a}) > 1  # the weights move
    assert rec_a["weighting"]["name"] == name and rec_a["weighting"]["kind"] in ("loss", "gradient")
    assert rec_a["loss_weights"] == {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0}


def test_grid_is_methods_by_strategies_by_seeds_with_references_once():
    spec = GridSpec(methods=["baseline"], dataset="synthetic", tasks=TASKS, backbone="resnet18", seeds=[0, 1],
                    recipe=load_recipe("smoke"), weightings=("fixed", "uw", "pcgrad"))
    runs = expand_grid(spec)
    refs = [r for r in runs if r.method == "single"]
    assert len(refs) == 8 and {r.weighting for r in refs} == {"fixed"}
    assert sorted((r.weighting, r.seed) for r in runs if r.method == "baseline") == \
        sorted((w, s) for w in ("fixed", "uw", "pcgrad") for s in (0, 1))
    assert len({r.run_id for r in runs}) == len(runs) == 14


def test_bad_strategy_input_is_one_line_before_any_run(capsys, tmp_path, monkeypatch):
    assert main(["--weighting", "fixed,nope", "--results", str(tmp_path)]) != 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert "unknown weighting 'nope'" in out and "pcgrad" in out and "Traceback" not in out
    assert main(["--weighting", "cagrad", "--set", "weighting.cagrad.c=-1", "--results", str(tmp_path)]) != 0
    assert "weighting.cagrad.c must be a number ≥ 0" in capsys.readouterr().out.replace("\n", " ")
    assert main(["--set", "weighting.uw.bogus=1", "--results", str(tmp_path)]) != 0
    assert "unknown key 'weighting.uw.bogus'" in capsys.readouterr().out.replace("\n", " ")
    assert main(["--set", "loss_weights.edges=1", "--results", str(tmp_path)]) != 0
    assert "Did you mean 'edge'" in capsys.readouterr().out.replace("\n", " ")
    monkeypatch.setattr(WEIGHTINGS.get("nash_mtl"), "requires", ("no_such_solver_module",))
    assert main(["--weighting", "nash_mtl", "--results", str(tmp_path)]) != 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert "no_such_solver_module" in out and '".[solvers]"' in out
    assert not (tmp_path / "runs").exists()  # nothing started


def test_list_shows_every_strategy_with_paper_kind_and_options(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    for name in WEIGHTINGS.names():
        assert f"  {name} (" in out
    assert "cagrad (gradient-based; torchjd.aggregation.CAGrad; rep=False, c=0.4" in out
    assert "Kendall, Gal, Cipolla" in out and "gradnorm (gradient-based; weightings/gradnorm.py (in-house)" in out


def test_cli_grid_leaderboard_has_one_row_per_method_and_strategy(tmp_path, capsys):
    argv = ["--methods", "_test_wmtl", "--tasks", "semseg,depth", "--weighting", "fixed,pcgrad",
            "--results", str(tmp_path)]
    for o in SMALL + ["iterations=2"]:
        argv += ["--set", o]
    assert main(argv) == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/record.json")]
    assert sorted((r["method"], r["config"]["weighting"]) for r in records) == [
        ("_test_wmtl", "fixed"), ("_test_wmtl", "pcgrad"), ("single", "fixed"), ("single", "fixed")]
    (table,) = build_tables(records)
    labels = [r["method"] for r in table.rows]
    assert labels == ["single-task refs", "_test_wmtl", "_test_wmtl · pcgrad", "trivial (constant)"]
    assert all(r["delta_m"][0] == r["delta_m"][0] for r in table.rows[:3])  # Δm defined (not NaN) for every row
    assert any("weighting pcgrad (torchjd.aggregation.PCGrad" in n for n in table.notes)


def test_unknown_strategy_in_a_recipe_section_is_refused():
    with pytest.raises(ConfigError, match="Known: .*pcgrad"):
        load_recipe("smoke", ["weighting.pcgard.rep=true"])


def test_fixed_is_the_plain_sum_of_the_task_losses():
    torch.manual_seed(2)
    model, x = TinyMTL(CHANNELS), torch.randn(2, 3, 8, 8)
    sum(_losses(model, TASKS, x).values()).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    assert _combiner("fixed", TASKS, model).backward(_losses(model, TASKS, x)) is None
    for p, e in zip(model.parameters(), expected):
        assert torch.equal(p.grad, e)


@pytest.mark.parametrize("name", ["nash_mtl", "gradvac", "gradnorm", "dwa", "uw"])
def test_strategy_state_round_trips_through_a_weights_only_checkpoint(tmp_path, name):
    if name == "nash_mtl":
        pytest.importorskip("cvxpy", reason="Nash-MTL needs the solvers extra (cvxpy, ecos)")
    from mtbench import checkpoint

    def make():
        return WEIGHTINGS.get(name)(list(TASKS), strategy_options(name, {"weighting": {name: {"period": 1}}
                                                                             if name == "dwa" else {}}), {})

    def step(strategy, k):
        g = torch.Generator().manual_seed(k)
        J, losses = torch.randn(4, 6, generator=g), torch.rand(4, generator=g) + 0.5
        if strategy.kind == "loss":
            values = losses.clone().requires_grad_(True)
            out, *grads = torch.autograd.grad(strategy.scalarize(values), [values, *strategy.parameters()])
            for p, g in zip(strategy.parameters(), grads):
                p.grad = g
        else:
            out = strategy.aggregate(J, losses)[0]
        for p in strategy.parameters():  # what the run's optimizer does with learned weights
            with torch.no_grad():
                p -= 0.1 * p.grad
            p.grad = None
        strategy.after_step(k, None)
        return out

    a = make()
    for k in range(3):
        step(a, k)
    state = {"weighting": a.state_dict()}
    checkpoint.check_safe(state)
    torch.save(state, tmp_path / "s.pt")
    b = make()
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True)["weighting"])
    torch.manual_seed(5)  # GradVac draws its task order from torch's generator
    expected = step(a, 3)
    torch.manual_seed(5)
    torch.testing.assert_close(step(b, 3), expected)


def test_nothing_shared_means_each_parameter_gets_its_own_tasks_gradient():
    torch.manual_seed(3)
    tasks = ("semseg", "normals")  # the mixer feeds semseg only; with the backbone frozen no parameter is shared
    model, x = TinyMTL({t: CHANNELS[t] for t in tasks}), torch.randn(2, 3, 8, 8)
    model.backbone.requires_grad_(False)
    combiner = _combiner("pcgrad", tasks, model)
    losses = _losses(model, tasks, x)
    trainable = [p for p in model.parameters() if p.requires_grad]
    expected = torch.autograd.grad(sum(losses.values()), trainable, retain_graph=True)
    assert combiner.backward(losses) is None
    for p, e in zip(trainable, expected):
        torch.testing.assert_close(p.grad, e)
