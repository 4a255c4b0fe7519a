"""benchmarks/bench_streaming.py end to end on a random tiny model: both modes run in their own processes and
the summary, the aims and the plot are written."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_streaming.py"


def test_both_modes_are_measured_and_compared(tmp_path):
    out, plot = tmp_path / "streaming.json", tmp_path / "streaming.png"
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--minutes", "0.5", "--reencode-minutes", "0.5",
                           "--max-new-tokens", "2", "--out", str(out), "--plot", str(plot)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    runs = {run["mode"]: run for run in result["runs"]}
    assert set(runs) == {"incremental", "reencode"}
    assert all(run["frames"] == 30 for run in runs.values())
    # both modes caption at the same frames (the same online SceneTilling decisions)
    assert [s["time"] for s in runs["incremental"]["segments"]] == [s["time"] for s in runs["reencode"]["segments"]]
    assert runs["incremental"]["segments"], "the tiny model's tower must see the synthetic cuts"
    speedups = result["aims"][-1]["speedups"]
    assert speedups[next(iter(speedups))] == runs["reencode"]["total_s"] / runs["incremental"]["total_s"]
    assert plot.stat().st_size > 0
    assert "reencode / incremental total time" in done.stdout
