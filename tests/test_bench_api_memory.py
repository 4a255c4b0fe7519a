"""benchmarks/bench_api_memory.py end to end: a real server process, concurrent clients, memory read per round."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_api_memory.py"


def test_rounds_of_concurrent_clients_are_answered_and_measured(tiny_checkpoint, tmp_path):
    out = tmp_path / "api_memory.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--model-path", str(tiny_checkpoint), "--rounds", "2",
                           "--clients", "3", "--cache-size", "2", "--max-tokens", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    rounds = result["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert all(r["ok"] == r["requests"] == 3 for r in rounds[1:])
    assert all(r["cache_entries"] <= 2 for r in rounds)  # six different videos went through a cache of two
    assert all(0 < r["rss_mb"] <= r["peak_rss_mb"] for r in rounds)
    assert result["rss_last_over_first"] == rounds[-1]["rss_mb"] / rounds[1]["rss_mb"]
    assert "resident memory after the last round" in done.stdout


def test_bad_arguments_are_a_usage_error():
    done = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and "--rounds" in done.stderr
