"""benchmarks/bench_decode.py end to end on tiny generated files: every method runs on every row in its own process,
its frames are checked against the reference, the floor and the memory row are measured."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_decode.py"


@pytest.mark.slow
def test_every_method_and_row_is_measured_and_checked(tmp_path):
    out, work = tmp_path / "decode.json", tmp_path / "media"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--work-dir", str(work), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    bench = load_benchmark("bench_decode")
    assert [(r["sample"], r["count"]) for r in result["rows"]] == [("24", 24), ("1fps", 30)]
    sequential = result["rows"][0]["methods"]["pyav_seq"]  # the long file decoded in full against the clip's frames
    assert sequential["exact"] and sequential["frames_differing"] == 0 and sequential["marker_errors"] == 0
    assert "first row only" in result["rows"][1]["methods"]["pyav_seq"]["skipped"]
    for row in result["rows"]:
        assert list(row["methods"]) == list(bench.METHODS)
        for name, method in row["methods"].items():
            assert "seconds" in method or "skipped" in method, (name, method)
            if "seconds" in method:
                assert "exact" in method and "frames_differing" in method and method["peak_mb"] > 0, (name, method)
        if "seconds" in row["methods"]["decord"]:  # with the bench extra installed
            assert row["methods"]["decord"]["exact"]  # decord is exact on this simple file: the comparison finds it so
        assert row["floor"]["seconds"] > 0 and row["floor"]["frames_decoded"] >= row["count"]
        assert "floor" in row["aims"] and "fastest_exact" in row["aims"]
    assert done.stdout.count(": floor ") == 2 and "aim: ours <= 1.5 x floor" in done.stdout
    memory = result["memory"]
    assert memory["methods"]["ours+transform"]["shape"] == [64, 3, 224, 224]
    assert memory["methods"]["ours"]["shape"] == [64, 360, 640, 3]
    assert "aim" in memory and memory["model_size_mb"] == 64 * 3 * 224 * 224 * 4 / 2**20


def test_the_long_file_is_the_clip_remuxed_without_gaps(tmp_path):
    bench = load_benchmark("bench_decode")
    path, _ = bench.media(tmp_path, (160, 96), 0.5, 2, 10)  # a 10 s clip three times
    info = bench.index(path)
    pts = np.asarray(info["pts"])
    assert len(pts) == 30 * bench.FPS and len(set(np.diff(pts))) == 1  # every frame, evenly spaced, no gap
    keys = np.searchsorted(pts, info["key_pts"])
    assert keys.tolist() == list(range(0, 750, 50))  # a keyframe every 2 s, across the joins too
    row = bench.rows_for(info, [4], 1.0)
    assert row[0]["indices"] == [0, 249, 499, 749] and row[1]["indices"] == list(range(0, 750, 25))
    assert bench.gop_runs(info, [0, 30, 120]) == [(int(pts[0]), int(pts[50])), (int(pts[100]), int(pts[150]))]
    spec = {"path": str(path), "indices": [0, 260, 749]}
    frames, _ = bench.m_pyav_seek(spec)
    assert bench.read_markers(frames).tolist() == [0, 10, 249]  # frame number within the clip, read back
