"""benchmarks/gpu_check.py at tiny sizes on the CPU, so that the GPU check cannot rot between GPU sessions: every
registered method is built, stepped by the engine's TrainStep, evaluated, timed with and without the speed
options, and a short run through the local executor must lower its loss."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402

from mtbench.registry import METHODS  # noqa: E402


def test_gpu_check_runs_every_method_on_the_cpu(tmp_path, capsys):
    rc = gpu_check.main(["--tiny", "--device", "cpu", "--steps", "1", "--warmup", "0", "--options",
                         "channels_last,fused", "--options-for", "first", "--fall-steps", "8", "--budget-s", "100000", "--threads", "1",
                         "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    result = json.loads((tmp_path / "gpu_check_tiny_cpu.json").read_text())
    assert sorted(r["method"] for r in result["methods"]) == sorted(METHODS.names())
    assert result["methods"][0]["method"] == "baseline" == result["fall_runs"][0]["method"]
    for r in result["methods"]:
        assert f"| {r['method']} |" in out
        assert r["fp32"]["s_per_step"] > 0 and r["fp32"]["peak_mb"] > 0 and 0 <= r["fp32"]["data_wait"] < 1
        assert r["bf16"] == {"error": "CUDA only"} and r["eval"]["images_per_s"] > 0
    first = result["methods"][0]["options"]  # the options' code paths, once (--options-for first)
    assert first["channels_last"]["speedup"] > 0 and first["fused"]["speedup"] > 0
    assert "log_cost" in result["methods"][0]
    (fall,) = result["fall_runs"]
    assert fall["outcome"] == "done" and fall["steps"] == 8 and fall["loss_last"] < fall["loss_first"]
    assert "--devices 2: not run" in out
