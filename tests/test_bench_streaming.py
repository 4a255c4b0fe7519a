"""benchmarks/bench_streaming.py end to end on a random tiny model: every mode runs in its own process and the
summary, the aims and the plot are written."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_streaming.py"


def test_every_mode_is_measured_and_compared(tmp_path):
    out, plot = tmp_path / "streaming.json", tmp_path / "streaming.png"
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--minutes", "0.5", "--reencode-minutes", "0.5",
                           "--max-new-tokens", "2", "--batch-frames", "8", "--out", str(out), "--plot", str(plot)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    runs = {run["mode"]: run for run in result["runs"]}
    assert set(runs) == {"incremental", "batched", "reencode"}
    assert all(run["frames"] == 30 for run in runs.values())
    # all modes caption at the same frames (the same online SceneTilling decisions), batched included
    times = {mode: [s["time"] for s in run["segments"]] for mode, run in runs.items()}
    assert times["incremental"] == times["batched"] == times["reencode"]
    assert runs["incremental"]["segments"], "the tiny model's tower must see the synthetic cuts"
    speed = result["aims"][-1]
    assert speed["speedups"]["0.5"] == runs["reencode"]["total_s"] / runs["batched"]["total_s"]
    assert speed["per_frame_speedups"]["0.5"] == runs["reencode"]["total_s"] / runs["incremental"]["total_s"]
    assert plot.stat().st_size > 0
    assert "reencode / incremental total time" in done.stdout and "reencode / batched total time" in done.stdout
