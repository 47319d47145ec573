"""The trivial predictors' scores are computed once per (dataset, task, data options and files, evaluation
settings) and read back by later runs."""
import os

from mtbench import trivial
from mtbench.data.synthetic import dataset_info


def test_scores_are_computed_once_per_task_and_read_back_exactly(tmp_path):
    calls = []

    def compute(names):
        calls.append(list(names))
        return {t: {"x": 0.1 + 0.2, "nan": float("nan")} for t in names}  # a float that does not print short

    keys = {t: f"k{t}" for t in ("semseg", "depth")}
    first = trivial.cached_scores(tmp_path, keys, compute)
    again = trivial.cached_scores(tmp_path, {"depth": "kdepth", "edge": "kedge"}, compute)
    assert calls == [["semseg", "depth"], ["edge"]]  # depth came from the first run's file
    assert again["depth"]["x"] == first["depth"]["x"] == 0.30000000000000004 and again["depth"]["nan"] != 0
    assert list(again) == ["depth", "edge"]
    (tmp_path / "trivial" / "kedge.json").write_text("{torn")  # unreadable: computed and written again
    trivial.cached_scores(tmp_path, {"edge": "kedge"}, compute)
    assert calls[-1] == ["edge"]


def test_the_key_follows_what_the_scores_depend_on(tmp_path):
    nyud_like = dataset_info(("semseg", "edge"), 8, 8)
    pascal_like = dataset_info(("semseg", "edge", "sal"), 8, 8)  # another boundary tolerance
    base = trivial.cache_key("synthetic", "edge", nyud_like, {"n_train": 4, "cache_dir": "/a"}, {"e": 1}, None)
    assert base == trivial.cache_key("synthetic", "edge", nyud_like, {"n_train": 4, "cache_dir": "/b"}, {"e": 1},
                                     None)  # where the cache lives is no part of the data
    single = dataset_info(("edge",), 8, 8)  # a single-task reference of the same data shares the scores
    assert base == trivial.cache_key("synthetic", "edge", single, {"n_train": 4}, {"e": 1}, None)
    for other in [("synthetic", "edge", pascal_like, {"n_train": 4}, {"e": 1}, None),
                  ("synthetic", "semseg", nyud_like, {"n_train": 4}, {"e": 1}, None),
                  ("synthetic", "edge", nyud_like, {"n_train": 5}, {"e": 1}, None),
                  ("synthetic", "edge", nyud_like, {"n_train": 4}, {"e": 2}, None)]:
        assert trivial.cache_key(*other) != base
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(b"1")
    before = trivial.cache_key("nyud", "edge", nyud_like, {}, {}, str(data))
    os.utime(data / "a.png", ns=(1, 1))  # a file changed: the scores are computed again
    assert trivial.cache_key("nyud", "edge", nyud_like, {}, {}, str(data)) != before
