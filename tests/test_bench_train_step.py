"""benchmarks/bench_train_step.py end to end on a few videos: both configurations train the same stage in their own
process, log the same losses, and the table and JSON report them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_step.py"


@pytest.mark.slow
def test_both_configurations_are_timed_on_the_same_stage(tmp_path):
    out = tmp_path / "train_step.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--videos", "4", "--steps", "2", "--frames", "8",
                           "--out", str(out)], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["stage"]["videos"] == 4 and result["stage"]["rows"] >= 16 and result["stage"]["steps"] == 2
    best = result["best"]
    assert best["no_cache"]["video_cache_mb"] == 0 and best["cache"]["video_cache_mb"] > 0
    for run in best.values():
        assert run["s_per_step"] == run["train_runtime_s"] / 2 > 0
        assert run["wall_s"] > run["train_runtime_s"] and run["cpu_s"] > 0 and run["data_s_per_batch"] > 0
        assert len(run["losses"]) == 2
    assert result["same_losses"] and best["cache"]["losses"] == best["no_cache"]["losses"]
    assert result["speedup"] == best["no_cache"]["s_per_step"] / best["cache"]["s_per_step"]
    assert result["data_speedup"] == best["no_cache"]["data_s_per_batch"] / best["cache"]["data_s_per_batch"]
    assert "speedup (s/step, no_cache / cache)" in done.stdout and "same losses: True" in done.stdout


@pytest.mark.slow
def test_the_tower_cache_is_timed_on_long_stage_data(tmp_path):
    out = tmp_path / "train_step_tower.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--cache", "tower", "--long", "--videos", "2", "--steps", "2",
                           "--out", str(out)], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["cache"] == "tower" and result["stage"]["kind"] == "long" and result["data_speedup"] is None
    assert result["stage"]["frames_per_video"]["min"] >= 20  # every frame at 1 fps of 10-80 scenes of 2-4 s
    best = result["best"]
    assert best["no_cache"]["video_cache_mb"] == best["cache"]["video_cache_mb"] > 0
    assert best["no_cache"]["frozen_tower_cache_mb"] == 0 < best["cache"]["frozen_tower_cache_mb"]
    assert best["no_cache"]["tower_cache_hits"] is None
    rows = result["stage"]["rows"]  # 2 steps of all the rows (fewer than a batch): the second step all hits
    assert best["cache"]["tower_cache_misses"] == 2 and best["cache"]["tower_cache_hits"] == 2 * rows - 2
    assert result["same_losses"] and result["max_loss_rel_diff"] == 0
    assert result["round_speedups"] == [result["speedup"]]
    assert "tower hits/misses" in done.stdout and "same losses: True" in done.stdout
