"""benchmarks/bench_gpu.py: its tiny CPU path end to end, its FLOPs formula, and the full-size build (on meta)."""

import json

import numpy as np
import pytest
import torch

from llava.model.presets import tiny_config, videollamb_7b_config
from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_gpu")


def matmul_flops_tiny() -> int:
    """Tiny tower (d 32, MLP 64, 3 layers of which 2 run for select_layer -2, 32 px, patch 8, window 4), counted
    as the list of matmuls one frame needs: (rows, inner, cols) -> 2*rows*inner*cols."""
    d, mlp, tokens, window, layers = 32, 64, (32 // 8) ** 2 + 1, 4, 2
    patch = [(16, 3 * 8 * 8, d)]
    per_layer = (
        [(tokens, d, d)] * 4  # spatial q, k, v, out
        + [(tokens, d, tokens), (tokens, tokens, d)]  # QK^T, AV over the frame's tokens
        + [(tokens, d, mlp), (tokens, mlp, d)]  # fc1, fc2
        + [(tokens, d, d)] * 4  # temporal q, k, v, out
        + [(tokens, d, window), (tokens, window, d)]  # each token position against the window's frames
    )
    return sum(2 * a * b * c for a, b, c in patch + per_layer * layers)


def test_tiny_run_writes_rows_for_every_length(bench, tmp_path):
    out, png = tmp_path / "gpu.json", tmp_path / "gpu.png"
    bench.main(["--tiny", "--lengths", "10,30", "--repeats", "1", "--out", str(out), "--plot", str(png)])
    result = json.loads(out.read_text())
    assert png.stat().st_size > 0
    assert result["tower_flops_per_frame"]["total"] == matmul_flops_tiny()
    assert result["matmul"]["flops_per_s"] > 0
    assert result["environment"]["torch"] == torch.__version__
    rows = result["rows"]
    for seconds in (10, 30):
        for method, mode in (("videollamb", "topk(k=3)"), ("videollamb", "threshold"), ("baseline", "all frames")):
            (row,) = [r for r in rows if r["seconds"] == seconds and r["method"] == method and r["mode"] == mode]
            assert row["status"] == "ok" and row["frames"] == seconds
            assert row["ingest_fps"] > 0 and row["tower_fps"] > 0 and row["peak_memory_bytes"] > 0
            assert row["tower_cold_s"] > 0
            if mode != "threshold":
                assert row["ttft_s"] > 0 and row["decode_tokens_per_s"] > 0 and row["new_tokens"] == 32
                assert row["total_s"] == pytest.approx(row["ingest_s"] + row["ttft_s"])
        ours = next(r for r in rows if r["seconds"] == seconds and r["mode"] == "topk(k=3)")
        baseline = next(r for r in rows if r["seconds"] == seconds and r["method"] == "baseline")
        assert ours["segments"] == 4 and ours["visual_tokens"] <= 4 * 4  # <= frames_per_segment x 2x2 pooled
        assert baseline["visual_tokens"] == seconds * 4
    assert [c["published_latency_s"] for c in result["comparison"]] == [1.9, 4.21, 31.5]
    assert result["comparison"][0]["same_length"] and result["comparison"][0]["ours_seconds"] == 30


def test_baseline_oom_prediction_and_skip(bench, tmp_path):
    """KV cache of the tiny LLM: 2 layers x (K, V) x 4 heads x 16 x 4 bytes = 1 KiB per token. 10 s gives
    63 + 40 prompt tokens (fits 150 kB); 30 s gives 183 (predicted OOM); 60 s is then not tried."""
    out = tmp_path / "gpu.json"
    bench.main(["--tiny", "--lengths", "10,30,60", "--repeats", "1", "--memory-gib", str(150_000 / 1024**3),
                "--out", str(out), "--plot", str(tmp_path / "gpu.png")])
    rows = {r["seconds"]: r for r in json.loads(out.read_text())["rows"] if r["method"] == "baseline"}
    assert rows[10]["status"] == "ok"
    assert rows[30]["status"].startswith("OOM (predicted")
    assert rows[60]["status"].startswith("OOM (skipped")
    assert (tmp_path / "gpu.png").stat().st_size > 0


def test_static_cache_and_compiled_tower_options(bench, tmp_path):
    out = tmp_path / "gpu.json"
    bench.main(["--tiny", "--lengths", "10", "--repeats", "1", "--no-baseline", "--static-cache", "--compile-tower",
                "--out", str(out), "--plot", ""])
    (row,) = [r for r in json.loads(out.read_text())["rows"] if r["mode"] == "topk(k=3)"]
    # the warm-up compiled the tower for a 64-frame chunk; this 10-frame video's first pass compiles it again
    # (seconds), its second pass runs the compiled code (milliseconds)
    assert row["tower_cold_s"] > 5 * row["tower_s"]
    assert row["cache"] == "dynamic" and row["first_call_s"] is None
    assert row["static_new_tokens"] == 32 and row["static_decode_tokens_per_s"] > 0 and row["static_first_call_s"] > 0
    assert row["bridge_path_cold_s"] > 0

    torch.manual_seed(0)
    model = bench.build_model(tiny_config(512), torch.device("cpu"), torch.float32, seed=0, std=0.2)
    ids = bench.prompt_ids(12, 512, seed=0, device=torch.device("cpu"))
    visual = torch.randn(8, model.config.text_config.hidden_size)
    kwargs = dict(visual_features=[visual], max_new_tokens=16, do_sample=False, pad_token_id=0)
    dynamic = model.generate(ids, **kwargs)
    static = model.generate(ids, cache_implementation="static", **kwargs)
    assert len(set(dynamic[0].tolist())) > 1  # not a degenerate repeat of one token
    assert torch.equal(dynamic, static)


def test_chunked_encoding_equals_one_pass(bench):
    torch.manual_seed(0)
    model = bench.build_model(tiny_config(512), torch.device("cpu"), torch.float32, seed=0)
    frames, stream = bench.video_frames(21, 1.0, 32, seed=0, index=3)  # 21 frames: last window padded
    batch = np.stack(list(stream))
    meter = bench.Meter(torch.device("cpu"))
    _, again = bench.video_frames(21, 1.0, 32, seed=0, index=3)
    chunks, _ = bench.render_chunks(again, 10, model.config.vision_config.temporal_window)  # 10 -> 8 (window 4)
    assert [len(c) for c in chunks] == [8, 8, 5]
    chunked, device_s = bench.encode_chunks(model.encode_video_frames, chunks, meter, torch.float32)
    with torch.no_grad():
        whole = model.encode_video_frames([bench.to_pixels(batch, torch.device("cpu"), torch.float32)])[0]
    assert frames == 21 and device_s > 0
    torch.testing.assert_close(chunked.cls, whole.cls)
    torch.testing.assert_close(chunked.patches, whole.patches)


def test_full_size_build_and_flops(bench):
    model = bench.build_model(videollamb_7b_config(), torch.device("meta"), torch.bfloat16, seed=0)
    params = list(model.parameters())
    assert {p.dtype for p in params} == {torch.bfloat16}
    assert 7.4e9 < sum(p.numel() for p in params) < 7.5e9
    flops = bench.tower_flops_per_frame(model.config.vision_config)
    assert flops["layers_run"] == 23
    # ViT-L/14 at 224 px, 257 tokens: spatial layer ~6.74 GFLOPs + temporal ~2.16 GFLOPs, 23 layers, + patches
    assert flops["total"] / 1e9 == pytest.approx(205.1, abs=0.2)
