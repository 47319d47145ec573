"""Recipes, overrides, run ids and registry errors: bad input gets a message that names the fix."""
import pytest

from mtbench.cli.run import parse_seeds
from mtbench.config import ConfigError, RunConfig, load_recipe
from mtbench.data.base import parse_tasks
from mtbench.data.loader import IterationBatchSampler
from mtbench.registry import BACKBONES, DATASETS, METHODS, TASKS, UnknownNameError


def test_unknown_names_list_the_known_ones():
    for reg, known in [(METHODS, "baseline"), (TASKS, "semseg"), (DATASETS, "synthetic"), (BACKBONES, "resnet18")]:
        with pytest.raises(UnknownNameError) as e:
            reg.get("nope")
        assert known in str(e.value) and "nope" in str(e.value)


def test_close_name_suggestion():
    with pytest.raises(UnknownNameError, match="Did you mean 'baseline'"):
        METHODS.get("baselin")


def test_recipe_overrides_and_errors(tmp_path):
    r = load_recipe("smoke", ["iterations=7", "optimizer.lr=0.5", "datasets.synthetic.n_train=4"])
    assert r["iterations"] == 7 and r["optimizer"]["lr"] == 0.5 and r["datasets"]["synthetic"]["n_train"] == 4
    with pytest.raises(ConfigError, match="Known recipes: .*smoke"):
        load_recipe("nope")
    with pytest.raises(ConfigError, match="unknown recipe key 'iteratons'"):
        load_recipe("smoke", ["iteratons=5"])
    with pytest.raises(ConfigError, match="key=value"):
        load_recipe("smoke", ["iterations"])
    with pytest.raises(ConfigError, match="positive integer"):
        load_recipe("smoke", ["batch_size=0"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("iterations: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        load_recipe(str(bad))


def test_run_id_is_stable_and_ignores_paths():
    r = load_recipe("smoke")
    a = RunConfig("baseline", "synthetic", ("semseg", "depth"), "resnet18", 0, r, data_dir="/a")
    b = RunConfig("baseline", "synthetic", ("semseg", "depth"), "resnet18", 0, load_recipe("smoke"), data_dir="/b")
    c = RunConfig("baseline", "synthetic", ("semseg", "depth"), "resnet18", 1, r)
    assert a.run_id == b.run_id != c.run_id
    assert a.setting_key == c.setting_key
    # A method-specific setting changes the run id but not the setting (references stay comparable).
    r2 = load_recipe("smoke", ["methods.baseline.head_channels=32"])
    d = RunConfig("baseline", "synthetic", ("semseg", "depth"), "resnet18", 0, r2)
    assert d.run_id != a.run_id and d.setting_key == a.setting_key
    assert RunConfig.from_dict(a.to_dict()).run_id == a.run_id


def test_task_presets_and_seeds():
    assert parse_tasks("nyud", ()) == ("semseg", "depth", "normals", "edge")
    assert parse_tasks("pascal", ()) == ("semseg", "human_parts", "sal", "normals", "edge")
    assert parse_tasks("semseg, depth", ()) == ("semseg", "depth")
    with pytest.raises(ValueError, match="duplicate"):
        parse_tasks("semseg,semseg", ())
    assert parse_seeds("0-2,5") == [0, 1, 2, 5]


def test_sampler_order_depends_only_on_seed_and_iteration():
    full = list(IterationBatchSampler(10, 3, seed=4, start=0, total=9))
    resumed = list(IterationBatchSampler(10, 3, seed=4, start=5, total=9))
    assert resumed == full[5:]
    assert all(len(b) == 3 for b in full)
    epoch0 = [i for b in full[:3] for i, _ in b]
    assert len(set(epoch0)) == 9  # no repeats within an epoch
    assert full != list(IterationBatchSampler(10, 3, seed=5, start=0, total=9))
    seeds = [s for b in full for _, s in b]
    assert len(set(seeds)) == len(seeds)  # every sample of the run gets its own augmentation seed
    with pytest.raises(ValueError, match="fewer than the batch size"):
        IterationBatchSampler(2, 3, 0, 0, 1)


def test_every_shipped_recipe_loads_and_names_registered_things():
    from mtbench.config import recipe_names

    names = recipe_names()
    assert {"smoke", "nyud", "pascal", "mqt_nyud", "invpt_nyud", "mtinet_nyud"} <= set(names)
    for name in names:
        r = load_recipe(name)
        BACKBONES.get(r["backbone"])
        for d in r["datasets"]:
            DATASETS.get(d)
        for m in r["methods"]:
            METHODS.get(m)


def test_speed_options_left_off_keep_the_run_ids_they_had_before_them():
    # Ids computed by the code before the speed options existed (commit 7c4e928, RunConfig(...).run_id and
    # .setting_key of these three runs), whether the options are absent, defaulted or given at their off value.
    before = {("smoke", "baseline", ("semseg", "depth", "normals", "edge")):
              ("baseline_synthetic_resnet18_semseg+depth+normals+edge_s0_6b9da0fa", "b8b73f34"),
              ("smoke", "single", ("edge",)): ("single_synthetic_resnet18_edge_s0_c2773d46", "b8b73f34"),
              ("mqt_nyud", "mqt", ("semseg", "depth", "normals", "edge")):
              ("mqt_nyud_swin_l_semseg+depth+normals+edge_s0_72b6ae8a", "e7a899c7")}
    off = ["perf.channels_last=false", "perf.compile=false", "perf.tf32=false", "optimizer.fused=false"]
    for (name, method, tasks), ids in before.items():
        for overrides in ([], off):
            r = load_recipe(name, overrides)
            c = RunConfig(method, "synthetic" if name == "smoke" else "nyud", tasks, r["backbone"], 0, r)
            assert (c.run_id, c.setting_key) == ids
    for on in off:  # an option turned on is a different computation: its own id and table
        r = load_recipe("smoke", [on.replace("false", "true")])
        c = RunConfig("baseline", "synthetic", ("semseg", "depth", "normals", "edge"), "resnet18", 0, r)
        assert c.run_id != before[("smoke", "baseline", ("semseg", "depth", "normals", "edge"))][0]
    with pytest.raises(ConfigError, match="perf.compile must be true or false"):
        load_recipe("smoke", ["perf.compile=yes please"])
    with pytest.raises(ConfigError, match="unknown key 'perf.channel_last'.*channels_last"):
        load_recipe("smoke", ["perf.channel_last=true"])
