"""benchmarks/bench_static_cache.py: both cache kinds over the same turns, on a tiny checkpoint on CPU."""

import json

import pytest

from tests.benchmark_scripts import load_benchmark


def test_both_caches_answer_the_same_turns_in_the_main_and_new_threads(tiny_checkpoint, tiny_video, tmp_path, capsys):
    out = tmp_path / "static.json"
    load_benchmark("bench_static_cache").main(["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video),
                                               "--device", "cpu", "--turns", "3", "--max-new-tokens", "6",
                                               "--out", str(out)])
    result = json.loads(out.read_text())
    dynamic, static = result["kinds"]
    assert (dynamic["cache_implementation"], static["cache_implementation"]) == (None, "static")
    assert static["max_cache_len"] == 1024  # the tiny config's context
    for kind in (dynamic, static):
        assert [t["thread"] for t in kind["turns"]] == ["main", "new", "main"]
        prompts = [t["prompt_tokens"] for t in kind["turns"]]
        assert prompts == sorted(prompts) and len(set(prompts)) == 3  # one conversation: each turn's prompt grows
        assert all(t["new_tokens"] >= 1 and t["tokens_per_s"] > 0 for t in kind["turns"])
    assert result["same_answers"] is True
    assert [t["answer"] for t in static["turns"]] == [t["answer"] for t in dynamic["turns"]]
    assert "static speed-up" in capsys.readouterr().out


def test_a_missing_video_is_one_error_line(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "static.json"
    with pytest.raises(SystemExit) as exit_info:
        load_benchmark("bench_static_cache").main(["--model-path", str(tiny_checkpoint), "--video-file",
                                                   str(tmp_path / "missing.mp4"), "--device", "cpu", "--out", str(out)])
    assert str(exit_info.value).startswith("error: ") and "missing.mp4" in str(exit_info.value)
    assert not out.exists()
